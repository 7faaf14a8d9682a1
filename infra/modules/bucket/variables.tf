variable "name" {
  type        = string
  description = "The bucket name."
}

variable "project_id" {
  type        = string
  description = "The project that owns the bucket."
}

variable "location" {
  type        = string
  description = "The bucket's region."
}

variable "labels" {
  type        = map(string)
  description = "Labels on the bucket."
  default     = {}
}

variable "holds_batches" {
  type        = bool
  description = "Whether dropbatch keeps batches/ in this bucket (then the batch lifecycle rules apply)."
}

variable "staged_input_retention_days" {
  type        = number
  description = "Days to keep staged inputs under batches/."
  validation {
    condition     = var.staged_input_retention_days >= 1
    error_message = "staged_input_retention_days must be at least 1."
  }
}

variable "batch_retention_days" {
  type        = number
  description = "Days to keep everything under batches/; 0 keeps them forever."
  validation {
    condition     = var.batch_retention_days >= 0
    error_message = "batch_retention_days must be 0 or more."
  }
}

variable "noncurrent_version_retention_days" {
  type        = number
  description = "Days to keep replaced or deleted object versions."
  validation {
    condition     = var.noncurrent_version_retention_days >= 1
    error_message = "noncurrent_version_retention_days must be at least 1."
  }
}
