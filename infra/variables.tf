variable "project_id" {
  type        = string
  description = "The Google Cloud project that runs dropbatch."
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project ID: 6-30 lowercase letters, digits and hyphens."
  }
}

variable "region" {
  type        = string
  description = "Region for the functions, the bucket and the Vertex AI batch jobs (a Gemini batch region)."
  default     = "us-central1"
  validation {
    condition     = can(regex("^(us|europe|asia|australia|northamerica|southamerica|me|africa)-[a-z]+[0-9]$", var.region))
    error_message = "region must be a Google Cloud region such as us-central1 or europe-west4."
  }
}

variable "bucket_name" {
  type        = string
  description = "The bucket users drop files into (incoming/) and where dropbatch keeps batches/."
  validation {
    # At most 53 characters: the functions' source bucket is BUCKET_NAME-fn-source, and bucket names stop at 63.
    condition     = can(regex("^[a-z0-9][a-z0-9_-]{1,51}[a-z0-9]$", var.bucket_name)) && !can(regex("^goog", var.bucket_name))
    error_message = "bucket_name must be 3-53 lowercase letters, digits, '-' or '_' (BUCKET_NAME-fn-source must fit 63), and must not start with 'goog'."
  }
}

variable "results_bucket_name" {
  type        = string
  description = "Optional separate bucket for everything dropbatch writes (batches/); empty keeps it in bucket_name."
  default     = ""
  validation {
    condition     = var.results_bucket_name == "" || can(regex("^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$", var.results_bucket_name))
    error_message = "results_bucket_name must be empty or 3-63 lowercase letters, digits, '-' or '_'."
  }
}

variable "incoming_prefix" {
  type        = string
  description = "Objects under this prefix ending in .jsonl or .jsonl.gz become batches."
  default     = "incoming/"
  validation {
    condition     = can(regex("^[A-Za-z0-9._-]+/$", var.incoming_prefix)) && var.incoming_prefix != "batches/"
    error_message = "incoming_prefix must be one folder name ending in '/', and not 'batches/'."
  }
}

variable "model" {
  type        = string
  description = "Default Gemini model for batch jobs (a file may override it with object metadata `model`)."
  default     = "gemini-2.5-flash"
  validation {
    condition     = can(regex("^gemini-[0-9a-z.-]+$", var.model))
    error_message = "model must be a Gemini model ID such as gemini-2.5-flash."
  }
}

variable "sweep_schedule" {
  type        = string
  description = "Cron schedule of the sweep that polls active jobs (Cloud Scheduler, in UTC)."
  default     = "*/2 * * * *"
  validation {
    condition     = length(split(" ", var.sweep_schedule)) == 5
    error_message = "sweep_schedule must be a five-field cron expression, e.g. */2 * * * *."
  }
}

variable "max_concurrent_jobs" {
  type        = number
  description = "How many batch jobs dropbatch keeps running at once; further parts wait for the sweep."
  default     = 8
  validation {
    condition     = var.max_concurrent_jobs >= 1 && var.max_concurrent_jobs <= 100
    error_message = "max_concurrent_jobs must be between 1 and 100."
  }
}

variable "job_deadline_hours" {
  type        = number
  description = "A job still queued or running after this many hours is reported as stalled."
  default     = 96
  validation {
    condition     = var.job_deadline_hours >= 1 && var.job_deadline_hours <= 168
    error_message = "job_deadline_hours must be between 1 and 168."
  }
}

variable "staged_input_retention_days" {
  type        = number
  description = "Days to keep the staged copy of each input (batches/*/input/part-*.jsonl); the user's file is never deleted."
  default     = 14
  validation {
    condition     = var.staged_input_retention_days >= 1
    error_message = "staged_input_retention_days must be at least 1."
  }
}

variable "batch_retention_days" {
  type        = number
  description = "Days to keep everything under batches/ (results, outputs, ledgers); 0 keeps them forever."
  default     = 90
  validation {
    condition     = var.batch_retention_days >= 0
    error_message = "batch_retention_days must be 0 (forever) or more."
  }
}

variable "noncurrent_version_retention_days" {
  type        = number
  description = "Days to keep overwritten or deleted object versions (versioning protects users' files)."
  default     = 30
  validation {
    condition     = var.noncurrent_version_retention_days >= 1
    error_message = "noncurrent_version_retention_days must be at least 1."
  }
}

variable "function_max_instances" {
  type        = number
  description = "Upper bound on instances of each function."
  default     = 10
  validation {
    condition     = var.function_max_instances >= 1 && var.function_max_instances <= 100
    error_message = "function_max_instances must be between 1 and 100."
  }
}

variable "labels" {
  type        = map(string)
  description = "Labels added to every resource that takes them."
  default     = { app = "dropbatch" }
}

variable "notification_channels" {
  type        = list(string)
  description = "Monitoring notification channels (projects/P/notificationChannels/ID) the alert policies page; empty: alerts show in the console only."
  default     = []
  validation {
    condition     = alltrue([for c in var.notification_channels : can(regex("^projects/[^/]+/notificationChannels/[^/]+$", c))])
    error_message = "Each notification channel is a resource name: projects/PROJECT/notificationChannels/ID."
  }
}

variable "error_ratio_threshold" {
  type        = number
  description = "Alert when more than this share of a function's requests fail over 15 minutes (0 to 1)."
  default     = 0.2
  validation {
    condition     = var.error_ratio_threshold > 0 && var.error_ratio_threshold < 1
    error_message = "error_ratio_threshold is a share between 0 and 1."
  }
}

variable "max_batch_cost" {
  type        = number
  description = "A batch whose cost bound (docs/contracts.md, Spending cap) is above this many USD is rejected before any job; 0: no cap. Object metadata max_cost sets a batch's own."
  default     = 0
  validation {
    condition     = var.max_batch_cost >= 0
    error_message = "max_batch_cost is 0 (no cap) or a positive amount."
  }
}

variable "max_daily_cost" {
  type        = number
  description = "The project's cap a UTC day, in USD (docs/contracts.md, Spending cap): running batches' bounds plus the cost of batches ended that day; 0: no cap."
  default     = 0
  validation {
    condition     = var.max_daily_cost >= 0
    error_message = "max_daily_cost is 0 (no cap) or a positive amount."
  }
}

variable "over_daily_cost" {
  type        = string
  description = "What a batch past the daily cap does: wait (for batches to end, or the next day) or reject."
  default     = "wait"
  validation {
    condition     = contains(["wait", "reject"], var.over_daily_cost)
    error_message = "over_daily_cost is wait or reject."
  }
}

variable "reuse" {
  type        = bool
  description = "Answer a request an earlier batch in the bucket already answered from that answer, not Vertex (docs/contracts.md, Reuse)."
  default     = false
}

variable "reuse_max" {
  type        = number
  description = "Fingerprints the reuse index keeps (the newest), across its 256 shards."
  default     = 1000000
  validation {
    condition     = var.reuse_max >= 256
    error_message = "reuse_max is at least 256 (one a shard)."
  }
}

variable "webhook_urls" {
  type        = list(string)
  description = "HTTPS endpoints every batch's running and terminal messages are POSTed to, signed (docs/contracts.md, Webhooks); object metadata webhook adds a batch's own."
  default     = []
  validation {
    condition     = alltrue([for u in var.webhook_urls : startswith(u, "https://")])
    error_message = "webhook_urls are https:// URLs."
  }
}

variable "prices_json" {
  type        = string
  description = "Prices laid over the table shipped in functions/dropbatch/prices.json (same shape: {\"models\": {MODEL: {input, output, batch_input, batch_output}}}, USD per 1M tokens); empty keeps it."
  default     = ""
  validation {
    condition     = var.prices_json == "" || can(jsondecode(var.prices_json).models)
    error_message = "prices_json is a JSON object with a models map, or empty."
  }
}

variable "results_table" {
  type        = string
  description = "PROJECT.DATASET.TABLE: every ended batch's results are loaded into it (created here, with its dataset); empty: no table."
  default     = ""
  validation {
    condition     = var.results_table == "" || can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]\\.[A-Za-z0-9_]{1,1024}\\.[A-Za-z0-9_-]{1,1024}$", var.results_table))
    error_message = "results_table is PROJECT.DATASET.TABLE, or empty."
  }
}

variable "results_table_location" {
  type        = string
  description = "The results dataset's location (BigQuery: US, EU or a region)."
  default     = "US"
}

variable "input_datasets" {
  type        = list(string)
  description = "PROJECT.DATASET of BigQuery datasets whose tables users run through .bq.json pointers: the submit function may read them (data viewer on each, nothing else)."
  default     = []
  validation {
    condition     = alltrue([for d in var.input_datasets : can(regex("^[a-z][a-z0-9.:-]{4,61}[a-z0-9]\\.[A-Za-z0-9_]{1,1024}$", d))])
    error_message = "input_datasets lists PROJECT.DATASET names."
  }
}
