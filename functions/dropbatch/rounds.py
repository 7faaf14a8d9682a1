"""The split function's tasks, routed to their stages: a part's split (split.py), then, when every
part is split, the end of the batch (finish.py); a `retry` task stages the next round (retry.py).
The stages never import each other (import-linter); the sweep (sweep.py) queues the split tasks and
re-sends those that did not finish.
"""

from __future__ import annotations

import msgspec
from google.api_core.exceptions import Forbidden

from . import batch, finish, logs, notify, retry, split
from .config import get_config
from .constants import JOB_RUNNING, JOB_TERMINAL
from .documents import ResumeTask, RetryTask, SplitTask, task_of
from .errors import ConfigurationError, PermanentError, TransientError, denied
from .events import PUBSUB, pubsub_json
from .keys import is_batch_id
from .store import Store, execution_id


def handle_event(event) -> None:
    if event.get("type") != PUBSUB:
        logs.info("ignored: not a Pub/Sub message", event_type=event.get("type"))
        return
    try:
        task = task_of(pubsub_json(event)[0])
    except PermanentError as exc:
        logs.error(f"ignored: {exc}")
        return
    except msgspec.ValidationError as exc:
        logs.warning("ignored: not a split task", error=str(exc)[:200])
        return
    if not is_batch_id(task.batch_id):
        logs.warning("ignored: not a split task")
        return
    token = logs.bind(batch_id=task.batch_id, execution_id=execution_id(), event_id=event.get("id"))
    store = Store(get_config())
    try:
        run_task(store, task)
    except ConfigurationError as exc:  # a missing grant: retrying cannot help
        notify.fail_refused(store, task.batch_id, str(exc))
    # the same, from a call made outside ledger's error mapping (result writes)
    except Forbidden as exc:
        notify.fail_refused(store, task.batch_id, str(denied("Cloud Storage", exc)))
    finally:
        logs.reset(token)


def route(doc, task: SplitTask) -> str:
    """What a split task does to the batch's ledger as it is (pure): "split" the part, "partial"
    (split what a running job wrote so far), "skip_partial" (its job is no longer running, or the
    part is split), "wait" (the task overtook the sweep's ledger write: raise to be redelivered), or
    "ignore: why"."""
    if doc is None or doc.state not in (batch.SUBMITTED, batch.SPLITTING):
        return "ignore: the batch is not splitting"
    if task.part >= len(doc.parts):
        return "ignore: no such part"
    part = doc.parts[task.part]
    if part.round != task.round:
        return "ignore: an older round"
    if task.partial:  # what a running job has written so far; its end is the final task's
        return "partial" if part.state == JOB_RUNNING and part.split != "done" else "skip_partial"
    return "split" if part.state in JOB_TERMINAL else "wait"


def run_task(store: Store, task: SplitTask | RetryTask | ResumeTask) -> None:
    batch_id = task.batch_id
    if isinstance(task, RetryTask):
        retry.start_round(store, batch_id, task.retry)
        return
    if isinstance(task, ResumeTask):
        retry.resume(store, batch_id, task.resume_round)
        return
    doc, _ = store.read_ledger(batch_id)
    action = route(doc, task)
    if action.startswith("ignore: "):
        log = logs.warning if action == "ignore: no such part" else logs.info
        log(
            f"split task ignored: {action[len('ignore: ') :]}",
            state=doc and doc.state,
            part=task.part,
        )
        return
    part = doc.parts[task.part]
    if action in ("partial", "skip_partial"):
        if action == "partial":
            split.split_part(store, doc, part, task)
        store.update_ledger(
            batch_id,
            lambda d: (
                d.parts[part.index].set(partial_queued=None)
                if d.parts[part.index].partial_queued
                else False
            ),
        )
        return
    if action == "wait":
        raise TransientError(f"part {part.index} is still {part.state} in the ledger")
    if not split.split_part(store, doc, part, task):
        return  # checkpointed: a new task continues
    doc = store.update_ledger(
        batch_id,
        lambda d: (
            d.parts[part.index].set(split="done") if d.parts[part.index].split != "done" else False
        ),
    )
    if all(p.split == "done" for p in doc.parts):
        finish.finalize(
            store, batch_id, force_after_s=batch.FINISH_AFTER_S if task.finalize else None
        )
