"""The documents the stages hand each other, as typed values: a batch's ledger and its parts
(batches/BATCH_ID/ledger.json), the tasks on the split topic, and a part's split outcome
(split/NAME.done.json).

batch.py's moves take and return them; store.Store reads them with their type and writes them as
JSON (the shapes docs/contracts.md gives). A field a newer release added and an older one does not
know is ignored on reading; a field nobody declared cannot be set (a typo is an AttributeError, not
a silent new key).
"""

from __future__ import annotations

import msgspec


class Document(msgspec.Struct, kw_only=True):
    def set(self, **fields):
        """Set fields in place (only declared ones) and return the document."""
        for name, value in fields.items():
            setattr(self, name, value)
        return self


class Part(Document):
    """One job's share of a batch in one round: its lines, its staged input, and what the sweep last
    saw of its job."""

    index: int
    round: int
    first_line: int
    last_line: int
    requests: int  # the requests its job is sent
    input: str | None
    # the requests of its lines answered from earlier batches instead (reuse.py): not sent
    reused: int = 0
    job: str | None = None  # the BatchPredictionJob's resource name, once created
    state: str | None = None  # the job's JobState, from the sweep's last GET
    output_dir: str | None = None
    completion_stats: dict | None = None
    # the job's google.rpc.Status, or dropbatch's own for a refused or lost job
    error: dict | None = None
    created: str | None = None
    ended: str | None = None
    split: str | None = None  # "done" once its results are written
    creating: dict | None = None  # the claim on creating its job: {"by", "at"[, "failed"]}
    refused: bool = False  # Vertex refused the job for good
    lost: bool = False  # the job can no longer be read
    stalled: str | None = None  # when it was found stuck past the job deadline
    partial_queued: str | None = None  # a partial split task in flight (while the job runs)
    # [name, generation] of the output files that task was sent for
    partial_seen: list | None = None


class Ledger(Document):
    """A batch: its state (batch.MOVES), its source, its parts over every round, and its messages'
    outbox."""

    batch_id: str
    state: str
    source: str  # gs://BUCKET/NAME of the dropped file
    object: str
    generation: int
    created: str
    updated: str
    owner: str | None = None  # the execution holding the submission lease
    lease_until: str | None = None
    claims: int = 1  # executions that took the submission
    model: str | None = None
    requests: int | None = None
    lines: int | None = None
    parts: list[Part] = []
    round: int = 0
    notified: dict[str, str] = {}  # message state -> when it was decided
    error: str | None = None
    writer: str | None = None  # the last write's own mark (store.Store.update_ledger)
    progress: dict | None = None  # a checkpointed submission: {"line", "bytes", "continuations"}
    continued: str | None = None  # when a continuation was last asked for
    cancel_requested: bool = False
    outbox: list[dict] = []  # queued messages: {"message", "tried"}
    outbox_attempts: int = 0
    undelivered: list[dict] = []  # messages given up: {"state", "error", "at"}
    split_queued: str | None = None
    webhook: str | None = None  # the batch's own endpoint (object metadata `webhook`, deliver.py)
    cost_bound: float | None = None  # the most it can cost (cost.bound), for the daily cap
    waiting: dict | None = None  # its first job waits for the day's budget (budget.over)
    finalize_queued: str | None = None
    progress_sent: dict | None = None  # the last `running` message: {"at", "counts"}
    final_state: str | None = None
    counts: dict | None = None
    usage: dict | None = None
    cost: dict | None = None
    manifest_generation: int = 0  # a resumed batch's manifest, to be replaced
    resumed: list[dict] = []  # {"round", "at", "requests", "after"} per resume


class SplitTask(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Split one part (docs/contracts.md, Split tasks): only the batch, part and round are
    trusted."""

    batch_id: str
    part: int
    round: int
    job: str | None
    # a continuation of a checkpointed task (always sent, as "resume": the contract's shape)
    continuation: bool = msgspec.field(name="resume")
    partial: bool = False
    finalize: bool = False

    def __post_init__(self):
        if self.part < 0 or self.round < 0:
            raise ValueError("part and round are counted from 0")


class RetryTask(msgspec.Struct, kw_only=True):
    """Stage round `retry` from the last round's retryable errors."""

    batch_id: str
    retry: int


class ResumeTask(msgspec.Struct, kw_only=True):
    """Reopen a finished batch for round `resume_round` (`dropbatch resume`)."""

    batch_id: str
    resume_round: int


def task_of(data) -> SplitTask | RetryTask | ResumeTask:
    """The task a split-topic message holds; msgspec.ValidationError when it is none."""
    if not isinstance(data, dict):
        raise msgspec.ValidationError("a task is a JSON object")
    kind = RetryTask if "retry" in data else ResumeTask if "resume_round" in data else SplitTask
    return msgspec.convert(data, kind)


class SplitDone(msgspec.Struct, kw_only=True):
    """A part's split outcome (split/NAME.done.json): what the finishing steps add up."""

    part: int
    round: int
    job: str | None
    requests: int
    counts: dict
    usage: dict
    error_count: int
    files: list[str] = []
    seconds: float = 0.0
    buckets: list[int] = []  # the first line of each ordered bucket
    # a retry round's lines, which replace the earlier rounds' answers
    lines: list[int] | None = None
    # the token usage of the answers reused from earlier batches (not paid again; reuse.py)
    reused_usage: dict | None = None


def plain(value):
    """A document as JSON-ready builtins (for orjson's `default`)."""
    return msgspec.to_builtins(value)
