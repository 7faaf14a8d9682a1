"""The split function's router (rounds.route): what a split task does to a batch as its ledger
stands, every branch, with no stack."""

from __future__ import annotations

import pytest
from dropbatch import batch
from dropbatch.documents import SplitTask
from dropbatch.rounds import route


def ledger(state=batch.SPLITTING, parts=((0, "JOB_STATE_SUCCEEDED", None),)):
    doc = batch.new_claim("b-0000000000", "gs://b/o.jsonl", "o.jsonl", 1, "me", 60)
    doc.state = state
    doc.parts = []
    for round_, job_state, split in parts:
        part = batch.new_part(len(doc.parts), round_, 1, 10, 10, "gs://b/in.jsonl")
        part.state, part.split = job_state, split
        doc.parts.append(part)
    return doc


def task(part=0, round_=0, partial=False):
    return SplitTask(
        batch_id="b-0000000000",
        part=part,
        round=round_,
        job="j",
        continuation=False,
        partial=partial,
    )


@pytest.mark.parametrize(
    ("doc", "sent", "action"),
    [
        (None, task(), "ignore: the batch is not splitting"),
        (ledger(batch.STAGED), task(), "ignore: the batch is not splitting"),
        (ledger(batch.DONE), task(), "ignore: the batch is not splitting"),
        (ledger(), task(part=1), "ignore: no such part"),
        (
            ledger(parts=((1, "JOB_STATE_SUCCEEDED", None),)),
            task(round_=0),
            "ignore: an older round",
        ),
        (ledger(), task(), "split"),
        (ledger(parts=((0, "JOB_STATE_PARTIALLY_SUCCEEDED", None),)), task(), "split"),
        (ledger(parts=((0, "JOB_STATE_CANCELLED", None),)), task(), "split"),
        # the task overtook the sweep's write of the job's end: redelivered until the ledger has it
        (ledger(batch.SUBMITTED, ((0, "JOB_STATE_RUNNING", None),)), task(), "wait"),
        (ledger(batch.SUBMITTED, ((0, "JOB_STATE_RUNNING", None),)), task(partial=True), "partial"),
        (ledger(parts=((0, "JOB_STATE_SUCCEEDED", None),)), task(partial=True), "skip_partial"),
        (
            ledger(batch.SUBMITTED, ((0, "JOB_STATE_RUNNING", "done"),)),
            task(partial=True),
            "skip_partial",
        ),
    ],
)
def test_a_split_task_is_routed_by_the_ledger(doc, sent, action):
    assert route(doc, sent) == action
