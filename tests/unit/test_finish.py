"""The finishing step's pure parts (finish.py), with no stack: the manifest's job records, the
terminal message's error, the metric label of an error, and the batch's terminal state."""

from __future__ import annotations

import pytest
from dropbatch import batch, finish


def doc_with(*parts):
    doc = batch.new_claim("b-0000000000", "gs://b/o.jsonl", "o.jsonl", 1, "me", 60)
    doc.parts = []
    for round_, state, error in parts:
        part = batch.new_part(len(doc.parts), round_, 1, 10, 10, "gs://b/in.jsonl")
        part.state, part.error, part.job = state, error, f"jobs/{len(doc.parts)}"
        doc.parts.append(part)
    return doc


def test_job_records_hold_every_round():
    doc = doc_with(
        (0, "JOB_STATE_SUCCEEDED", None), (1, "JOB_STATE_FAILED", {"code": 3, "message": "bad"})
    )
    records = finish.job_records(doc)
    assert [(r["name"], r["round"], r["state"]) for r in records] == [
        ("jobs/0", 0, "JOB_STATE_SUCCEEDED"),
        ("jobs/1", 1, "JOB_STATE_FAILED"),
    ]
    assert set(records[0]) == {
        "name",
        "part",
        "round",
        "state",
        "requests",
        "completion_stats",
        "error",
        "output_dir",
        "created",
        "ended",
    }


def test_the_end_error_names_the_last_rounds_failed_jobs_and_the_table():
    jobs = finish.job_records(
        doc_with(
            (0, "JOB_STATE_FAILED", {"code": 13, "message": "first round"}),
            (1, "JOB_STATE_FAILED", {"code": 13, "message": "boom"}),
            (1, "JOB_STATE_SUCCEEDED", None),
        )
    )
    assert finish.end_error(jobs, 1, None) == "jobs/1: boom"
    assert finish.end_error(jobs, 1, "table gone") == "jobs/1: boom; table gone"
    assert finish.end_error(jobs[2:], 1, None) is None


def test_an_error_is_counted_by_vertex_code_else_by_status():
    assert finish.error_code({"status": "failed", "error": {"code": 429}}) == "429"
    assert finish.error_code({"status": "missing"}) == "missing"
    assert finish.error_code({"status": "failed", "error": {"code": 0}}) == "0"


@pytest.mark.parametrize(
    ("counts", "jobs", "state"),
    [
        ({"total": 2, "succeeded": 2}, ["JOB_STATE_SUCCEEDED"], "succeeded"),
        ({"total": 2, "succeeded": 1}, ["JOB_STATE_SUCCEEDED"], "partially_succeeded"),
        ({"total": 2, "succeeded": 0}, ["JOB_STATE_SUCCEEDED"], "failed"),
        ({"total": 2, "succeeded": 2}, ["JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"], "failed"),
        ({"total": 2, "succeeded": 1}, ["JOB_STATE_EXPIRED", "JOB_STATE_FAILED"], "expired"),
        ({"total": 2, "succeeded": 1}, ["JOB_STATE_FAILED", "JOB_STATE_CANCELLED"], "cancelled"),
        ({"total": 0, "succeeded": 0}, [], "failed"),
    ],
)
def test_the_terminal_state_is_the_jobs_verdict_then_the_counts(counts, jobs, state):
    assert batch.terminal_state(counts, jobs) == state
