output "bucket" {
  description = "Drop JSONL files into gs://BUCKET/incoming/."
  value       = module.drop_bucket.name
}

output "results_bucket" {
  description = "Where batches/BATCH_ID/results/ are written."
  value       = local.state_bucket
}

output "drop_command" {
  description = "How to drop a file."
  value       = "gcloud storage cp examples/requests.jsonl gs://${module.drop_bucket.name}/${var.incoming_prefix}"
}

output "topics" {
  description = "Pub/Sub topics: completion messages, split tasks, sweep ticks, dead letters."
  value = {
    notifications = google_pubsub_topic.notifications.name
    uploads       = google_pubsub_topic.uploads.name
    split         = google_pubsub_topic.split.name
    sweep         = google_pubsub_topic.sweep.name
    dead_letter   = { for k, t in google_pubsub_topic.dead_letter : k => t.name }
  }
}

output "functions" {
  description = "The four functions: name and URI (reached only by their push subscriptions)."
  value = merge({ for k, fn in google_cloudfunctions2_function.fn : k => { name = fn.name, uri = fn.service_config[0].uri } },
  { webhook = { name = google_cloudfunctions2_function.webhook.name, uri = google_cloudfunctions2_function.webhook.service_config[0].uri } })
}

output "service_accounts" {
  description = "The identities: one per function, and the one Pub/Sub pushes with."
  value = {
    submit  = google_service_account.submit.email
    status  = google_service_account.status.email
    split   = google_service_account.split.email
    pusher  = google_service_account.pusher.email
    webhook = google_service_account.webhook.email
  }
}

output "webhook_secret_command" {
  description = "How a webhook receiver gets the signing secret (whsec_...)."
  value       = "gcloud secrets versions access latest --project ${var.project_id} --secret ${google_secret_manager_secret.webhook.secret_id}"
}

output "subscribe_command" {
  description = "Create a subscription to the completion messages and read them."
  value       = "gcloud pubsub subscriptions create dropbatch-me --project ${var.project_id} --topic ${google_pubsub_topic.notifications.name} && gcloud pubsub subscriptions pull dropbatch-me --project ${var.project_id} --auto-ack --limit 10"
}
