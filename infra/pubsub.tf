# Topics, and a push subscription with a dead-letter topic and a bounded retry for every push path.

resource "google_pubsub_topic" "notifications" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption; completion messages carry counts and object names only.
  name                       = "dropbatch-notifications"
  project                    = var.project_id
  labels                     = var.labels
  message_retention_duration = "604800s"
  depends_on                 = [google_project_service.apis]
}

# Uploads: a Cloud Storage notification limited to OBJECT_FINALIZE under incoming/, so submit_batch sees only
# uploads (never the ledgers, staged parts, outputs and result objects dropbatch writes under batches/: an
# Eventarc storage trigger filters on the bucket alone), through a push subscription with its own dead-letter
# topic, ack deadline and retry policy.
resource "google_pubsub_topic" "uploads" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption; notifications carry object names and generations only.
  name       = "dropbatch-uploads"
  project    = var.project_id
  labels     = var.labels
  depends_on = [google_project_service.apis]
}

resource "google_storage_notification" "uploads" {
  bucket             = module.drop_bucket.name
  payload_format     = "JSON_API_V1"
  topic              = google_pubsub_topic.uploads.id
  event_types        = ["OBJECT_FINALIZE"]
  object_name_prefix = var.incoming_prefix
  depends_on         = [time_sleep.agent_grants] # the agent's publisher grant has propagated
}

resource "google_pubsub_topic" "sweep" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption; sweep ticks carry no data.
  name       = "dropbatch-sweep"
  project    = var.project_id
  labels     = var.labels
  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "split" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption; split tasks carry batch ids and part numbers only.
  name       = "dropbatch-split"
  project    = var.project_id
  labels     = var.labels
  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption; dead letters are sweep ticks and split tasks.
  for_each                   = toset(["uploads", "sweep", "split"])
  name                       = "dropbatch-${each.key}-dead-letter"
  project                    = var.project_id
  labels                     = var.labels
  message_retention_duration = "604800s"
  depends_on                 = [google_project_service.apis]
}

# Dead letters are kept here for a person to look at (and replay with `gcloud pubsub`).
resource "google_pubsub_subscription" "dead_letter" {
  for_each                   = google_pubsub_topic.dead_letter
  name                       = "${each.value.name}-hold"
  project                    = var.project_id
  topic                      = each.value.id
  message_retention_duration = "604800s"
  retain_acked_messages      = true
  labels                     = var.labels

  expiration_policy {
    ttl = ""
  }
}

locals {
  push = {
    # Each ack deadline outlasts its function's timeout (functions.tf), so a running call is never redelivered.
    uploads = { topic = google_pubsub_topic.uploads.id, fn = google_cloudfunctions2_function.fn["submit"], ack = 600 }
    sweep   = { topic = google_pubsub_topic.sweep.id, fn = google_cloudfunctions2_function.fn["status"], ack = 360 }
    split   = { topic = google_pubsub_topic.split.id, fn = google_cloudfunctions2_function.fn["split"], ack = 600 }
  }
}

resource "google_pubsub_subscription" "push" {
  for_each             = local.push
  name                 = "dropbatch-${each.key}-push"
  project              = var.project_id
  topic                = each.value.topic
  ack_deadline_seconds = each.value.ack
  labels               = var.labels

  push_config {
    push_endpoint = each.value.fn.service_config[0].uri
    oidc_token {
      service_account_email = google_service_account.pusher.email
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[each.key].id
    max_delivery_attempts = 10
  }

  expiration_policy {
    ttl = ""
  }
}
