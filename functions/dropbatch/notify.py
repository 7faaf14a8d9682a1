"""The completion messages (schema dropbatch.batch.v1): one builder, one publisher, and the ledger's
outbox.

A message is queued in the ledger in the same write that moves the batch (so it is decided once),
then published. A publish that fails stays queued: the same execution or the next sweep tries again,
at most MAX_PUBLISH_ATTEMPTS times, then the message is given up with an ERROR log and the batch
still ends (a deleted topic or a missing permission must not keep a batch, or its file, in a retry
loop). Messages carry ids, counts, codes, line numbers and schema field paths, never user text, and
stay under MAX_MESSAGE_BYTES.
"""

from __future__ import annotations

import functools

import orjson

from . import batch, layout, logs
from .config import Config
from .documents import Ledger, Part, ResumeTask, RetryTask, SplitTask, plain
from .errors import ConfigurationError, TransientError, denied
from .events import age_s, now

SCHEMA = "dropbatch.batch.v1"
STATES = (
    "rejected",
    "submitted",
    "running",
    "stalled",
    "succeeded",
    "partially_succeeded",
    "failed",
    "cancelled",
    "expired",
)
MAX_MESSAGE_BYTES = 16_000
MAX_ERROR_CHARS = 2_000
MAX_PUBLISH_ATTEMPTS = 5


@functools.cache
def publisher():
    from google.cloud import pubsub_v1

    return pubsub_v1.PublisherClient()


def build(
    state: str,
    *,
    batch_id: str,
    source: str,
    counts: dict | None = None,
    manifest: str | None = None,
    results_prefix: str | None = None,
    results_file: str | None = None,
    report: str | None = None,
    error: str | None = None,
    cost: dict | None = None,
    jobs: list | None = None,
    results_table: str | None = None,
    waiting: dict | None = None,
) -> dict:
    if state not in STATES:
        raise ValueError(f"unknown batch state {state!r}")
    if error and len(error) > MAX_ERROR_CHARS:
        error = error[:MAX_ERROR_CHARS] + f"... ({len(error):,} chars, clipped)"
    message = {
        "schema": SCHEMA,
        "batch_id": batch_id,
        "state": state,
        "source": source,
        "counts": counts,
        "manifest": manifest,
        "results_prefix": results_prefix,
        "results_file": results_file,
        "report": report,
        "error": error,
    }
    if cost is not None:  # terminal messages of batches that ran (docs/contracts.md, Cost)
        message["cost"] = cost
    # terminal messages, with DROPBATCH_RESULTS_TABLE set (docs/contracts.md, Results table)
    if results_table:
        message["results_table"] = results_table
    if jobs is not None:  # `running` messages: each job's own completion stats
        message["jobs"] = jobs
    if waiting is not None:  # a `running` batch whose first job waits for the day's budget
        message["waiting"] = waiting
    if len(orjson.dumps(message)) > MAX_MESSAGE_BYTES:  # only a pathological source name gets here
        message["source"] = source[:1000]
    return message


def running(store, doc: Ledger, counts: dict, jobs: list) -> dict:
    """A `running` message: the round's results so far, each job's stats, and what its first job
    waits for (the ledger's `waiting`), if anything."""
    return build(
        "running",
        batch_id=doc.batch_id,
        source=doc.source,
        counts=counts,
        jobs=jobs,
        results_prefix=store.uri(store.path(doc.batch_id, layout.RESULTS)),
        waiting=doc.waiting,
    )


def publish_json(config: Config, topic: str, body, **attributes) -> None:
    from google.api_core import exceptions

    client = publisher()
    path = client.topic_path(config.project, topic)
    try:
        client.publish(
            path, orjson.dumps(body, default=plain), **{k: str(v) for k, v in attributes.items()}
        ).result(timeout=60)
    except exceptions.PermissionDenied as exc:
        raise denied("Pub/Sub", exc) from exc
    # the publish future raises api_core errors and timeouts alike: retry the step
    except Exception as exc:
        raise TransientError(f"publishing to {topic} failed: {str(exc)[:300]}") from exc


def send(config: Config, message: dict) -> None:
    publish_json(
        config,
        config.notifications_topic,
        message,
        batch_id=message["batch_id"],
        state=message["state"],
    )
    logs.info(
        f"batch {message['state']}",
        batch_id=message["batch_id"],
        state=message["state"],
        counts=message["counts"],
    )


def send_once(config: Config, message: dict) -> bool:
    """Publish a message that is news only now (`running`, `stalled`): not queued, not repeated. A
    publish that fails, a refused one too, is logged as undelivered and never fails the batch."""
    try:
        send(config, message)
        return True
    except (TransientError, ConfigurationError) as exc:
        logs.error(
            "message not published",
            event="notification_undelivered",
            state=message["state"],
            error=str(exc)[:600],
        )
        return False


# ---------------------------------------------------------------- the outbox


def queue(doc: Ledger, message: dict) -> None:
    """Queue a message in a ledger (call inside the ledger write that decides it)."""
    doc.outbox.append({"message": message, "tried": now()})


def deliver(store, batch_id: str, retry_after_s: float = 0.0) -> Ledger | None:
    """Publish the batch's queued messages in order; a finished batch with nothing left leaves the
    active index. The sweep passes `retry_after_s` (DROPBATCH_OUTBOX_RETRY_S) so that it never races
    the execution that queued a message and is sending it right now (that would send it twice)."""
    doc, _ = store.read_ledger(batch_id)
    while doc and doc.outbox:
        entry = doc.outbox[0]
        message = entry["message"]
        if age_s(entry["tried"]) < retry_after_s:
            return doc
        try:
            send(store.config, message)
            problem = None
        # either way bounded by MAX_PUBLISH_ATTEMPTS
        except (TransientError, ConfigurationError) as exc:
            problem = str(exc)
        gave_up = []

        def record(d):
            if not d.outbox or d.outbox[0]["message"] != message:
                return False  # another execution delivered it meanwhile
            if problem is None:
                d.outbox.pop(0)
                d.outbox_attempts = 0
                return None
            d.outbox[0]["tried"] = now()
            d.outbox_attempts += 1
            if d.outbox_attempts >= MAX_PUBLISH_ATTEMPTS:
                d.outbox.pop(0)
                d.outbox_attempts = 0
                d.undelivered.append({"state": message["state"], "error": problem, "at": now()})
                gave_up.append(True)
            return None

        doc = store.update_ledger(batch_id, record)
        if problem is not None:
            if not gave_up:
                logs.warning(
                    "message not published; it stays queued",
                    state=message["state"],
                    error=problem,
                    attempts=doc and doc.outbox_attempts,
                )
                break
            logs.error(
                "message given up",
                event="notification_undelivered",
                state=message["state"],
                error=problem,
                attempts=MAX_PUBLISH_ATTEMPTS,
            )
    if doc and doc.state in batch.FINISHED and not doc.outbox:
        store.mark_inactive(batch_id)
    return doc


def end_batch(store, batch_id: str, to: str, message: dict, **fields) -> Ledger | None:
    """Move a batch to a finished state with its last message queued, then deliver it. Once only:
    the call that moved it logs `batch_ended` (infra/monitoring.tf counts it) and returns the
    ledger; the others return None."""

    def mutate(d):
        if d.state in batch.FINISHED:
            return False
        batch.move(
            d,
            to,
            notified={**d.notified, "terminal": now()},
            owner=None,
            lease_until=None,
            **fields,
        )
        queue(d, message)
        return True

    d, moved = store.win_ledger(batch_id, mutate)
    if moved:
        logs.info(
            "batch ended",
            event="batch_ended",
            state=message["state"],
            requests=d.requests or 0,
            latency_s=round(age_s(d.created), 3),
            model=d.model,
            rounds=d.round + 1,
            cost_usd=(message.get("cost") or {}).get("estimated"),
        )
    # only the call that queued the message sends it at once (jobs.submit_parts says why)
    return deliver(store, batch_id, 0.0 if moved else store.config.outbox_retry_s)


def fail_batch(store, doc: Ledger, reason: str) -> Ledger | None:
    """End a batch that cannot go on: the `failed` message queued and sent, off the active index."""
    logs.error(f"batch failed: {reason[:500]}")
    message = build(
        "failed",
        batch_id=doc.batch_id,
        source=doc.source,
        counts={"total": doc.requests},
        error=reason,
        report=store.uri(store.path(doc.batch_id, layout.REPORT)),
    )
    return end_batch(store, doc.batch_id, batch.FAILED, message, error=reason[:2000])


def fail_refused(store, batch_id: str, reason: str, doc: Ledger | None = None) -> None:
    """End a batch after a 403 on dropbatch's own call (errors.ConfigurationError): `failed`, the
    message naming the permission. When the deployment refuses even the ledger write that ends the
    batch, the message is sent without it (the user hears why either way); when it refuses that too,
    the reason is logged."""
    try:
        doc = doc or store.read_ledger(batch_id)[0]
        if doc is not None:
            fail_batch(store, doc, reason)
            return
    except ConfigurationError as exc:
        logs.error("the batch's end could not be recorded", error=str(exc)[:600])
    try:
        send(
            store.config,
            build("failed", batch_id=batch_id, source=doc.source if doc else "", error=reason),
        )
    except (ConfigurationError, TransientError) as exc:
        logs.error(
            "the failed message could not be sent", error=str(exc)[:600], reason=reason[:600]
        )


def ask_submit(config: Config, batch_id: str) -> None:
    """A task for the submit function, the one identity that creates Vertex jobs: go on with a batch
    (a submission that checkpointed or died, a staged retry round, parts waiting for a job slot). On
    the uploads topic: data {"batch_id"}, attribute dropbatch_continue=BATCH_ID (docs/contracts.md).
    """
    publish_json(config, config.uploads_topic, {"batch_id": batch_id}, dropbatch_continue=batch_id)


def split_task(doc: Ledger, part: Part, **extra) -> SplitTask:
    """A split task (docs/contracts.md): what the split function needs, nothing it must trust
    blindly."""
    return SplitTask(
        batch_id=doc.batch_id,
        part=part.index,
        round=part.round,
        job=part.job,
        continuation=False,
        **extra,
    )


def send_split_task(config: Config, task: SplitTask | RetryTask | ResumeTask) -> None:
    """A task for the split function (a part's split, a retry round, a resume)."""
    publish_json(config, config.split_topic, task, batch_id=task.batch_id)
