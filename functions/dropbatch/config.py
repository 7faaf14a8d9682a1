"""Configuration: one frozen dataclass, built once from DROPBATCH_* environment variables."""

from __future__ import annotations

import dataclasses
import functools
import os

from .constants import GB
from .errors import UsageError


@dataclasses.dataclass(frozen=True)
class Config:
    project: str = "dropbatch-local"
    location: str = "us-central1"
    bucket: str = "dropbatch-local"  # where users drop files (incoming/)
    # where batches/ lives (ledgers, staged input, outputs, results); empty: `bucket`
    results_bucket: str = ""
    incoming_prefix: str = "incoming/"
    batches_prefix: str = "batches/"
    model: str = "gemini-2.5-flash"
    notifications_topic: str = "dropbatch-notifications"
    split_topic: str = "dropbatch-split"
    sweep_topic: str = "dropbatch-sweep"
    uploads_topic: str = "dropbatch-uploads"
    # empty: LOCATION-aiplatform.googleapis.com; local stack: http://127.0.0.1:PORT
    vertex_endpoint: str = ""
    # Vertex AI limits for one batch job input file: each model family's (families.py; Gemini
    # 200,000 requests, 1 GB).
    max_job_requests: int = 0  # 0: the model family's own limit (families.py); set lower to cap it
    max_job_bytes: int = 0
    # Limits for one dropped file; past max_job_* a file becomes several jobs.
    max_file_requests: int = 1_000_000
    max_file_bytes: int = 20 * GB
    max_file_jobs: int = 32  # the staged parts infra/modules/bucket's lifecycle rule names
    max_line_bytes: int = 20_000_000
    max_errors: int = 1_000
    max_event_age_s: int = 24 * 3600
    max_concurrent_jobs: int = 8
    job_deadline_s: int = 96 * 3600
    # Vertex AI expires a batch job queued this long (its batch prediction page)
    queue_limit_s: int = 72 * 3600
    claim_lease_s: int = 600
    split_budget_s: float = 480.0  # checkpoint and continue in a new task after this long
    # a submission checkpoints and continues in a new call after this long
    submit_budget_s: float = 480.0
    retry_rounds: int = 1
    # after a failed create, wait this long for Vertex's list to show what it made
    list_settle_s: float = 60.0
    # at most one `running` message a batch this often (status.send_progress)
    progress_s: float = 300.0
    # the sweep re-sends a queued message only this long after its last try
    outbox_retry_s: float = 60.0
    # results.jsonl is ordered in buckets of this many lines (ordered.py)
    results_bucket_lines: int = 5_000
    workers: int = 32
    # a batch whose cost bound (cost.bound) is above this is rejected before any job; empty: none.
    # Object metadata max_cost sets a batch's own cap.
    max_batch_cost: str = ""
    # the project's cap a UTC day (budget.py); a batch past it waits, or with "reject" is rejected
    max_daily_cost: str = ""
    over_daily_cost: str = "wait"
    # requests of a file whose input tokens Vertex's countTokens counts before any job (0: none; the
    # rest are estimated per character, scaled by what the sample measured: admit.count_tokens)
    count_tokens_sample: int = 20
    prices: str = ""  # the price table's override (cost.py): a JSON object or a path to one
    # PROJECT.DATASET.TABLE: every ended batch's results are loaded into it (table.py)
    results_table: str = ""
    # webhooks (deliver.py): endpoints every batch's messages go to (comma-separated; object
    # metadata `webhook` adds a batch's own), the signing secret (whsec_...), loopback allowed (the
    # local stack), one POST's time, and how long a failing delivery is retried
    webhook_urls: str = ""
    webhook_secret: str = ""
    webhook_loopback: int = 0
    webhook_timeout_s: float = 10.0
    webhook_retry_s: int = 25 * 3600
    # re-drops pay only for what changed (reuse.py): "on" answers a request another batch in the
    # bucket already answered from that answer; the index keeps at most reuse_max fingerprints
    reuse: str = "off"
    reuse_max: int = 1_000_000

    @classmethod
    def from_env(cls, environ=None, **overrides) -> Config:
        environ = os.environ if environ is None else environ
        values = {}
        for field in dataclasses.fields(cls):
            raw = environ.get("DROPBATCH_" + field.name.upper())
            if raw is None:
                continue
            if isinstance(field.default, (int, float)):
                cast = type(field.default)
                try:
                    values[field.name] = cast(raw.replace("_", ""))
                except ValueError:
                    what = "a whole number" if cast is int else "a number"
                    raise UsageError(
                        f"DROPBATCH_{field.name.upper()}={raw!r} is not {what}"
                    ) from None
            else:
                values[field.name] = raw
        if "project" not in values and environ.get("GOOGLE_CLOUD_PROJECT"):
            values["project"] = environ["GOOGLE_CLOUD_PROJECT"]
        values.update(overrides)
        return cls(**values)

    @property
    def state_bucket(self) -> str:
        return self.results_bucket or self.bucket


@functools.cache
def get_config() -> Config:
    return Config.from_env()
