"""Creating a batch's jobs from its staged parts, within the cap on concurrent jobs
(docs/contracts.md, "Job slots"): a part is claimed before its job is created, so no part gets
two."""

from __future__ import annotations

import functools

from . import batch, budget, layout, logs, notify, vertex
from .constants import JOB_CANCELLED, JOB_FAILED, JOB_SUCCEEDED
from .documents import Ledger
from .errors import PermanentError
from .events import age_s, now
from .store import Store, execution_id


def submit_parts(store: Store, batch_id: str) -> Ledger | None:
    """Create the jobs of the parts that have none, within the cap on concurrent jobs: the slots
    other batches hold or come first for are not this batch's (docs/contracts.md, "Job slots")."""
    config = store.config
    doc, _ = store.read_ledger(batch_id)
    # with over_daily_cost=reject the submission's check (admit.check_daily) already decided
    waiting = budget.over(store, doc) if budget.waits(config) else None
    mine = config.max_concurrent_jobs - batch.running_jobs(doc)
    room = 0 if waiting else mine - slots_taken(store, doc, enough=mine)
    for part in doc.parts:
        if not batch.part_waiting(part):
            continue
        if batch.wholly_reused(part):
            doc = store.update_ledger(
                batch_id,
                lambda d, i=part.index: (
                    batch.part_waiting(d.parts[i])
                    and d.parts[i].set(state=JOB_SUCCEEDED, ended=now())
                ),
            )
            continue
        if doc.cancel_requested:  # never started: nothing to cancel at Vertex
            doc = store.update_ledger(
                batch_id, lambda d, i=part.index: d.parts[i].set(state=JOB_CANCELLED)
            )
            continue
        if room <= 0:
            continue
        if not claim_part(store, batch_id, part.index):
            continue  # another execution (an overlapping sweep, a redelivery) is creating this job
        doc, created = _create(store, doc, part)
        if created is None:
            return doc  # the batch failed: its first job was refused
        room -= created

    doc, moved = store.win_ledger(batch_id, functools.partial(_submitted, store))
    if moved:  # this call moved the batch (a retry round too): submit latency, from the claim
        logs.info(
            "batch submitted",
            event="batch_submitted",
            round=doc.round,
            jobs=len(doc.parts),
            requests=doc.requests or 0,
            latency_s=round(age_s(doc.created), 3),
            model=doc.model,
        )
    if doc.outbox:
        # the message is this call's to send at once only if this call queued it (moved): another
        # execution's may be on its way right now (two senders would publish it twice)
        doc = notify.deliver(store, batch_id, 0.0 if moved else store.config.outbox_retry_s)
    return note_waiting(store, doc, waiting) if doc is not None else None


def note_waiting(store: Store, doc: Ledger, waiting: dict | None) -> Ledger:
    """Record in the ledger that the batch's first job waits for the day's budget, with a
    `running` message that says so (once: the ledger decides), or that it waits no longer."""
    if (doc.waiting is None) == (waiting is None):
        return doc
    doc, first = store.win_ledger(
        doc.batch_id, lambda d: (d.waiting is None) != (waiting is None) and d.set(waiting=waiting)
    )
    if first and waiting:
        logs.info("the batch waits for the day's budget", event="batch_waiting", **waiting)
        total = doc.requests
        counts = {"total": total, "succeeded": 0, "failed": 0, "pending": total, "round": doc.round}
        notify.send_once(store.config, notify.running(store, doc, counts, []))
    return doc


def _create(store: Store, doc: Ledger, part) -> tuple[Ledger | None, int | None]:
    """Create the job of a claimed part: (ledger, 1) when it was created, (ledger, 0) when Vertex
    refused it and other jobs of the batch exist (this part ends failed, its requests listed as
    missing and not retried, and the batch ends `failed` with what the others got: those jobs run
    and are paid for), (ledger of the failed batch, None) when the batch has no other job."""
    batch_id, config = doc.batch_id, store.config
    try:
        job = vertex.create_job(
            config,
            batch_id=batch_id,
            part=part.index,
            round_=part.round,
            input_uri=part.input,
            model=doc.model,
            output_prefix=store.uri(store.path(batch_id, layout.output(part))),
        )
    except PermanentError as exc:
        if not any(p.job for p in doc.parts):
            return notify.fail_batch(store, doc, f"Vertex AI refused the job: {exc}"), None
        logs.error(
            "job refused; the batch's other jobs go on", part=part.index, error=str(exc)[:500]
        )
        doc = store.update_ledger(
            batch_id,
            lambda d, i=part.index, e=str(exc)[:1000]: d.parts[i].set(
                state=JOB_FAILED, refused=True, creating=None, error={"code": 3, "message": e}
            ),
        )
        return doc, 0
    # the next try looks for it by label first, once Vertex's list has settled
    except BaseException:
        store.update_ledger(batch_id, lambda d, i=part.index: batch.create_failed(d.parts[i]))
        raise
    logs.info("job created", job=job["name"], part=part.index)

    def record(d, index=part.index, job=job):
        d.parts[index].set(
            job=job["name"], state=job["state"], created=job["create_time"], creating=None
        )

    return store.update_ledger(batch_id, record), 1


def _submitted(store: Store, d: Ledger) -> bool:
    """The ledger move of a batch whose parts all have jobs, with its `submitted` message queued the
    first time (the first round's only: retry rounds are not news)."""
    batch_id = d.batch_id
    if d.state != batch.STAGED:
        return False
    batch.move(d, batch.SUBMITTED, owner=None, lease_until=None)
    if not d.notified.get("submitted"):
        d.notified["submitted"] = now()
        notify.queue(
            d,
            notify.build(
                "submitted",
                batch_id=batch_id,
                source=d.source,
                counts={"total": d.requests},
                report=store.uri(store.path(batch_id, layout.REPORT)),
                results_prefix=store.uri(store.path(batch_id, layout.RESULTS)),
            ),
        )
    return True


def claim_part(store: Store, batch_id: str, index: int) -> bool:
    """Win the right to create one part's job, so overlapping sweeps and redeliveries never create
    two."""
    me, settle = execution_id(), store.config.list_settle_s
    return store.win_ledger(batch_id, lambda d: batch.claim_part(d.parts[index], me, settle))[1]


def slots_taken(store: Store, doc: Ledger, enough: int) -> int:
    """The job slots the other active batches hold or come first for: one read of each active
    ledger, until `enough` are found taken (a batch dropped while many wait reads a few ledgers, not
    all)."""
    taken = 0
    for other_id in store.active_batches():
        if taken >= enough:
            break
        if other_id != doc.batch_id:
            other, _ = store.read_ledger(other_id)
            taken += batch.slots_ahead(doc, other) if other else 0
    return taken
