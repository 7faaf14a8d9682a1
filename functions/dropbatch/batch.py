"""The batch state machine: the ledger's states, the moves between them, and small pure decisions.

No I/O here. submit, the sweep, rounds and split read and write the ledger through store.Store and
ask this module what a batch may do next; a move the table does not allow is a bug, not a retry.

    claimed --> staged --> submitted --> splitting --> done
       |           |           ^             |
       |           |           +-- staged <--+   (a retry round: staged again, then submitted)
       +-----------+--> rejected | failed

    rejected: a bad file; failed: a job Vertex refuses, a vanished file.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections.abc import Iterator

from . import layout
from .constants import (
    CANCELLED,
    EXPIRED,
    JOB_CANCELLED,
    JOB_EXPIRED,
    JOB_FAILED,
    JOB_TERMINAL,
    PARTIALLY_SUCCEEDED,
    SUCCEEDED,
)
from .constants import FAILED as FAILED_STATE
from .documents import Ledger, Part, SplitDone
from .errors import BadMove, TransientError
from .events import age_s, now, parse_time, utcnow

CLAIMED, STAGED, SUBMITTED, SPLITTING, DONE, REJECTED, FAILED = (
    "claimed",
    "staged",
    "submitted",
    "splitting",
    "done",
    "rejected",
    "failed",
)
FINISHED = (DONE, REJECTED, FAILED)
SUBMITTING = (CLAIMED, STAGED)  # owned by one execution under a lease

MOVES: dict[str, tuple[str, ...]] = {
    CLAIMED: (STAGED, REJECTED, FAILED, DONE),  # DONE: cancelled before any job
    STAGED: (SUBMITTED, FAILED),
    # a split task may finish before the ledger says splitting
    SUBMITTED: (SPLITTING, STAGED, DONE, FAILED),
    SPLITTING: (STAGED, DONE, FAILED),  # STAGED: the next retry round
    DONE: (STAGED,),
    REJECTED: (),
    FAILED: (),  # STAGED: a resumed round (retry.resume)
}

FINISH_AFTER_S = 60  # a manifest older than this whose message never went out: its finisher died
# how long a part's creation claim holds: longer than one create call with its retries
CREATE_LEASE_S = 120
MAX_CLAIMS = 5  # executions that may die holding one file's submission before the batch fails
# google.rpc.Code values of a job error that another round cannot fix: INVALID_ARGUMENT, NOT_FOUND,
# PERMISSION_DENIED, FAILED_PRECONDITION (googleapis google/rpc/code.proto).
PERMANENT_JOB_CODES = frozenset({3, 5, 7, 9})


def move(doc: Ledger, to: str, **fields) -> Ledger:
    """Move a ledger to state `to` (in place), with the fields that go with it (staying is
    allowed)."""
    if to != doc.state and to not in MOVES[doc.state]:
        raise BadMove(f"batch {doc.batch_id}: {doc.state} -> {to} is not a move")
    return doc.set(state=to, **fields)


# ------------------------------------------------------------------ the claim and its lease


def new_claim(
    batch_id: str,
    source: str,
    name: str,
    generation: int,
    owner: str,
    lease_s: float,
    at: dt.datetime | None = None,
) -> Ledger:
    """The ledger of a batch just claimed by `owner`."""
    at = at or utcnow()
    return Ledger(
        batch_id=batch_id,
        state=CLAIMED,
        source=source,
        object=name,
        generation=generation,
        created=now(at),
        updated=now(at),
        owner=owner,
        lease_until=now(at + dt.timedelta(seconds=lease_s)),
    )


def lease_expired(doc: Ledger, at: dt.datetime | None = None) -> bool:
    """True when nobody holds the batch's submission lease (none taken, or it ran out)."""
    until = parse_time(doc.lease_until)
    return not doc.owner or until is None or until <= (at or utcnow())


def take_over(doc: Ledger, me: str, lease_s: float, at: dt.datetime | None = None) -> bool:
    """Take a half-finished submission (in place). False: nothing to take; TransientError: a live
    owner has it."""
    if doc.state not in SUBMITTING:
        return False
    at = at or utcnow()
    if not lease_expired(doc, at):
        raise TransientError(
            f"batch {doc.batch_id} is being submitted by execution {doc.owner}; retry later"
        )
    if doc.owner:  # its owner died (a released lease is a retry, not a death): count it
        doc.claims += 1
    doc.set(owner=me, lease_until=now(at + dt.timedelta(seconds=lease_s)))
    return True


def out_of_claims(doc: Ledger) -> bool:
    """True when MAX_CLAIMS executions died or timed out holding the file (a file that kills its
    reader)."""
    return doc.state in SUBMITTING and doc.claims > MAX_CLAIMS


def release(doc: Ledger, me: str) -> bool:
    """Give the lease back (in place) when `me` holds it."""
    if doc.owner != me:
        return False
    doc.set(owner=None, lease_until=None)
    return True


# ------------------------------------------------------------------ parts and their jobs


def new_part(
    index: int, round_: int, first_line: int, last_line: int, requests: int, input_uri: str | None
) -> Part:
    return Part(
        index=index,
        round=round_,
        first_line=first_line,
        last_line=last_line,
        requests=requests,
        input=input_uri,
    )


def part_running(part: Part) -> bool:
    return bool(part.job) and part.state not in JOB_TERMINAL


def part_waiting(part: Part) -> bool:
    """Staged, with no job yet and not ended (cancelled before it started)."""
    return not part.job and part.state not in JOB_TERMINAL


def wholly_reused(part: Part) -> bool:
    """Every request of its lines answered by earlier batches (reuse.py): the part has no job."""
    return not part.requests and part.reused > 0


def running_jobs(doc: Ledger) -> int:
    return sum(1 for p in doc.parts if part_running(p))


def slots_owed(doc: Ledger) -> int:
    """The job slots a batch is queued for (docs/contracts.md, "Job slots"): its parts with no job
    yet, while it is staged or submitted and not cancelled. A part whose last create failed waits
    outside the queue, so that a batch Vertex refuses for now (its model's quota) does not hold back
    the batches behind it."""
    if doc.state not in (STAGED, SUBMITTED) or doc.cancel_requested:
        return 0
    return sum(1 for p in doc.parts if part_waiting(p) and not (p.creating or {}).get("failed"))


def queue_key(doc: Ledger) -> tuple[str, str]:
    """Slots go first come, first served: by when the batch was claimed, then by id."""
    return doc.created, doc.batch_id


def slots_ahead(doc: Ledger, other: Ledger) -> int:
    """The job slots another batch holds or comes first for, as `doc` sees it: its running jobs, and
    its parts that wait when it was queued first, or whose job is being created now."""
    if queue_key(other) < queue_key(doc):
        waiting = slots_owed(other)
    else:
        waiting = sum(
            1
            for p in other.parts
            if part_waiting(p) and p.creating and not p.creating.get("failed")
        )
    return running_jobs(other) + waiting


def claim_part(part: Part, me: str, settle_s: float, at: dt.datetime | None = None) -> bool:
    """Win the right to create a part's job (in place), so overlapping sweeps never create two.
    After a create that failed, nobody tries again for `settle_s`: the failed call may have made the
    job (its response lost), and Vertex's list, where the next try looks for it first, may not show
    a new job at once."""
    creating = part.creating
    if not part_waiting(part):
        return False
    if creating:
        failed = creating.get("failed")
        if age_s(failed or creating["at"], at) < (settle_s if failed else CREATE_LEASE_S):
            return False
    part.creating = {"by": me, "at": now(at)}
    return True


def create_failed(part: Part, at: dt.datetime | None = None) -> None:
    """Record (in place) that the part's create failed: the next try waits for the list to
    settle."""
    part.creating = {**(part.creating or {}), "failed": now(at)}


def ended_for_good(part: Part) -> bool:
    """The part's job failed in a way another round cannot fix (refused, gone, unreadable, bad
    input)."""
    error = part.error or {}
    return part.state == JOB_FAILED and (
        error.get("code") in PERMANENT_JOB_CODES or bool(part.refused or part.lost)
    )


def all_ended(doc: Ledger) -> bool:
    return all(p.state in JOB_TERMINAL for p in doc.parts)


part_name = layout.part_name


# ------------------------------------------------------------------ the end of a batch


def build_manifest(
    batch_id, counts: dict, usage: dict, jobs: list, source: str, results_prefix: str, **extra
) -> dict:
    """manifest.json (DESIGN.md): counts, usage, jobs, the terminal state they make."""
    states = [j.get("state") or "" for j in jobs]
    return {
        "batch_id": batch_id,
        "state": terminal_state(counts, states),
        "counts": counts,
        "usage": usage,
        "jobs": jobs,
        "source": source,
        "results_prefix": results_prefix,
        **extra,
    }


def terminal_state(counts: dict, job_states: list[str]) -> str:
    """The batch's final state (docs/contracts.md): cancelled, expired, failed by a job, or by the
    counts."""
    if JOB_CANCELLED in job_states:
        return CANCELLED
    if JOB_EXPIRED in job_states:
        return EXPIRED
    # the job's own verdict; the counts still show what did succeed
    if JOB_FAILED in job_states:
        return FAILED_STATE
    if counts["total"] and counts["succeeded"] == counts["total"]:
        return SUCCEEDED
    if counts["succeeded"] == 0:
        return FAILED_STATE
    return PARTIALLY_SUCCEEDED


USAGE_NAMES = ("prompt_tokens", "candidates_tokens", "thoughts_tokens", "total_tokens")


def merged_errors(parts: list[Part], dones: dict[str, SplitDone], errors_of) -> Iterator[dict]:
    """A batch's errors in line order, streamed: a later round's outcome replaces the earlier one
    for the lines it retried (done.lines), unless the later round got no output line for it (then
    the earlier failure, and its result object, stand). `dones` maps part_name(part) to that part's
    split outcome; errors_of(part, done) gives that part's errors in line order. Holds one entry per
    part, whatever the batch's size (a list of a million failed requests would not fit the split
    function's memory)."""

    def tagged(items, round_: int, is_error: int):
        for item in items:
            yield (item["line"], round_, 1, item) if is_error else (item, round_, 0, None)

    streams = []
    for part in parts:
        done = dones[part_name(part)]
        streams.append(tagged(errors_of(part, done), part.round, 1))
        if part.round:
            streams.append(tagged(done.lines or (), part.round, 0))
    current = state = earlier = None
    for line, _, is_error, entry in heapq.merge(*streams, key=lambda t: t[:3]):
        if line != current:
            if state is not None:
                yield state
            current, state, earlier = line, None, None
        # retried in a later round: answered there unless an error of that round follows
        if not is_error:
            earlier, state = state, None
        else:
            state = earlier if entry["status"] == "missing" and earlier is not None else entry
    if state is not None:
        yield state


def merge_rounds(
    parts: list[Part], dones: dict[str, SplitDone], errors_of
) -> tuple[dict, dict, int]:
    """Counts and usage of a batch over all its rounds (merged_errors decides each line), and how
    many of its errors are worth another round."""
    counts = {
        "total": 0,
        "succeeded": 0,
        "failed": 0,
        "missing": 0,
        "duplicate_outputs": 0,
        "unmatched_outputs": 0,
    }
    usage = dict.fromkeys(USAGE_NAMES, 0)
    for part in parts:
        done = dones[part_name(part)]
        if part.round == 0:
            counts["total"] += done.requests
        for k in ("duplicate_outputs", "unmatched_outputs"):
            counts[k] += done.counts.get(k, 0)
        for k in usage:
            usage[k] += done.usage.get(k, 0)
    retryable = 0
    for e in merged_errors(parts, dones, errors_of):
        counts[e["status"]] += 1
        retryable += bool(e.get("retryable"))
    counts["succeeded"] = counts["total"] - counts["failed"] - counts["missing"]
    # answered from earlier batches (reuse.py), among the succeeded: counted only when there are any
    reused = sum(dones[part_name(p)].counts.get("reused", 0) for p in parts)
    if reused:
        counts["reused"] = reused
    return counts, usage, retryable


def wants_retry(doc: Ledger, retryable: int, max_rounds: int) -> bool:
    """Another round for the retryable errors, while rounds remain and nobody cancelled the
    batch."""
    last_round = [p for p in doc.parts if p.round == doc.round]
    cancelled = doc.cancel_requested or any(p.state == JOB_CANCELLED for p in last_round)
    return bool(retryable) and not cancelled and doc.round < max_rounds
