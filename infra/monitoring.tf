# Watching the pipeline: log-based metrics counted from the structured lines the functions write (each line
# the code writes for a metric carries jsonPayload.event), alert policies on symptoms with what to do
# (docs/runbook.md), and a dashboard (dashboard.json). tests/e2e/test_monitoring.py runs a batch on the local
# stack and checks each filter against the lines it produced; tests/infra/test_monitoring_offline.py checks the rest.

locals {
  # Gen2 functions log as Cloud Run services named after the function (resource type cloud_run_revision).
  function_logs = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=(\"dropbatch-submit\" OR \"dropbatch-status\" OR \"dropbatch-split\")"

  # name => the lines it counts, the value it takes from each (null: a count of lines), its labels, its unit.
  log_metrics = {
    batches_ended = {
      description = "Batches that reached a terminal state, by state and model."
      filter      = "jsonPayload.event=\"batch_ended\""
      value       = null
      unit        = "1"
      labels      = { state = "EXTRACT(jsonPayload.state)", model = "EXTRACT(jsonPayload.model)" }
    }
    requests = {
      description = "Requests of finished batches by status and error code (one line per group; the value is how many)."
      filter      = "jsonPayload.event=\"requests\""
      value       = "EXTRACT(jsonPayload.count)"
      unit        = "1"
      labels      = { status = "EXTRACT(jsonPayload.status)", code = "EXTRACT(jsonPayload.code)", model = "EXTRACT(jsonPayload.model)" }
    }
    tokens = {
      description = "Tokens of finished batches by model and kind (input, output, thinking)."
      filter      = "jsonPayload.event=\"tokens\""
      value       = "EXTRACT(jsonPayload.count)"
      unit        = "1"
      labels      = { kind = "EXTRACT(jsonPayload.kind)", model = "EXTRACT(jsonPayload.model)" }
    }
    submit_latency = {
      description = "Seconds from a batch's claim to all its jobs created (each round)."
      filter      = "jsonPayload.event=\"batch_submitted\""
      value       = "EXTRACT(jsonPayload.latency_s)"
      unit        = "s"
      labels      = { model = "EXTRACT(jsonPayload.model)" }
    }
    batch_latency = {
      description = "Seconds from a batch's claim to its terminal message, by state."
      filter      = "jsonPayload.event=\"batch_ended\""
      value       = "EXTRACT(jsonPayload.latency_s)"
      unit        = "s"
      labels      = { state = "EXTRACT(jsonPayload.state)" }
    }
    batch_cost = {
      description = "Estimated cost of each priced batch, in USD (cost.py, prices.json)."
      filter      = "jsonPayload.event=\"batch_ended\" AND jsonPayload.cost_usd>=0"
      value       = "EXTRACT(jsonPayload.cost_usd)"
      unit        = "1"
      labels      = { model = "EXTRACT(jsonPayload.model)" }
    }
    retry_rounds = {
      description = "Retry rounds staged for requests that failed for a transient reason."
      filter      = "jsonPayload.event=\"retry_round\""
      value       = null
      unit        = "1"
      labels      = {}
    }
    notifications_undelivered = {
      description = "Completion messages given up after their publish attempts."
      filter      = "jsonPayload.event=\"notification_undelivered\" AND severity>=ERROR"
      value       = null
      unit        = "1"
      labels      = { state = "EXTRACT(jsonPayload.state)" }
    }
    batches_stalled = {
      description = "A batch's step did not finish in time and was started again (or a job ran past its deadline)."
      filter      = "jsonPayload.event=\"batch_stalled\""
      value       = null
      unit        = "1"
      labels      = { stage = "EXTRACT(jsonPayload.stage)" }
    }
    jobs_no_progress = {
      description = "Sweeps that found a job still queued past Vertex AI's 72-hour queue limit."
      filter      = "jsonPayload.event=\"job_no_progress\""
      value       = null
      unit        = "1"
      labels      = {}
    }
  }
}

resource "google_logging_metric" "m" {
  for_each    = local.log_metrics
  project     = var.project_id
  name        = "dropbatch/${each.key}"
  description = each.value.description
  filter      = "${local.function_logs} AND ${each.value.filter}"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = each.value.value == null ? "INT64" : "DISTRIBUTION"
    unit        = each.value.unit
    dynamic "labels" {
      for_each = each.value.labels
      content {
        key        = labels.key
        value_type = "STRING"
      }
    }
  }
  value_extractor  = each.value.value
  label_extractors = each.value.labels

  dynamic "bucket_options" {
    for_each = each.value.value == null ? [] : [1]
    content {
      exponential_buckets {
        num_finite_buckets = 40
        growth_factor      = 2
        scale              = 0.01
      }
    }
  }
  depends_on = [google_project_service.apis]
}

# A new log-based metric can take up to 10 minutes before an alert policy may name it (terraform-provider-google
# issue 11102: "Cannot find metric(s) that match type ... try again soon").
resource "time_sleep" "log_metrics" {
  create_duration = "600s"
  depends_on      = [google_logging_metric.m]
}

locals {
  # Each alert: what it watches (a Google metric, or a log-based metric above), and what the person paged does
  # (the same paragraphs are in docs/runbook.md).
  alerts = {
    dead_letters = {
      name      = "dropbatch: messages in a dead-letter subscription"
      filter    = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=monitoring.regex.full_match(\"dropbatch-.*-dead-letter-hold\")"
      aligner   = "ALIGN_MAX"
      threshold = 0
      duration  = "300s"
      doc       = "A function refused a message ten times and Pub/Sub set it aside. Read it with `gcloud pubsub subscriptions pull SUBSCRIPTION --limit 10` (do not ack), find the batch id in its attributes, and run `dropbatch status BATCH_ID`. Fix the cause (the function's ERROR logs for that batch), then replay the message by publishing its data and attributes to the topic it came from, and ack it."
    }
    stalled = {
      name      = "dropbatch: a batch stalled"
      filter    = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.m["batches_stalled"].name}\" AND resource.type=\"cloud_run_revision\""
      aligner   = "ALIGN_SUM"
      threshold = 0
      duration  = "0s"
      doc       = "A step of a batch did not finish in time and the sweep started it again (label stage: submit, split, finish), or a job ran past its deadline (stage job). One occurrence heals itself; repeated ones for the same batch mean the step keeps dying: read the function's logs for the batch id (timeouts, memory), then `dropbatch status BATCH_ID`. A job past its deadline is cancelled with `dropbatch cancel BATCH_ID`; its partial results are still split."
    }
    undelivered = {
      name      = "dropbatch: completion messages not delivered"
      filter    = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.m["notifications_undelivered"].name}\" AND resource.type=\"cloud_run_revision\""
      aligner   = "ALIGN_SUM"
      threshold = 0
      duration  = "0s"
      doc       = "A completion message could not be published after its attempts (a deleted notifications topic, or a missing publisher grant). The batch itself finished: its manifest and results are in the bucket. Restore the topic or the grant (`terraform apply`), then tell the consumers of the batch ids in the ERROR log lines, which `dropbatch list` also shows."
    }
    no_job_progress = {
      name      = "dropbatch: a job queued past Vertex AI's queue limit"
      filter    = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.m["jobs_no_progress"].name}\" AND resource.type=\"cloud_run_revision\""
      aligner   = "ALIGN_SUM"
      threshold = 0
      duration  = "0s"
      doc       = "A batch prediction job has been queued or pending longer than the 72 hours after which Vertex AI expires it. Check the job in the console (Vertex AI, Batch predictions) and the project's batch quota; cancel it with `dropbatch cancel BATCH_ID` and run the file again, or wait for Vertex to expire it (the batch then ends `expired`)."
    }
  }
}

resource "google_monitoring_alert_policy" "symptom" {
  for_each              = local.alerts
  project               = var.project_id
  display_name          = each.value.name
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = var.labels

  conditions {
    display_name = each.value.name
    condition_threshold {
      filter          = each.value.filter
      comparison      = "COMPARISON_GT"
      threshold_value = each.value.threshold
      duration        = each.value.duration
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = each.value.aligner
      }
    }
  }

  documentation {
    content   = each.value.doc
    mime_type = "text/markdown"
  }
  depends_on = [time_sleep.log_metrics]
}

# The functions' share of failed requests: what Pub/Sub push redelivers, over what it delivered.
resource "google_monitoring_alert_policy" "error_ratio" {
  project               = var.project_id
  display_name          = "dropbatch: function error ratio"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = var.labels

  conditions {
    display_name = "more than ${var.error_ratio_threshold * 100}% of a function's requests fail"
    condition_threshold {
      filter             = "metric.type=\"run.googleapis.com/request_count\" AND resource.type=\"cloud_run_revision\" AND resource.labels.service_name=starts_with(\"dropbatch-\") AND metric.labels.response_code_class!=\"2xx\""
      denominator_filter = "metric.type=\"run.googleapis.com/request_count\" AND resource.type=\"cloud_run_revision\" AND resource.labels.service_name=starts_with(\"dropbatch-\")"
      comparison         = "COMPARISON_GT"
      threshold_value    = var.error_ratio_threshold
      duration           = "900s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.labels.service_name"]
      }
      denominator_aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.labels.service_name"]
      }
    }
  }

  documentation {
    content   = "A function answers more of its deliveries with an error than the threshold, so Pub/Sub keeps redelivering them (and sets them aside after ten attempts). Read the function's ERROR lines (Logs Explorer: resource.labels.service_name=\"dropbatch-NAME\" severity>=ERROR): a 403 names the missing permission (`terraform apply` restores the grants), a timeout or out-of-memory line means the step needs more memory or a smaller budget (DROPBATCH_SPLIT_BUDGET_S, DROPBATCH_SUBMIT_BUDGET_S)."
    mime_type = "text/markdown"
  }
  depends_on = [google_project_service.apis] # the Monitoring API is on before the first policy
}

resource "google_monitoring_dashboard" "dropbatch" {
  project        = var.project_id
  dashboard_json = file("${path.module}/dashboard.json")
  depends_on     = [time_sleep.log_metrics]
}
