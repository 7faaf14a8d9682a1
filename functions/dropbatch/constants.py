"""Names used across the stages, each spelled once here: byte units, Vertex AI's job states, and the
states a batch's message and manifest end in. The ledger's own states and moves are batch.py's; the
names of a batch's objects are layout.py's.

Byte units are decimal, as Google's limits are written ("1 GB" for a batch job's input): the smaller
reading of a limit is the worst case, so 10**9, not 2**30."""

from __future__ import annotations

MB = 1_000_000
GB = 1_000_000_000

# BatchPredictionJob.state (google.cloud.aiplatform.v1.JobState)
JOB_QUEUED = "JOB_STATE_QUEUED"
JOB_PENDING = "JOB_STATE_PENDING"
JOB_RUNNING = "JOB_STATE_RUNNING"
JOB_SUCCEEDED = "JOB_STATE_SUCCEEDED"
JOB_FAILED = "JOB_STATE_FAILED"
JOB_CANCELLED = "JOB_STATE_CANCELLED"
JOB_EXPIRED = "JOB_STATE_EXPIRED"
JOB_PARTIALLY_SUCCEEDED = "JOB_STATE_PARTIALLY_SUCCEEDED"
JOB_WAITING = (JOB_QUEUED, JOB_PENDING)
JOB_TERMINAL = frozenset(
    {JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED, JOB_EXPIRED, JOB_PARTIALLY_SUCCEEDED}
)

# a batch's terminal states (its message's and manifest's `state`, DESIGN.md)
SUCCEEDED = "succeeded"
PARTIALLY_SUCCEEDED = "partially_succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
EXPIRED = "expired"
REJECTED = "rejected"
# every message state that ends a batch (a webhook receives these and `running`)
TERMINAL = (REJECTED, SUCCEEDED, PARTIALLY_SUCCEEDED, FAILED, CANCELLED, EXPIRED)
ENDED_WELL = (SUCCEEDED, PARTIALLY_SUCCEEDED)  # a command that waited for these exits 0
