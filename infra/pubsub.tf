# Topics, and a push subscription with a dead-letter topic and a bounded retry for every push path.

resource "google_pubsub_topic" "notifications" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption; completion messages carry counts and object names only.
  name                       = "dropbatch-notifications"
  project                    = var.project_id
  labels                     = var.labels
  message_retention_duration = "604800s"
  depends_on                 = [google_project_service.apis]
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
  for_each                   = toset(["sweep", "split"])
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
    sweep = { topic = google_pubsub_topic.sweep.id, fn = google_cloudfunctions2_function.fn["status"], ack = 300 }
    split = { topic = google_pubsub_topic.split.id, fn = google_cloudfunctions2_function.fn["split"], ack = 600 }
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
