"""The sweep's decisions on a batch's jobs (sweep.stalled_parts, sweep.queued_too_long), with no
stack: which jobs are stuck past the job deadline, which wait past Vertex's queue limit."""

from __future__ import annotations

import datetime as dt

from dropbatch import batch
from dropbatch.sweep import queued_too_long, stalled_parts


def ago(seconds: float) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def ledger(*parts):
    """parts: (job state, created seconds ago, job name or None)."""
    doc = batch.new_claim("b-0000000000", "gs://b/o.jsonl", "o.jsonl", 1, "me", 60)
    doc.parts = []
    for state, age, job in parts:
        part = batch.new_part(len(doc.parts), 0, 1, 10, 10, "gs://b/in.jsonl")
        part.state, part.created, part.job = state, ago(age), job
        doc.parts.append(part)
    return doc


def test_a_job_is_stalled_when_it_runs_unchanged_past_the_deadline():
    doc = ledger(
        ("JOB_STATE_RUNNING", 100, "j0"),  # stalled
        ("JOB_STATE_RUNNING", 10, "j1"),  # young
        ("JOB_STATE_RUNNING", 100, "j2"),  # old, but it changed in this tick
        ("JOB_STATE_SUCCEEDED", 100, "j3"),  # ended
        ("JOB_STATE_PENDING", 100, None),  # no job yet: waits for a slot
    )
    stalled = stalled_parts(doc, {2: {"state": "JOB_STATE_RUNNING"}}, deadline_s=60)
    assert [p.index for p in stalled] == [0]
    assert stalled_parts(doc, {}, deadline_s=1000) == []


def test_a_job_waits_too_long_by_its_state_as_read_now():
    doc = ledger(
        ("JOB_STATE_QUEUED", 100, "j0"),
        ("JOB_STATE_PENDING", 100, "j1"),
        ("JOB_STATE_QUEUED", 5, "j2"),  # young
        ("JOB_STATE_QUEUED", 100, "j3"),  # read running now
        ("JOB_STATE_RUNNING", 100, "j4"),  # read queued now (a restarted job)
    )
    now = {3: {"state": "JOB_STATE_RUNNING"}, 4: {"state": "JOB_STATE_QUEUED"}}
    found = queued_too_long(doc, now, limit_s=60)
    assert [(p.index, state) for p, state in found] == [
        (0, "JOB_STATE_QUEUED"),
        (1, "JOB_STATE_PENDING"),
        (4, "JOB_STATE_QUEUED"),
    ]
