# The results table (optional): every ended batch's results, one row per request (docs/contracts.md, Results
# table). Off unless results_table is set. The schema is the code's own file, so the two cannot drift.

locals {
  results_table = var.results_table == "" ? null : {
    project = split(".", var.results_table)[0]
    dataset = split(".", var.results_table)[1]
    table   = split(".", var.results_table)[2]
  }
}

resource "google_bigquery_dataset" "results" {
  #checkov:skip=CKV_GCP_81:Google-managed encryption, as the bucket that holds the same results.jsonl.
  count      = local.results_table == null ? 0 : 1
  project    = local.results_table.project
  dataset_id = local.results_table.dataset
  location   = var.results_table_location
  labels     = var.labels
  depends_on = [google_project_service.apis]
}

resource "google_bigquery_table" "results" {
  #checkov:skip=CKV_GCP_80:Google-managed encryption, as the bucket that holds the same results.jsonl.
  count               = local.results_table == null ? 0 : 1
  project             = local.results_table.project
  dataset_id          = google_bigquery_dataset.results[0].dataset_id
  table_id            = local.results_table.table
  schema              = file("${path.module}/../functions/dropbatch/results_table.json")
  deletion_protection = true
  labels              = var.labels
  time_partitioning {
    type  = "DAY"
    field = "finished_time"
  }
  clustering = ["batch_id"]
}

# The finishing identity (split) loads and merges: data editor on this dataset only (it also creates and drops
# the per-batch staging table there), and job user on the project, where the load and query jobs run.
resource "google_bigquery_dataset_iam_member" "split_edits_results" {
  count      = local.results_table == null ? 0 : 1
  project    = local.results_table.project
  dataset_id = google_bigquery_dataset.results[0].dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = google_service_account.split.member
}

# Project level, as BigQuery jobs run in a project: job user cannot be granted on a narrower resource.
resource "google_project_iam_member" "split_runs_bigquery_jobs" {
  count   = local.results_table == null ? 0 : 1
  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = google_service_account.split.member
}

# Tables as input (.bq.json pointers): the submit function reads a table's rows with tabledata.list, which needs
# bigquery.tables.get and bigquery.tables.getData on the table; data viewer on each listed dataset grants them
# and nothing beyond reading. No job runs, so no job user for submit.
resource "google_bigquery_dataset_iam_member" "submit_reads_inputs" {
  for_each   = toset(var.input_datasets)
  project    = join(".", slice(split(".", each.value), 0, length(split(".", each.value)) - 1))
  dataset_id = element(split(".", each.value), length(split(".", each.value)) - 1)
  role       = "roles/bigquery.dataViewer"
  member     = google_service_account.submit.member
}
