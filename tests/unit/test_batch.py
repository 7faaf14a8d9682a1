"""The batch state machine (dropbatch.batch): every move and decision, without a stack."""

from __future__ import annotations

import datetime as dt

import pytest
from dropbatch import batch
from dropbatch.documents import SplitDone
from dropbatch.errors import BadMove, TransientError
from dropbatch.events import parse_time

T0 = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


def claimed(**extra):
    return batch.new_claim(
        "b-0123456789", "gs://x/incoming/a.jsonl", "incoming/a.jsonl", 7, "me", 60, at=T0
    ).set(**extra)


def test_the_table_allows_only_its_moves():
    doc = claimed()
    part = batch.new_part(0, 0, 1, 1, 1, None)
    assert batch.move(doc, batch.STAGED, parts=[part]).state == batch.STAGED and doc.parts == [part]
    with pytest.raises(AttributeError):  # a move sets only the ledger's own fields
        batch.move(doc, batch.SUBMITTED, prats=[])
    for state, allowed in batch.MOVES.items():
        for to in (
            batch.CLAIMED,
            batch.STAGED,
            batch.SUBMITTED,
            batch.SPLITTING,
            batch.DONE,
            batch.REJECTED,
            batch.FAILED,
        ):
            d = claimed(state=state)
            if to in allowed or to == state:
                assert batch.move(d, to).state == to
            else:
                with pytest.raises(BadMove):
                    batch.move(d, to)
    assert not batch.MOVES[batch.REJECTED] and not batch.MOVES[batch.FAILED], (
        "rejected and failed are final"
    )
    assert batch.MOVES[batch.DONE] == (batch.STAGED,), (
        "a done batch moves only to a resumed round (retry.resume)"
    )


def test_a_new_claim_holds_a_lease():
    doc = claimed()
    assert doc.state == batch.CLAIMED and doc.owner == "me" and doc.generation == 7
    assert not batch.lease_expired(doc, T0 + dt.timedelta(seconds=59))
    assert batch.lease_expired(doc, T0 + dt.timedelta(seconds=61))
    assert batch.lease_expired(claimed(owner=None))


def test_take_over_only_a_dead_owners_claim():
    doc = claimed()
    with pytest.raises(TransientError):
        batch.take_over(doc, "you", 60, at=T0 + dt.timedelta(seconds=30))
    assert batch.take_over(doc, "you", 60, at=T0 + dt.timedelta(seconds=61))
    assert doc.owner == "you" and parse_time(doc.lease_until) == T0 + dt.timedelta(seconds=121)
    assert batch.take_over(claimed(state=batch.STAGED), "you", 60, at=T0 + dt.timedelta(hours=1))
    for state in (batch.SUBMITTED, batch.SPLITTING, *batch.FINISHED):
        assert not batch.take_over(claimed(state=state), "you", 60, at=T0 + dt.timedelta(hours=1))


def test_release_only_my_own_lease():
    doc = claimed()
    assert not batch.release(doc, "you") and doc.owner == "me"
    assert batch.release(doc, "me") and doc.owner is None and batch.lease_expired(doc)


def test_part_claims_keep_two_creators_apart():
    part = batch.new_part(0, 0, 1, 10, 10, "gs://x/in")
    assert batch.part_waiting(part) and not batch.part_running(part)
    assert batch.claim_part(part, "a", 30, at=T0)
    assert not batch.claim_part(
        part, "b", 30, at=T0 + dt.timedelta(seconds=batch.CREATE_LEASE_S - 1)
    )
    assert batch.claim_part(part, "b", 30, at=T0 + dt.timedelta(seconds=batch.CREATE_LEASE_S + 1))
    # its response may be lost: let the list settle
    batch.create_failed(part, at=T0 + dt.timedelta(seconds=200))
    assert not batch.claim_part(part, "c", 30, at=T0 + dt.timedelta(seconds=229))
    assert batch.claim_part(part, "c", 30, at=T0 + dt.timedelta(seconds=231))
    part.set(job="projects/p/locations/l/batchPredictionJobs/1", state="JOB_STATE_RUNNING")
    assert batch.part_running(part) and not batch.claim_part(
        part, "d", 30, at=T0 + dt.timedelta(hours=1)
    )
    assert not batch.all_ended(claimed(parts=[part]))
    part.state = "JOB_STATE_SUCCEEDED"
    assert batch.all_ended(claimed(parts=[part])) and not batch.part_running(part)
    cancelled_early = batch.new_part(1, 0, 11, 20, 10, None).set(state="JOB_STATE_CANCELLED")
    assert not batch.part_waiting(cancelled_early)


def test_job_slots_go_first_come_first_served():
    """docs/contracts.md, "Job slots": a batch counts the jobs others run, the waiting parts of
    batches queued before it, and the jobs a later batch is creating now; never a part whose create
    failed, a cancelled or a staging batch."""

    def queued(batch_id: str, seconds: int, *parts, **extra):
        return batch.new_claim(
            batch_id,
            "gs://x/incoming/a.jsonl",
            "incoming/a.jsonl",
            7,
            "me",
            60,
            at=T0 + dt.timedelta(seconds=seconds),
        ).set(state=batch.SUBMITTED, parts=list(parts), **extra)

    def part(index: int, **extra):
        return batch.new_part(index, 0, 1, 1, 1, "gs://x/in").set(**extra)

    running = {"job": "projects/p/locations/l/batchPredictionJobs/1", "state": "JOB_STATE_RUNNING"}
    me = queued("b-me", 10, part(0))
    first = queued("b-first", 5, part(0, **running), part(1), part(2))
    assert batch.slots_owed(first) == 2 and batch.slots_ahead(me, first) == 3
    assert batch.slots_ahead(first, me) == 0, "a batch queued later is owed nothing first"
    a, b = queued("b-a", 10, part(0)), queued("b-b", 10, part(0))
    assert (batch.slots_ahead(b, a), batch.slots_ahead(a, b)) == (1, 0), (
        "claimed at the same time: by id"
    )
    later = queued(
        "b-later", 20, part(0, creating={"by": "x", "at": "2026-11-27T12:00:20.000Z"}), part(1)
    )
    assert batch.slots_ahead(me, later) == 1, "a later batch's job being created takes its slot"
    failed = {"by": "x", "at": "2026-11-27T12:00:05.000Z", "failed": "2026-11-27T12:00:06.000Z"}
    assert batch.slots_ahead(me, queued("b-quota", 5, part(0, creating=failed), part(1))) == 1, (
        "a part whose create failed does not hold the queue"
    )
    assert batch.slots_owed(queued("b-cancel", 5, part(0), cancel_requested=True)) == 0
    assert batch.slots_owed(queued("b-staging", 5, part(0)).set(state=batch.CLAIMED)) == 0
    assert batch.slots_owed(queued("b-round", 5, part(0)).set(state=batch.STAGED)) == 1, (
        "a staged retry round"
    )
    assert batch.slots_owed(queued("b-ended", 5, part(0, state="JOB_STATE_SUCCEEDED"))) == 0


@pytest.mark.parametrize(
    "states, counts, expected",
    [
        (["JOB_STATE_SUCCEEDED", "JOB_STATE_CANCELLED"], (10, 10), "cancelled"),
        (["JOB_STATE_EXPIRED", "JOB_STATE_FAILED"], (10, 5), "expired"),
        (["JOB_STATE_FAILED"], (10, 9), "failed"),
        (["JOB_STATE_SUCCEEDED"], (10, 10), "succeeded"),
        (["JOB_STATE_SUCCEEDED"], (10, 0), "failed"),
        (["JOB_STATE_PARTIALLY_SUCCEEDED"], (10, 4), "partially_succeeded"),
    ],
)
def test_terminal_state(states, counts, expected):
    assert batch.terminal_state({"total": counts[0], "succeeded": counts[1]}, states) == expected


def done(requests, lines=None, usage=1):
    return SplitDone(
        part=0,
        round=0,
        job=None,
        requests=requests,
        lines=lines,
        counts={"duplicate_outputs": 1},
        error_count=0,
        usage={"prompt_tokens": usage, "candidates_tokens": usage, "total_tokens": 2 * usage},
    )


def listed(errors: dict):
    """errors_of for parts whose errors are listed by part name (finish.finalize reads them from
    objects)."""
    return lambda part, _: errors[batch.part_name(part)]


def err(line, status="failed", retryable=True):
    return {"key": str(line), "line": line, "status": status, "error": None, "retryable": retryable}


def test_merge_rounds_keeps_the_last_answer():
    parts = [
        batch.new_part(0, 0, 1, 5, 5, None),
        batch.new_part(1, 0, 6, 10, 5, None),
        batch.new_part(2, 1, 2, 9, 4, None),
    ]
    dones = {"r0-p00000": done(5), "r0-p00001": done(5), "r1-p00002": done(4, lines=[2, 3, 4, 8])}
    errors_of = listed(
        {
            "r0-p00000": [err(2), err(3), err(4, "missing")],
            "r0-p00001": [err(8, "missing"), err(9, retryable=False)],
            # round 1 retried 2, 3, 4, 8: 2 succeeded, 3 failed again, 4 and 8 came back
            # with nothing
            "r1-p00002": [err(3), err(4, "missing"), err(8, "missing")],
        }
    )
    counts, usage, retryable = batch.merge_rounds(parts, dones, errors_of)
    errors = list(batch.merged_errors(parts, dones, errors_of))
    assert [(e["line"], e["status"]) for e in errors] == [
        (3, "failed"),
        (4, "missing"),
        (8, "missing"),
        (9, "failed"),
    ]
    assert retryable == 3
    assert counts == {
        "total": 10,
        "succeeded": 6,
        "failed": 2,
        "missing": 2,
        "duplicate_outputs": 3,
        "unmatched_outputs": 0,
    }
    assert usage == {
        "prompt_tokens": 3,
        "candidates_tokens": 3,
        "thoughts_tokens": 0,
        "total_tokens": 6,
    }


def test_a_retry_with_no_output_leaves_the_earlier_failure():
    parts = [batch.new_part(0, 0, 1, 2, 2, None), batch.new_part(1, 1, 1, 1, 1, None)]
    dones = {"r0-p00000": done(2), "r1-p00001": done(1, lines=[1])}
    errors_of = listed({"r0-p00000": [err(1)], "r1-p00001": [err(1, "missing")]})
    assert list(batch.merged_errors(parts, dones, errors_of)) == [err(1)]
    assert batch.merge_rounds(parts, dones, errors_of)[0]["failed"] == 1


def test_wants_retry():
    def ledger(state="JOB_STATE_SUCCEEDED", **extra):
        return claimed(parts=[batch.new_part(0, 0, 1, 1, 1, None).set(state=state)], **extra)

    assert batch.wants_retry(ledger(), 2, 1) is True
    assert batch.wants_retry(ledger(), 0, 1) is False
    assert batch.wants_retry(ledger(), 2, 0) is False
    assert batch.wants_retry(ledger(cancel_requested=True), 2, 1) is False
    assert batch.wants_retry(ledger("JOB_STATE_CANCELLED"), 2, 1) is False


def test_a_million_errors_merge_in_bounded_memory():
    """A 1,000,000-request batch (the file limit) that failed whole, in five parts and a retry round
    over two of them: merging its rounds held every error as a list, a 1.2 GB peak (measured), more
    than the split function's 1 GiB. Streamed, the peak stays under 10 MB and the merge is the same.
    """
    import tracemalloc

    per_part = 200_000
    parts = [
        batch.new_part(i, 0, i * per_part + 1, (i + 1) * per_part, per_part, None) for i in range(5)
    ]
    parts.append(batch.new_part(5, 1, 1, 2 * per_part, 2 * per_part, None))  # retried parts 0 and 1
    retried = range(1, 2 * per_part + 1)
    dones = {
        batch.part_name(p): done(p.requests, lines=retried if p.round else None) for p in parts
    }

    def errors_of(part, _):  # as finish.finalize reads them: one part's errors object, line by line
        for line in range(part.first_line, part.last_line + 1):
            yield err(line, "missing" if part.round and line % 2 else "failed")

    tracemalloc.start()
    try:
        counts, _, retryable = batch.merge_rounds(parts, dones, errors_of)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 << 20, f"peak {peak >> 20} MB"
    # a retried line that came back with nothing keeps its earlier failure: every line ends failed
    assert counts["total"] == counts["failed"] == retryable == 1_000_000 and counts["missing"] == 0
