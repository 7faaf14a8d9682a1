"""Resuming a batch that ended early (`dropbatch resume`, the `resume` task): a job that expires
keeps what it wrote (Google's batch-prediction-resume page), so only the requests without a
succeeded result are sent again, as one more round of the same batch, and one results.jsonl and one
manifest cover the whole file."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from conftest import drop, dropbatch, read_json, req, settled

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parents[2]


def results_file(bucket, batch_id) -> list[dict]:
    return [
        orjson.loads(x)
        for x in bucket.blob(f"batches/{batch_id}/results.jsonl").download_as_bytes().splitlines()
    ]


def test_an_expired_batch_is_finished_by_resume(stack, bucket, inbox, vertex):
    vertex.faults(job_outcome="EXPIRED", partial_share=0.5, lines_per_file=5)
    lines = [req(f"resume me {i}") for i in range(30)]
    _, batch_id = drop(bucket, "expires.jsonl", lines)
    first = inbox.wait_for(batch_id, "expired", timeout=120)
    assert 0 < first["counts"]["succeeded"] < 30 and first["counts"]["missing"] > 0
    before = results_file(bucket, batch_id)
    kept = {r["key"]: r for r in before if r["status"] == "succeeded"}
    vertex.reset()

    out = dropbatch(stack, "resume", batch_id, "--wait", "--json")
    assert out.returncode == 0, out.stderr
    manifest = orjson.loads(out.stdout)
    assert (
        manifest["state"] == "succeeded"
        and manifest["counts"]["succeeded"] == 30 == manifest["counts"]["total"]
    )
    assert manifest == read_json(bucket, f"batches/{batch_id}/manifest.json"), (
        "one manifest, replaced"
    )
    resumed = [r for r in manifest["rounds"] if r["round"] == len(manifest["rounds"]) - 1][0]
    assert resumed["requests"] == 30 - len(kept), "exactly the requests without a succeeded result"
    rows = results_file(bucket, batch_id)
    assert len(rows) == 30 and [r["key"] for r in rows] == [r["key"] for r in before], (
        "one line a request, in order"
    )
    assert all(r["status"] == "succeeded" for r in rows)
    assert all(rows[int(k) - 1] == r for k, r in kept.items()), (
        "what the expired job wrote is kept as it was"
    )
    assert bucket.blob(f"batches/{batch_id}/errors.jsonl").download_as_bytes() == b""
    states = [m["state"] for m in settled(bucket, inbox, batch_id)]
    assert [s for s in states if s != "running"] == ["submitted", "expired", "succeeded"], states
    ledger = read_json(bucket, f"batches/{batch_id}/ledger.json")
    assert ledger["resumed"][0]["after"] == "expired" and ledger["final_state"] == "succeeded"


def test_resuming_twice_at_once_makes_one_round(stack, bucket, inbox, vertex):
    from dropbatch import notify
    from dropbatch.documents import ResumeTask

    vertex.faults(job_outcome="CANCELLED", partial_share=0.5, lines_per_file=3)
    _, batch_id = drop(bucket, "twice.jsonl", [req(f"twice {i}") for i in range(12)])
    inbox.wait_for(batch_id, "cancelled", timeout=120)
    vertex.reset()
    ledger = read_json(bucket, f"batches/{batch_id}/ledger.json")
    for _ in range(2):  # two users, or one impatient one: the same task twice
        notify.send_split_task(
            stack.config(), ResumeTask(batch_id=batch_id, resume_round=ledger["round"] + 1)
        )
    done = inbox.wait_for(batch_id, "succeeded", timeout=120)
    assert done["counts"]["succeeded"] == 12
    ledger = read_json(bucket, f"batches/{batch_id}/ledger.json")
    assert len(ledger["resumed"]) == 1 and ledger["round"] == ledger["resumed"][0]["round"]
    states = [m["state"] for m in settled(bucket, inbox, batch_id)]
    assert states.count("succeeded") == 1 and states.count("cancelled") == 1, states


def test_resume_says_when_there_is_nothing_to_send(stack, bucket, inbox, vertex):
    _, batch_id = drop(bucket, "complete.jsonl", [req("all good")])
    inbox.wait_for(batch_id, "succeeded")
    out = dropbatch(stack, "resume", batch_id)
    assert out.returncode == 0 and "nothing to resume" in out.stdout
    assert not read_json(bucket, f"batches/{batch_id}/ledger.json")["resumed"], "no round was added"
    assert dropbatch(stack, "resume", "not-a-batch").returncode == 2
