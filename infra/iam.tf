# Identities and grants. Every grant is on the bucket or topic it needs, except where none exists (commented).
# No basic roles, no roles/iam.* grants. The functions may write only under batches/ (IAM conditions), so
# no function can overwrite or delete a user's file.

resource "google_service_account" "submit" {
  account_id   = "dropbatch-submit"
  project      = var.project_id
  display_name = "dropbatch submit_batch: validates dropped files and creates batch jobs"
  depends_on   = [google_project_service.apis]
}

resource "google_service_account" "status" {
  account_id   = "dropbatch-status"
  project      = var.project_id
  display_name = "dropbatch on_job_event: polls active jobs and queues split tasks"
  depends_on   = [google_project_service.apis]
}

resource "google_service_account" "split" {
  account_id   = "dropbatch-split"
  project      = var.project_id
  display_name = "dropbatch split_results: writes one result object per request"
  depends_on   = [google_project_service.apis]
}

resource "google_service_account" "pusher" {
  account_id   = "dropbatch-pusher"
  project      = var.project_id
  display_name = "dropbatch: Pub/Sub push identity that invokes the three functions"
  depends_on   = [google_project_service.apis]
}

# The functions are built by an identity of their own (not the default Compute or Cloud Build account).
resource "google_service_account" "build" {
  account_id   = "dropbatch-build"
  project      = var.project_id
  display_name = "dropbatch: builds the functions from their source archive"
  depends_on   = [google_project_service.apis]
}

# Cloud Functions writes build logs and images to the project's log and its gcf-artifacts repository, which
# Google creates on first deploy: there is no resource of ours to bind these on.
resource "google_project_iam_member" "build_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.build.member
}

# As above: the gcf-artifacts Artifact Registry repository is created by Cloud Functions, not by this Terraform.
resource "google_project_iam_member" "build_images" {
  project = var.project_id
  role    = "roles/artifactregistry.writer"
  member  = google_service_account.build.member
}

resource "google_storage_bucket_iam_member" "build_reads_source" {
  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.build.member
}

locals {
  function_sas = {
    submit = google_service_account.submit.member
    status = google_service_account.status.member
    split  = google_service_account.split.member
  }
}

# --- The bucket -------------------------------------------------------------------------------

# Every function reads the drop bucket (the dropped file) and the state bucket (ledgers, outputs, batches/).
resource "google_storage_bucket_iam_member" "functions_read" {
  for_each = { submit = google_service_account.submit.member, status = google_service_account.status.member }
  bucket   = module.drop_bucket.name
  role     = "roles/storage.objectViewer"
  member   = each.value
}

# split_results reads only batches/ (staged input, outputs, its checkpoints), never a user's file; listing is
# a bucket-level call, so the condition lets it list names and read objects under batches/ only.
resource "google_storage_bucket_iam_member" "split_reads_batches" {
  bucket = local.state_bucket
  role   = "roles/storage.objectViewer"
  member = google_service_account.split.member
  condition {
    title       = "batches-only"
    description = "split_results reads staged input and Vertex output under batches/"
    expression  = "resource.type == \"storage.googleapis.com/Bucket\" || ${local.batches_scope}"
  }
}

resource "google_storage_bucket_iam_member" "functions_read_state" {
  for_each = var.results_bucket_name == "" ? {} : { submit = google_service_account.submit.member,
  status = google_service_account.status.member }
  bucket = local.state_bucket
  role   = "roles/storage.objectViewer"
  member = each.value
}

# ... and writes only under batches/ (ledger, staged input, results, manifest).
resource "google_storage_bucket_iam_member" "functions_write_batches" {
  for_each = local.function_sas
  bucket   = local.state_bucket
  role     = "roles/storage.objectUser"
  member   = each.value
  condition {
    title       = "batches-only"
    description = "dropbatch writes only its own objects under batches/"
    expression  = local.batches_scope
  }
}

# The Vertex AI service agent reads the staged input and writes the predictions, both under batches/.
resource "google_storage_bucket_iam_member" "vertex_agent_read" {
  bucket = local.state_bucket
  role   = "roles/storage.objectViewer"
  member = local.vertex_agent
  condition {
    title       = "batches-only"
    description = "Vertex AI reads staged inputs under batches/"
    expression  = local.batches_scope
  }
}

resource "google_storage_bucket_iam_member" "vertex_agent_write" {
  bucket = local.state_bucket
  role   = "roles/storage.objectCreator"
  member = local.vertex_agent
  condition {
    title       = "batches-only"
    description = "Vertex AI writes predictions under batches/"
    expression  = local.batches_scope
  }
}

# --- Topics ---------------------------------------------------------------------------------

resource "google_pubsub_topic_iam_member" "notifications_publishers" {
  for_each = local.function_sas
  project  = var.project_id
  topic    = google_pubsub_topic.notifications.name
  role     = "roles/pubsub.publisher"
  member   = each.value
}

# status queues split tasks; split publishes its own continuation before its deadline.
resource "google_pubsub_topic_iam_member" "split_publishers" {
  for_each = { status = google_service_account.status.member, split = google_service_account.split.member }
  project  = var.project_id
  topic    = google_pubsub_topic.split.name
  role     = "roles/pubsub.publisher"
  member   = each.value
}

# Tasks for submit_batch, the only account that creates jobs: submit continues a submission that stops before
# its deadline; status asks for one when a submission's function died or parts wait for a job slot; split
# asks for the jobs of a retry round it staged.
resource "google_pubsub_topic_iam_member" "uploads_publishers" {
  for_each = { submit = google_service_account.submit.member, status = google_service_account.status.member,
  split = google_service_account.split.member }
  project = var.project_id
  topic   = google_pubsub_topic.uploads.name
  role    = "roles/pubsub.publisher"
  member  = each.value
}

# The Pub/Sub service agent moves undeliverable messages to the dead-letter topics and acks the originals.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = google_pubsub_topic.dead_letter
  project  = var.project_id
  topic    = each.value.name
  role     = "roles/pubsub.publisher"
  member   = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each     = google_pubsub_subscription.push
  project      = var.project_id
  subscription = each.value.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

# --- Invoking the functions -----------------------------------------------------------------

resource "google_cloud_run_service_iam_member" "pusher_invokes" {
  for_each = google_cloudfunctions2_function.fn
  project  = var.project_id
  location = var.region
  service  = each.value.service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.pusher.member
}

# --- Project level, only where no narrower binding exists -------------------------------------

# Exactly the batch prediction calls each function makes, instead of roles/aiplatform.user's hundreds of
# permissions: submit_batch creates jobs (after listing by label for one a lost answer made), on_job_event only
# GETs them; cancel is the CLI's, made with the user's own rights.
resource "google_project_iam_custom_role" "batch_jobs" {
  project     = var.project_id
  role_id     = "dropbatchBatchJobs"
  title       = "dropbatch batch prediction job creation"
  description = "Create and list Vertex AI batch prediction jobs, and count a file's tokens before (countTokens); nothing else."
  # countTokens needs aiplatform.endpoints.predict (the Count Tokens API page); no prediction is made with it
  permissions = ["aiplatform.batchPredictionJobs.create", "aiplatform.batchPredictionJobs.list", "aiplatform.endpoints.predict"]
  depends_on  = [google_project_service.apis]
}

resource "google_project_iam_custom_role" "batch_jobs_read" {
  project     = var.project_id
  role_id     = "dropbatchBatchJobsRead"
  title       = "dropbatch batch prediction job status"
  description = "Get Vertex AI batch prediction jobs; nothing else."
  permissions = ["aiplatform.batchPredictionJobs.get"]
  depends_on  = [google_project_service.apis]
}

# Vertex AI batch jobs have no resource to bind on before they exist: the custom roles are granted on the project.
resource "google_project_iam_member" "vertex_creator" {
  project = var.project_id
  role    = google_project_iam_custom_role.batch_jobs.name
  member  = google_service_account.submit.member
}

# As above: on_job_event only reads the jobs' states.
resource "google_project_iam_member" "vertex_reader" {
  project = var.project_id
  role    = google_project_iam_custom_role.batch_jobs_read.name
  member  = google_service_account.status.member
}

# The Cloud Storage service agent publishes the drop bucket's notifications: publisher on that topic only.
resource "google_pubsub_topic_iam_member" "gcs_agent_publishes_uploads" {
  project = var.project_id
  topic   = google_pubsub_topic.uploads.name
  role    = "roles/pubsub.publisher"
  member  = local.gcs_agent
}
