"""The Vertex emulator's faults: what a test or `--faults` sets, and the failed-line status
shapes it writes."""

from __future__ import annotations

import dataclasses
import hashlib

import orjson

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@dataclasses.dataclass
class Faults:
    queued_s: float = 0.2
    pending_s: float = 0.2
    running_s: float = 0.2
    fail_rate: float = 0.0  # share of requests answered with an error status
    fail_code: int = 500  # the error those requests get (500 INTERNAL, 429 RESOURCE_EXHAUSTED, ...)
    job_outcome: str = ""  # "", FAILED, EXPIRED, CANCELLED, PARTIALLY_SUCCEEDED
    # HTTP codes for the next creates (0: none)
    create_errors: list = dataclasses.field(default_factory=list)
    duplicate_rate: float = 0.0  # share of requests written twice (Vertex has been seen doing it)
    drop_rate: float = 0.0  # share of requests with no output line at all
    lines_per_file: int = 5000
    # no output until running_s is over (or this is lifted): a job writes its completed rows as it
    # goes (the batch-prediction-resume page), and one slow to complete any writes nothing for long
    output_at_end: bool = False
    seed: int = 7
    # per project; more jobs wait in QUEUED or PENDING (batch quotas page), never a 429
    max_running: int = 8
    cancel_s: float = 0.2  # how long a job stays CANCELLING
    # chance that a cancel ends CANCELLED; otherwise the job still SUCCEEDS
    cancel_wins: float = 1.0
    # share of output a FAILED, EXPIRED or CANCELLED job has written when it ends
    partial_share: float = 0.5
    list_lag_s: float = 0.0  # a new job is invisible to list for this long
    # the Vertex service agent may not read the input: the job FAILS (code 7)
    input_forbidden: bool = False
    # the next creates make their job, then answer 503 (a response lost on the way)
    create_lost: int = 0
    # share of answers ending MAX_TOKENS, SAFETY or RECITATION with no text
    empty_finish_rate: float = 0.0
    thinking: bool = False  # answers carry a thought part and thoughtsTokenCount

    def update(self, values: dict) -> None:
        for k, v in values.items():
            if not hasattr(self, k):
                raise ValueError(f"unknown fault {k!r}")
            setattr(self, k, v)


def _share(seed: int, what: str, label: str, rate: float) -> bool:
    """A deterministic coin: the same request gets the same fate in every run."""
    if rate <= 0:
        return False
    digest = hashlib.sha256(f"{seed}:{what}:{label}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < rate


def _status_text(code: int, message: str, shape: int = 0) -> str:
    """A failed line's `status`, in the shapes users report (tests/data/vertex-output-lines.jsonl
    says where)."""
    name = _STATUS_NAMES.get(code, "UNKNOWN")
    body = {"error": {"code": code, "message": message, "status": name}}
    kind = {
        400: "Bad Request",
        429: "Too Many Requests",
        500: "Internal Server Error",
        503: "Service Unavailable",
    }.get(code, "Error")
    if code == 400 or shape % 4 == 0:
        return f"{kind}: " + orjson.dumps(body).decode()
    if shape % 4 == 1:
        return f"{name} error occurred: " + orjson.dumps(body).decode()
    if shape % 4 == 2:
        return orjson.dumps(body["error"]).decode()
    return "Internal error occurred." if code == 500 else f"{name}: {message}"


OUTCOME_ERRORS = {
    "FAILED": {"code": 13, "message": "Emulated job outcome FAILED."},
    "EXPIRED": {
        "code": 4,
        "message": "Batch prediction job expired: it did not finish within 24 hours.",
    },
    "CANCELLED": {"code": 1, "message": "CANCELED"},
}


def input_forbidden(uri: str) -> dict:
    """The error of a job whose service agent may not read its input (Vertex's own words)."""
    sa = "service-PROJECT_NUMBER@gcp-sa-aiplatform.iam.gserviceaccount.com"
    return {
        "code": 7,
        "message": (
            f"Failed to read {uri}: {sa} does not have storage.objects.get access "
            f"to the Google Cloud "
            "Storage object. Permission 'storage.objects.get' denied on resource (or "
            "it may not exist)."
        ),
    }
