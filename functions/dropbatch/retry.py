"""Retry rounds: the requests of a batch that failed for a transient reason (or never came back),
staged again as the next round's parts, streaming and within the per-job limits; then the submit
function is asked for their jobs. Run by the split function on a `retry` task (rounds.py routes it
here), which the finishing step sends, and on a `resume_round` task (`dropbatch resume`), which
reopens a finished batch for one more round of every request without a succeeded result: a job that
expired or was cancelled keeps what it wrote (Google's batch prediction page), so only the rest is
sent again, and one results.jsonl and one manifest still cover the whole file.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import operator
import time

import orjson

from . import batch, families, layout, logs, notify, split_outputs
from .documents import Ledger, Part
from .events import now
from .layout import REUSED, STAGED
from .store import Store, open_lines


class _PartWriter:
    """One retry part being written: its staged lines and keys sidecar, streamed to GCS."""

    def __init__(self, store: Store, doc: Ledger, index: int, round_: int):
        self.part = batch.new_part(index, round_, 0, 0, 0, None)
        self.name = store.path(doc.batch_id, layout.staged(self.part))
        self.part.input = store.uri(self.name + ".jsonl")
        self.bytes = 0
        self.data = store.bucket.blob(self.name + ".jsonl").open(
            "wb", chunk_size=8 << 20, content_type="application/jsonl"
        )
        self.keys = store.bucket.blob(self.name + ".keys.jsonl").open(
            "wb", chunk_size=8 << 20, content_type="application/jsonl"
        )

    def fits(self, size: int, limits: tuple[int, int]) -> bool:
        return not self.part.requests or (
            self.part.requests < limits[0] and self.bytes + size <= limits[1]
        )

    def add(self, line: int, key: str, raw: bytes, fp: str | None) -> None:
        """`fp`: the request's reuse fingerprint when the first round had one, so that the split
        indexes a retried answer as it does a first-round one (reuse.py)."""
        self.data.write(raw)
        self.keys.write(orjson.dumps([line, key, len(raw), *([fp] if fp else [])]) + b"\n")
        self.part.first_line = self.part.first_line or line
        self.part.last_line = line
        self.part.requests += 1
        self.bytes += len(raw)

    def close(self) -> Part:
        self.data.close()
        self.keys.close()
        return self.part


def _staged_lines(files: contextlib.ExitStack, bucket, path: str, reused: int):
    """(line, staged request, reuse fingerprint or None) of a first-round part in line order: what
    its job was sent (the keys sidecar says each one's line) and, with `reused`, the lines answered
    from earlier batches, whose staged requests the reused sidecar keeps (reuse.py)."""
    data, keys = (files.enter_context(open_lines(bucket.blob(path + s))) for s in STAGED)
    rows = (orjson.loads(entry) for entry in keys)
    sent = ((row[0], raw, row[3] if len(row) > 3 else None) for raw, row in zip(data, rows))
    if not reused:
        return sent
    rows = map(orjson.loads, files.enter_context(open_lines(bucket.blob(path + REUSED))))
    kept = ((row[0], orjson.dumps(row[6]) + b"\n", row[5]) for row in rows)
    return heapq.merge(sent, kept, key=operator.itemgetter(0))


def stage_retry(store: Store, doc: Ledger, retry) -> list[Part]:
    """Stage the requests that failed for a transient reason (or never came back) as the next
    round's parts. `retry` gives them in line order; the staged input is read part by part alongside
    and streamed out, each new part within the per-job limits: nothing is held but the buffers."""
    round_ = doc.round + 1
    limits = families.family_of(doc.model).job_limits(store.config)
    wanted = iter(retry)
    nxt = next(wanted, None)
    parts, writer = [], None
    for original in sorted((p for p in doc.parts if p.round == 0), key=lambda p: p.first_line):
        if nxt is None:
            break
        if nxt["line"] > original.last_line:
            continue
        path = store.path(doc.batch_id, layout.staged(original))
        with contextlib.ExitStack() as files:
            # staged in line order, as the errors come
            for line, raw, fp in _staged_lines(files, store.bucket, path, original.reused):
                if nxt is None or nxt["line"] > original.last_line:
                    break
                # not in the staged input: nothing to retry
                while nxt is not None and nxt["line"] < line:
                    nxt = next(wanted, None)
                if nxt is None or nxt["line"] != line:
                    continue
                raw = raw if raw.endswith(b"\n") else raw + b"\n"
                if writer is not None and not writer.fits(len(raw), limits):
                    parts.append(writer.close())
                    writer = None
                if writer is None:
                    writer = _PartWriter(store, doc, len(doc.parts) + len(parts), round_)
                writer.add(line, nxt["key"], raw, fp)
                nxt = next(wanted, None)
    if writer is not None:
        parts.append(writer.close())
    return parts


def start_round(store: Store, batch_id: str, round_: int) -> None:
    """Stage round `round_` of a batch (a `retry` task) and ask the submit function to create its
    jobs (only its account may create jobs, infra/iam.tf). A task for a round already staged, or a
    batch no longer splitting, does nothing."""
    doc, _ = store.read_ledger(batch_id)
    if (
        doc is None
        or doc.round != round_ - 1
        or doc.state not in (batch.SUBMITTED, batch.SPLITTING)
    ):
        logs.info(
            "retry task ignored: the round is staged or the batch moved on",
            round=round_,
            state=doc and doc.state,
        )
        return
    started = time.monotonic()
    dones = split_outputs.done_documents(store, doc)
    errors_of = functools.partial(split_outputs.part_errors, store, batch_id)
    count = batch.merge_rounds(doc.parts, dones, errors_of)[2]
    parts = stage_retry(
        store,
        doc,
        (e for e in batch.merged_errors(doc.parts, dones, errors_of) if e.get("retryable")),
    )
    current = doc.round

    def next_round(d):
        if d.round != current or d.state not in (batch.SUBMITTED, batch.SPLITTING):
            return False  # another finisher started the round already
        batch.move(d, batch.STAGED, round=current + 1, parts=d.parts + parts)

    store.update_ledger(doc.batch_id, next_round)
    logs.info(
        "retry round staged",
        event="retry_round",
        round=current + 1,
        requests=count,
        parts=len(parts),
        seconds=round(time.monotonic() - started, 3),
    )
    notify.ask_submit(store.config, doc.batch_id)


def resumable(store: Store, doc: Ledger):
    """The requests a resume sends again, in line order: every one with no succeeded result
    (missing, from a job that expired, was cancelled or failed, and failed for a transient reason),
    not those Vertex refused for good."""
    dones = split_outputs.done_documents(store, doc)
    errors_of = functools.partial(split_outputs.part_errors, store, doc.batch_id)
    return (
        e
        for e in batch.merged_errors(doc.parts, dones, errors_of)
        if e["status"] == "missing" or e.get("retryable")
    )


def resume(store: Store, batch_id: str, round_: int) -> None:
    """A `resume_round` task: stage round `round_` of a finished batch from resumable(), reopen it
    (finished -> staged, its terminal message forgotten, so its next end sends another, and its
    manifest to be replaced, not created), and ask the submit function for the jobs. A task for a
    batch that is not finished at round `round_` - 1 (already resumed, or still running) does
    nothing, so resuming twice at once makes one round."""
    doc, _ = store.read_ledger(batch_id)
    if doc is None or doc.state != batch.DONE or doc.round != round_ - 1 or not doc.parts:
        logs.info(
            "resume task ignored: the batch is not finished at that round",
            round=round_,
            state=doc and doc.state,
        )
        return
    started = time.monotonic()
    parts = stage_retry(store, doc, resumable(store, doc))
    if not parts:
        logs.info(
            "resume task ignored: every request has its result or failed for good", round=round_
        )
        return
    manifest = store.bucket.get_blob(store.path(batch_id, layout.MANIFEST))
    store.mark_active(batch_id)  # first: a batch must never be open without the sweep knowing of it

    generation = manifest.generation if manifest is not None else 0
    reopen = functools.partial(_reopen, round_=round_, parts=parts, manifest_generation=generation)
    if not store.win_ledger(batch_id, reopen)[1]:
        logs.info("resume task ignored: another resume reopened the batch", round=round_)
        return
    logs.info(
        "batch resumed",
        event="batch_resumed",
        round=round_,
        requests=sum(p.requests for p in parts),
        parts=len(parts),
        seconds=round(time.monotonic() - started, 3),
    )
    notify.ask_submit(store.config, batch_id)


def _reopen(d, round_: int, parts: list, manifest_generation: int) -> bool:
    """The ledger move of a resume: finished -> staged for round `round_` with its new parts; False
    when another resume won."""
    if d.state != batch.DONE or d.round != round_ - 1:
        return False
    batch.move(
        d,
        batch.STAGED,
        round=round_,
        parts=d.parts + parts,
        cancel_requested=False,
        final_state=None,
        counts=None,
        owner=None,
        lease_until=None,
        notified={k: v for k, v in d.notified.items() if k != "terminal"},
        manifest_generation=manifest_generation,
        resumed=[
            *d.resumed,
            {
                "round": round_,
                "at": now(),
                "requests": sum(p.requests for p in parts),
                "after": d.final_state,
            },
        ],
    )
    return True


def request_resume(store: Store, doc: Ledger) -> int:
    """`dropbatch resume`: send a finished batch's requests that have no succeeded result as round
    doc.round + 1 (a `resume_round` task for the split function, docs/contracts.md); how many
    requests that round holds, 0 when there is nothing to resume (no task sent). A batch that did
    not end after its jobs ran is a UsageError."""
    from .documents import ResumeTask
    from .errors import UsageError

    if doc.state != batch.DONE:
        raise UsageError(
            f"batch {doc.batch_id} is {doc.final_state or doc.state}: only a batch that ended "
            "after its jobs ran can be resumed"
        )
    wanted = sum(1 for _ in resumable(store, doc)) if doc.parts else 0
    if wanted:
        notify.send_split_task(
            store.config, ResumeTask(batch_id=doc.batch_id, resume_round=doc.round + 1)
        )
    return wanted


def resume_taken_up(store: Store, batch_id: str, round_: int, timeout_s: float = 120) -> bool:
    """Whether the split function reopened the batch for round `round_` within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while getattr(store.read_ledger(batch_id)[0], "round", None) == round_ - 1:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.3)
    return True
