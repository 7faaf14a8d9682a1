# Signed webhooks (docs/contracts.md, Webhooks): a small function of its own, pushed every completion message by a
# subscription on the notifications topic, signing with a secret from Secret Manager. It reads only ledgers (for a
# batch's own endpoint, under batches/) and the secret; it publishes nothing and writes nothing.

resource "google_service_account" "webhook" {
  account_id   = "dropbatch-webhook"
  project      = var.project_id
  display_name = "dropbatch deliver_webhook: POSTs signed completion messages to webhook endpoints"
  depends_on   = [google_project_service.apis]
}

resource "google_storage_bucket_iam_member" "webhook_reads_ledgers" {
  bucket = local.state_bucket
  role   = "roles/storage.objectViewer"
  member = google_service_account.webhook.member
  condition {
    title       = "batches-only"
    description = "deliver_webhook reads a batch's ledger for its own endpoint"
    expression  = local.batches_scope
  }
}

# The signing secret: generated here, whsec_ and base64 as the Standard Webhooks specification writes it. Receivers
# read it with `gcloud secrets versions access latest --secret dropbatch-webhook-secret`.
resource "random_bytes" "webhook_secret" {
  length = 32
}

resource "google_secret_manager_secret" "webhook" {
  #checkov:skip=CKV_GCP_84:Google-managed encryption; the secret signs messages that carry ids and counts only.
  secret_id = "dropbatch-webhook-secret"
  project   = var.project_id
  labels    = var.labels
  replication {
    auto {}
  }
  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "webhook" {
  secret      = google_secret_manager_secret.webhook.id
  secret_data = "whsec_${random_bytes.webhook_secret.base64}"
}

resource "google_secret_manager_secret_iam_member" "webhook_reads_secret" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.webhook.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.webhook.member
}

resource "google_cloudfunctions2_function" "webhook" {
  name     = "dropbatch-webhook"
  project  = var.project_id
  location = var.region
  labels   = var.labels

  build_config {
    runtime         = "python311"
    entry_point     = "deliver_webhook"
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.webhook.email
    timeout_seconds                  = 120 # ten seconds a POST, a few endpoints
    available_memory                 = "256Mi"
    available_cpu                    = "1"
    max_instance_count               = var.function_max_instances
    max_instance_request_concurrency = 1
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    environment_variables = merge(local.function_env, {
      DROPBATCH_WEBHOOK_URLS = join(",", var.webhook_urls)
    })
    secret_environment_variables {
      key        = "DROPBATCH_WEBHOOK_SECRET"
      project_id = var.project_id
      secret     = google_secret_manager_secret.webhook.secret_id
      version    = "latest"
    }
  }

  depends_on = [google_project_service.apis, google_project_iam_member.build_logs, google_project_iam_member.build_images,
    google_storage_bucket_iam_member.build_reads_source, google_secret_manager_secret_iam_member.webhook_reads_secret,
  google_secret_manager_secret_version.webhook]
}

resource "google_cloud_run_service_iam_member" "pusher_invokes_webhook" {
  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.webhook.service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.pusher.member
}

# Every message, pushed with backoff up to ten minutes apart. No dead-letter topic: the function itself gives a
# message up once it is older than DROPBATCH_WEBHOOK_RETRY_S (25 h, with an ERROR log, webhook_given_up), and the
# subscription keeps messages for two days, past that.
resource "google_pubsub_subscription" "webhooks" {
  name                       = "dropbatch-notifications-webhooks"
  project                    = var.project_id
  topic                      = google_pubsub_topic.notifications.id
  ack_deadline_seconds       = 180
  message_retention_duration = "172800s"
  labels                     = var.labels

  push_config {
    push_endpoint = google_cloudfunctions2_function.webhook.service_config[0].uri
    oidc_token {
      service_account_email = google_service_account.pusher.email
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  expiration_policy {
    ttl = ""
  }
}
