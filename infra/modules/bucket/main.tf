# A private, versioned bucket; with holds_batches, the lifecycle rules for what dropbatch writes under batches/.

resource "google_storage_bucket" "this" {
  #checkov:skip=CKV_GCP_62:Access logs go to Cloud Audit Logs (data access logs), not to a second log bucket.
  name                        = var.name
  project                     = var.project_id
  location                    = var.location
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = var.labels

  versioning {
    enabled = true
  }

  # Staged copies of the input are only needed while the job runs (matched by suffix: lifecycle
  # conditions cannot match the middle of a name).
  dynamic "lifecycle_rule" {
    for_each = var.holds_batches ? [1] : []
    content {
      condition {
        age            = var.staged_input_retention_days
        matches_prefix = ["batches/"]
        matches_suffix = local.staged_suffixes
      }
      action {
        type = "Delete"
      }
    }
  }

  # Old batches (results, outputs, ledgers), when a retention is set.
  dynamic "lifecycle_rule" {
    for_each = var.holds_batches && var.batch_retention_days > 0 ? [1] : []
    content {
      condition {
        age            = var.batch_retention_days
        matches_prefix = ["batches/"]
      }
      action {
        type = "Delete"
      }
    }
  }

  # The ledger is rewritten on every sweep: its replaced versions (and everything else's under batches/) are
  # not worth keeping, so versioning does not pile them up.
  dynamic "lifecycle_rule" {
    for_each = var.holds_batches ? [1] : []
    content {
      condition {
        days_since_noncurrent_time = 1
        with_state                 = "ARCHIVED"
        matches_prefix             = ["batches/"]
      }
      action {
        type = "Delete"
      }
    }
  }

  # Versions replaced or deleted: kept a while, so a mistaken overwrite of a user's file can be undone.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_retention_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }
}

locals {
  # Every staged part a batch can have: the validator refuses a file that needs more than 32 jobs
  # (DROPBATCH_MAX_FILE_JOBS), and a retry round's parts are numbered after them (64); part chunks are deleted
  # once composed.
  staged_suffixes = flatten([
    [for i in range(32) : [format("/input/part-%05d.jsonl", i), format("/input/part-%05d.keys.jsonl", i)]],
    [for i in range(64) : [format("/input/retry-r1-p%05d.jsonl", i), format("/input/retry-r1-p%05d.keys.jsonl", i)]],
  ])
}
