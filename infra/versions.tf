terraform {
  required_version = ">= 1.5.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0.0, < 8.0.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4.0, < 3.0.0"
    }
  }

  # Set by `terraform init -backend-config=bucket=... -backend-config=prefix=...` (cloudbuild.yaml does).
  backend "gcs" {}
}

provider "google" {
  project = var.project_id
  region  = var.region
}
