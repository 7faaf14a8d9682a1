"""The sweep: GET every active job (never trusting a message), advance batches, queue split tasks.

Runs on every tick of the sweep topic (Cloud Scheduler in the cloud, the ticker locally). It also
picks up what an event never delivered: half-finished claims whose lease ran out and parts waiting
for a job slot (both handed to the submit function, which alone creates jobs), and split tasks that
never finished.
"""

from __future__ import annotations

from . import batch, logs, notify, split_outputs, vertex
from .config import Config, get_config
from .constants import JOB_FAILED, JOB_RUNNING, JOB_WAITING
from .documents import Ledger
from .errors import ConfigurationError, DropbatchError, PermanentError, TransientError
from .events import PUBSUB, age_s, now
from .store import Store, execution_id


def handle_event(event) -> None:
    if event.get("type") != PUBSUB:
        logs.info("ignored: not a Pub/Sub message", event_type=event.get("type"))
        return
    token = logs.bind(execution_id=execution_id(), event_id=event.get("id"))
    try:
        sweep(get_config())
    finally:
        logs.reset(token)


def sweep(config: Config) -> dict:
    store = Store(config)
    seen, docs = {"batches": 0, "errors": 0}, []
    for batch_id in store.active_batches():
        seen["batches"] += 1
        token = logs.bind(batch_id=batch_id)
        try:
            doc = advance(store, batch_id)
            if doc is not None:
                docs.append(doc)
        # a missing grant: end the batch rather than retry every tick
        except ConfigurationError as exc:
            seen["errors"] += 1
            notify.fail_refused(store, batch_id, str(exc))
        # one batch's trouble must not stall the others; the next tick retries
        except DropbatchError as exc:
            seen["errors"] += 1
            logs.warning(
                f"sweep could not advance the batch: {exc}",
                transient=isinstance(exc, TransientError),
            )
        finally:
            logs.reset(token)
    seen["asked"] = ask_for_slots(store, docs)
    return seen


def ask_for_slots(store: Store, docs: list[Ledger]) -> int:
    """Ask the submit function (the one identity that creates jobs) to go on with the submitted
    batches whose parts wait for a job slot: the first queued, as many as the slots free in the
    ledgers read this tick, so that a tick costs a few submit calls, not one for every waiting batch
    (docs/contracts.md, "Job slots")."""
    free = store.config.max_concurrent_jobs - sum(map(batch.running_jobs, docs))
    asked = 0
    for doc in sorted(docs, key=batch.queue_key):
        if free <= 0:
            break
        if doc.state == batch.SUBMITTED and any(batch.part_waiting(p) for p in doc.parts):
            try:
                notify.ask_submit(store.config, doc.batch_id)
                asked += 1
            except DropbatchError as exc:  # the next tick asks again
                logs.warning(f"sweep could not ask for a job slot: {exc}", batch_id=doc.batch_id)
        free -= batch.slots_owed(doc)
    return asked


def advance(store: Store, batch_id: str) -> Ledger | None:
    """One batch's tick; returns its ledger as the tick left it while the batch is active (None once
    it ended)."""
    doc, _ = store.read_ledger(batch_id)
    if doc is None:  # marked, never claimed: the claiming execution may still be on its way
        since = store.active_since(batch_id)
        if since is None or age_s(since) > 2 * store.config.claim_lease_s:
            store.mark_inactive(batch_id)
        return None
    if doc.outbox or doc.state in batch.FINISHED:
        # a finished batch leaves the index
        doc = notify.deliver(store, batch_id, store.config.outbox_retry_s)
        if doc is None or doc.state in batch.FINISHED:
            return None
    if doc.state in batch.SUBMITTING:
        # Its event or continuation was lost, or its function died: ask the submit function to go on
        # (once a lease period, so a continuation on its way is not doubled).
        if batch.lease_expired(doc) and (
            not doc.continued or age_s(doc.continued) > store.config.claim_lease_s
        ):
            store.update_ledger(batch_id, lambda d: d.set(continued=now()))
            notify.ask_submit(store.config, batch_id)
            logs.warning(
                "submission stalled; the submit function is asked to go on",
                event="batch_stalled",
                stage="submit",
                state=doc.state,
            )
    elif doc.state == batch.SUBMITTED:
        doc = refresh_jobs(store, doc)
    elif doc.state == batch.SPLITTING:
        requeue_stale_tasks(store, doc)
    return doc


def _get_job(config, part) -> dict:
    """The job of a running part, as Vertex has it now; a job that is gone (404) or no longer
    readable (403) will not come back: it is recorded failed and lost, and what it wrote is
    split."""
    try:
        return vertex.get_job(config, part.job)
    except PermanentError as exc:
        logs.error(
            "job lost; what it wrote is split",
            job=part.job,
            part=part.index,
            error=str(exc)[:300],
        )
        return {
            "name": part.job,
            "state": JOB_FAILED,
            "completion_stats": None,
            "lost": True,
            "output_dir": part.output_dir,
            "end_time": now(),
            "error": {
                "code": 5,
                "message": f"dropbatch can no longer read the job: {str(exc)[:500]}",
            },
        }


def refresh_jobs(store: Store, doc: Ledger) -> Ledger:
    """GET the batch's running jobs and record what changed; queue split tasks (partial ones while
    jobs run, the final ones once all ended). Returns the ledger."""
    config, batch_id = store.config, doc.batch_id
    updates = {}
    for part in doc.parts:
        if batch.part_running(part):
            job = _get_job(config, part)
            if job["state"] != part.state or job["completion_stats"] != part.completion_stats:
                updates[part.index] = job
                if job["state"] != part.state:
                    logs.info("job state", job=job["name"], state=job["state"], part=part.index)
    stalled = stalled_parts(doc, updates, config.job_deadline_s)
    _warn_queued(config, doc, updates)

    def record(d):
        for index, job in updates.items():
            d.parts[index].set(
                state=job["state"],
                completion_stats=job["completion_stats"],
                output_dir=job["output_dir"],
                error=job["error"],
                ended=job["end_time"],
                lost=d.parts[index].lost or bool(job.get("lost")),
            )
        for p in stalled:
            d.parts[p.index].stalled = d.parts[p.index].stalled or now()

    if updates or stalled:
        doc = store.update_ledger(batch_id, record)
    for p in stalled:
        if not p.stalled:  # news once
            _report_stalled(config, doc, p)
    if not batch.all_ended(doc):
        queue_partial_splits(store, doc)
        send_progress(store, doc)
    if batch.all_ended(doc):
        queue_tasks(store, doc)
    return doc


def stalled_parts(doc: Ledger, updates: dict, deadline_s: float) -> list:
    """The parts whose jobs run, changed nothing in this tick (`updates`: part index -> job as
    read now) and are older than `deadline_s` (DROPBATCH_JOB_DEADLINE_S)."""
    return [
        p
        for p in doc.parts
        if batch.part_running(p) and p.index not in updates and age_s(p.created) > deadline_s
    ]


def queued_too_long(doc: Ledger, updates: dict, limit_s: float) -> list:
    """(part, state) of the jobs still queued or pending, as read now, past `limit_s` from their
    creation (DROPBATCH_QUEUE_LIMIT_S: Vertex's queue limit)."""
    states = ((p, updates[p.index]["state"] if p.index in updates else p.state) for p in doc.parts)
    return [
        (p, state) for p, state in states if state in JOB_WAITING and age_s(p.created) > limit_s
    ]


def _warn_queued(config, doc: Ledger, updates: dict) -> None:
    """Log the jobs still queued past Vertex's queue limit (infra/monitoring.tf counts them)."""
    for p, state in queued_too_long(doc, updates, config.queue_limit_s):
        logs.warning(
            "job queued past Vertex's queue limit",
            event="job_no_progress",
            job=p.job,
            state=state,
            part=p.index,
            queued_s=round(age_s(p.created)),
        )


def _report_stalled(config, doc: Ledger, part) -> None:
    """A job stuck past DROPBATCH_JOB_DEADLINE_S: logged as a stalled batch and told once."""
    logs.error(
        "job stuck past its deadline",
        event="batch_stalled",
        stage="job",
        job=part.job,
        state=part.state,
        deadline_s=config.job_deadline_s,
    )
    notify.send_once(
        config,
        notify.build(
            "stalled",
            batch_id=doc.batch_id,
            source=doc.source,
            counts={"total": doc.requests},
            error=f"job {part.job} is still {part.state} after {config.job_deadline_s} s",
        ),
    )


def queue_partial_splits(store: Store, doc: Ledger) -> None:
    """While a job runs, Vertex writes its finished rows to the output directory (Google's batch
    prediction pages): when a running part's output files changed (a new file, or a new generation
    of one), a `partial` split task splits what is there, so results/KEY.json appear long before the
    job ends. A part with reused lines gets its first one before any file, so the earlier answers
    are copied while the job runs, not after it (reuse.py). One in flight a part (re-sent after 2
    split budgets and a minute, like a lost split task); the split function clears
    `partial_queued`."""
    for p in doc.parts:
        if p.state != JOB_RUNNING or not p.output_dir or p.split == "done":
            continue
        if p.partial_queued and age_s(p.partial_queued) < 2 * store.config.split_budget_s + 60:
            continue
        seen = [[b.name, b.generation] for b in split_outputs.output_files(store, doc, p)]
        first = p.reused and p.partial_seen is None
        if not (seen or first) or seen == p.partial_seen:
            continue
        notify.send_split_task(store.config, notify.split_task(doc, p, partial=True))
        store.update_ledger(
            doc.batch_id,
            lambda d, i=p.index: d.parts[i].set(partial_queued=now(), partial_seen=seen),
        )
        logs.info("partial split queued", part=p.index, files=len(seen))


# a running message lists at most this many jobs' stats (it stays under 16 KB)
MAX_PROGRESS_JOBS = 40


def send_progress(store: Store, doc: Ledger) -> None:
    """A `running` message with the round's results so far (split while the jobs run: succeeded,
    failed, pending, of total) and each job's own completion stats, when they moved since the last
    one and at most one per DROPBATCH_PROGRESS_S. Decided in the ledger (`progress_sent`), so
    overlapping sweeps send it once; a publish that fails is not repeated (the next change sends a
    newer one)."""
    parts = [p for p in doc.parts if p.round == doc.round]
    total = sum(p.requests + p.reused for p in parts)
    got = split_outputs.arrived(store, doc)
    counts = {
        "total": total,
        **got,
        "pending": max(0, total - got["succeeded"] - got["failed"]),
        "round": doc.round,
    }

    def record(d):
        last = d.progress_sent or {}
        if last.get("counts") == counts or (last and age_s(last["at"]) < store.config.progress_s):
            return False
        d.progress_sent = {"at": now(), "counts": counts}
        return True

    if (doc.progress_sent or {}).get("counts") == counts:
        return
    if store.win_ledger(doc.batch_id, record)[1]:
        jobs = [
            {
                "name": p.job,
                "part": p.index,
                "state": p.state,
                "completion_stats": p.completion_stats,
            }
            for p in parts
            if p.job
        ][:MAX_PROGRESS_JOBS]
        notify.send_once(store.config, notify.running(store, doc, counts, jobs))


# ---------------------------------------------------------------- split tasks


def queue_tasks(store: Store, doc: Ledger) -> None:
    for part in doc.parts:
        if part.split != "done":
            notify.send_split_task(store.config, notify.split_task(doc, part))
    store.update_ledger(
        doc.batch_id,
        lambda d: (
            batch.move(d, batch.SPLITTING, split_queued=now())
            if d.state == batch.SUBMITTED
            else False
        ),
    )
    logs.info("split tasks queued", parts=len(doc.parts))


def requeue_stale_tasks(store: Store, doc: Ledger) -> None:
    """The sweep's safety net: re-send split tasks that never finished, or the finishing task of a
    batch whose finisher died. The split function does the work; the sweep stays small."""
    if all(p.split == "done" for p in doc.parts):
        if age_s(doc.finalize_queued or doc.split_queued) > batch.FINISH_AFTER_S:
            notify.send_split_task(
                store.config, notify.split_task(doc, doc.parts[-1], finalize=True)
            )
            store.update_ledger(doc.batch_id, lambda d: d.set(finalize_queued=now()))
            logs.warning(
                "finishing task re-sent: every part is split but the batch did not finish",
                event="batch_stalled",
                stage="finish",
            )
        return
    queued = doc.split_queued
    if queued and age_s(queued) > 2 * store.config.split_budget_s + 60:
        for part in doc.parts:
            if part.split != "done":
                notify.send_split_task(store.config, notify.split_task(doc, part))
        store.update_ledger(doc.batch_id, lambda d: d.set(split_queued=now()))
        logs.warning(
            "split tasks re-sent: they did not finish in time", event="batch_stalled", stage="split"
        )
