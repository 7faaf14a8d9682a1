# dropbatch: a bucket to drop JSONL files into, three functions, the topics between them, a sweep.
# Every grant is in iam.tf with its reason; functions in functions.tf; topics and subscriptions in pubsub.tf.

data "google_project" "this" {
  project_id = var.project_id
}

# Service agents are created, not assumed: on a fresh project the Vertex AI and Pub/Sub agents do not exist
# until first use (google_project_service_identity, google-beta, creates them) and the Cloud Storage agent is
# created by reading its data source.
resource "google_project_service_identity" "agents" {
  provider   = google-beta
  for_each   = toset(["aiplatform.googleapis.com", "pubsub.googleapis.com"])
  project    = var.project_id
  service    = each.value
  depends_on = [google_project_service.apis]
}

# New service agents and their grants take a while to propagate; Google's samples wait before first use.
resource "time_sleep" "agent_grants" {
  create_duration = "60s"
  depends_on = [google_storage_bucket_iam_member.vertex_agent_read, google_storage_bucket_iam_member.vertex_agent_write,
    google_pubsub_topic_iam_member.gcs_agent_publishes_uploads, google_pubsub_topic_iam_member.dead_letter_publisher,
  google_pubsub_subscription_iam_member.dead_letter_subscriber]
}

# Reading this data source makes Google create the Cloud Storage service agent if it does not exist yet.
data "google_storage_project_service_account" "gcs" {
  project    = var.project_id
  depends_on = [google_project_service.apis]
}

locals {
  services = [
    "aiplatform.googleapis.com",
    "bigquery.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudscheduler.googleapis.com",
    "artifactregistry.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ]
  project_number = data.google_project.this.number
  # Service agents the flow depends on (created by Google when the APIs are enabled).
  vertex_agent = "serviceAccount:${google_project_service_identity.agents["aiplatform.googleapis.com"].email}"
  gcs_agent    = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
  pubsub_agent = "serviceAccount:${google_project_service_identity.agents["pubsub.googleapis.com"].email}"
  # Where batches/ lives: the drop bucket, or the optional results bucket.
  state_bucket  = var.results_bucket_name == "" ? module.drop_bucket.name : module.results_bucket[0].name
  batches_scope = "resource.name.startsWith(\"projects/_/buckets/${local.state_bucket}/objects/batches/\")"
}

resource "google_project_service" "apis" {
  for_each           = toset(local.services)
  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# The drop bucket. Users write incoming/; the functions write only batches/ (see the IAM conditions).
module "drop_bucket" {
  source                            = "./modules/bucket"
  name                              = var.bucket_name
  project_id                        = var.project_id
  location                          = var.region
  labels                            = var.labels
  holds_batches                     = var.results_bucket_name == ""
  staged_input_retention_days       = var.staged_input_retention_days
  batch_retention_days              = var.batch_retention_days
  noncurrent_version_retention_days = var.noncurrent_version_retention_days
  depends_on                        = [google_project_service.apis]
}

# Optional: everything dropbatch writes in a bucket of its own, so the drop bucket only ever receives files.
module "results_bucket" {
  source                            = "./modules/bucket"
  count                             = var.results_bucket_name == "" ? 0 : 1
  name                              = var.results_bucket_name
  project_id                        = var.project_id
  location                          = var.region
  labels                            = var.labels
  holds_batches                     = true
  staged_input_retention_days       = var.staged_input_retention_days
  batch_retention_days              = var.batch_retention_days
  noncurrent_version_retention_days = var.noncurrent_version_retention_days
  depends_on                        = [google_project_service.apis]
}

# The functions' source archive lives in a bucket of its own, readable only by Cloud Build.
resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:Access logs go to Cloud Audit Logs (data access logs), not to a second log bucket.
  name                        = "${var.bucket_name}-fn-source"
  project                     = var.project_id
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = var.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      num_newer_versions = 5
      with_state         = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

data "archive_file" "source" {
  type        = "zip"
  source_dir  = "${path.module}/../functions"
  output_path = "${path.module}/.build/functions.zip"
  # What is deployed is what runs in the cloud: the entry points and the package, without the CLI and the
  # local stack (tests/infra/test_archive.py asserts the file list).
  excludes = [
    "**/__pycache__/**", "**/*.pyc", "dropbatch.egg-info/**", "dropbatch/local/**", "dropbatch/cli/**",
    "dropbatch/control.py", "dropbatch/__main__.py",
  ]
}

resource "google_storage_bucket_object" "source" {
  name   = "functions-${data.archive_file.source.output_md5}.zip"
  bucket = google_storage_bucket.source.name
  source = data.archive_file.source.output_path
}

# The local stack's ticker, in the cloud: publish to the sweep topic on a schedule.
resource "google_cloud_scheduler_job" "sweep" {
  name      = "dropbatch-sweep"
  project   = var.project_id
  region    = var.region
  schedule  = var.sweep_schedule
  time_zone = "Etc/UTC"

  retry_config {
    retry_count = 1
  }

  pubsub_target {
    topic_name = google_pubsub_topic.sweep.id
    data       = base64encode("{\"source\": \"cloud-scheduler\"}")
  }

  depends_on = [google_project_service.apis]
}
