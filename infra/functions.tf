# Three Gen2 functions from one source archive; each with its own identity and only its own work.

locals {
  function_env = {
    DROPBATCH_PROJECT             = var.project_id
    DROPBATCH_LOCATION            = var.region
    DROPBATCH_BUCKET              = module.drop_bucket.name
    DROPBATCH_RESULTS_BUCKET      = var.results_bucket_name
    DROPBATCH_INCOMING_PREFIX     = var.incoming_prefix
    DROPBATCH_MODEL               = var.model
    DROPBATCH_NOTIFICATIONS_TOPIC = google_pubsub_topic.notifications.name
    DROPBATCH_SPLIT_TOPIC         = google_pubsub_topic.split.name
    DROPBATCH_SWEEP_TOPIC         = google_pubsub_topic.sweep.name
    DROPBATCH_UPLOADS_TOPIC       = google_pubsub_topic.uploads.name
    DROPBATCH_MAX_CONCURRENT_JOBS = tostring(var.max_concurrent_jobs)
    DROPBATCH_JOB_DEADLINE_S      = tostring(var.job_deadline_hours * 3600)
    DROPBATCH_CLAIM_LEASE_S       = "600"             # longer than the submit function's timeout
    DROPBATCH_SPLIT_BUDGET_S      = "480"             # checkpoint a minute before the split function's timeout
    DROPBATCH_SUBMIT_BUDGET_S     = "480"             # likewise for the submit function
    DROPBATCH_PRICES              = var.prices_json   # "" keeps the price table shipped with the code (cost.py)
    DROPBATCH_RESULTS_TABLE       = var.results_table # "" loads no table (bigquery.tf)
    DROPBATCH_MAX_BATCH_COST      = var.max_batch_cost == 0 ? "" : tostring(var.max_batch_cost)
    DROPBATCH_MAX_DAILY_COST      = var.max_daily_cost == 0 ? "" : tostring(var.max_daily_cost)
    DROPBATCH_OVER_DAILY_COST     = var.over_daily_cost
    DROPBATCH_REUSE               = var.reuse ? "on" : "off" # answers re-dropped requests from earlier batches
    DROPBATCH_REUSE_MAX           = tostring(var.reuse_max)
  }
  functions = {
    submit = { entry = "submit_batch", sa = google_service_account.submit.email, timeout = 540, memory = "1Gi", max = var.function_max_instances }
    # One sweep at a time is enough (overlapping sweeps are safe, just wasted).
    status = { entry = "on_job_event", sa = google_service_account.status.email, timeout = 300, memory = "512Mi", max = 1 }
    split  = { entry = "split_results", sa = google_service_account.split.email, timeout = 540, memory = "1Gi", max = var.function_max_instances }
  }
}

# All three are pushed to by their own subscriptions (pubsub.tf: uploads -> submit_batch, sweep -> on_job_event,
# split -> split_results), which carry the dead-letter topic, the ack deadline and the retry policy.
resource "google_cloudfunctions2_function" "fn" {
  for_each = local.functions
  name     = "dropbatch-${each.key}"
  project  = var.project_id
  location = var.region
  labels   = var.labels

  build_config {
    runtime         = "python311"
    entry_point     = each.value.entry
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email            = each.value.sa
    timeout_seconds                  = each.value.timeout
    available_memory                 = each.value.memory
    available_cpu                    = "1"
    max_instance_count               = each.value.max
    max_instance_request_concurrency = 1
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    environment_variables            = local.function_env
  }

  depends_on = [google_project_service.apis, time_sleep.agent_grants, google_project_iam_member.build_logs,
    google_project_iam_member.build_images, google_storage_bucket_iam_member.build_reads_source,
  google_project_iam_member.split_runs_bigquery_jobs, google_bigquery_dataset_iam_member.split_edits_results]
}
