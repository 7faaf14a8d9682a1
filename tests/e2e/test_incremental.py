"""Results while the job runs (#21): Vertex writes finished rows to the output directory as a job
runs, so the sweep queues `partial` split tasks for new output, and results/KEY.json appear before
the job ends; the final split handles only what is left, and the batch's results are exact."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from conftest import drop, dropbatch, owner, read_json, req, settled

pytestmark = pytest.mark.stack


def job_state(stack, name: str) -> str:
    return owner().get(f"{stack.vertex}/v1/{name}").json()["state"]


def test_results_appear_before_the_job_ends_and_end_exact(stack, bucket, inbox, vertex):
    vertex.faults(running_s=12, lines_per_file=4, fail_rate=0.2, fail_code=400)
    n = 24
    _, batch_id = drop(bucket, "early.jsonl", [req(f"early {i}") for i in range(n)])
    prefix = f"batches/{batch_id}/results/"
    early, deadline = 0, time.monotonic() + 60
    while not early and time.monotonic() < deadline:
        blob = bucket.get_blob(f"batches/{batch_id}/ledger.json")
        ledger = orjson.loads(blob.download_as_bytes()) if blob else {"parts": []}
        jobs = [p["job"] for p in ledger["parts"] if p.get("job")]
        written = sum(1 for _ in bucket.list_blobs(prefix=prefix))
        if jobs and written and job_state(stack, jobs[0]) == "JOB_STATE_RUNNING":
            early = written
            shown = dropbatch(stack, "status", batch_id, timeout=60).stdout
        time.sleep(0.2)
    assert 0 < early < n, "results/KEY.json objects while the job still runs"
    so_far = re.search(r"results so far: (\d+) succeeded, (\d+) failed of 24", shown)
    assert so_far and 0 < int(so_far[1]) + int(so_far[2]) < n, shown
    done = inbox.wait_for(batch_id, ["succeeded", "partially_succeeded"], timeout=90)
    running = [m for m in inbox.of(batch_id) if m["state"] == "running"]
    assert any(
        m["counts"]["succeeded"] + m["counts"]["failed"] > 0 and m["counts"]["pending"] > 0
        # results counted before the job ended, not only Vertex's stats
        for m in running
    ), running
    c = done["counts"]
    assert c["total"] == n and c["succeeded"] + c["failed"] == n and c["missing"] == 0
    assert c["duplicate_outputs"] == 0 and c["unmatched_outputs"] == 0, "no line counted twice"
    rows = [
        orjson.loads(x)
        for x in bucket.blob(f"batches/{batch_id}/results.jsonl").download_as_bytes().splitlines()
    ]
    objects = {
        b.name[len(prefix) : -5]: orjson.loads(b.download_as_bytes())
        for b in bucket.list_blobs(prefix=prefix)
    }
    assert (
        len(rows) == n
        and [r["key"] for r in rows] == sorted(objects)
        and all(objects[r["key"]] == r for r in rows)
    )
    assert sum(r["status"] == "failed" for r in rows) == c["failed"]
    lines = [
        orjson.loads(x)
        for x in (Path(stack.logs) / "split.log").read_text().splitlines()
        if x.startswith("{")
    ]
    increments = [
        x
        for x in lines
        if x.get("batch_id") == batch_id and x["message"] == "results written so far"
    ]
    assert increments, "partial splits ran"
    assert [
        m["state"]
        for m in settled(bucket, inbox, batch_id)
        if m["state"] not in ("submitted", "running")
    ] == [done["state"]]
    manifest = read_json(bucket, f"batches/{batch_id}/manifest.json")
    assert manifest["counts"] == c


def test_run_out_partial_keeps_a_results_file_while_the_batch_runs(stack, vertex, tmp_path):
    """`dropbatch run FILE --out DIR --partial`: DIR/results.jsonl has every request's line while
    the batch runs, each marked final or pending, and the end replaces it with the batch's
    results.jsonl."""
    vertex.faults(running_s=12, lines_per_file=4)
    src = tmp_path / "partial.jsonl"
    src.write_bytes(b"".join(orjson.dumps(req(f"partial {i}")) + b"\n" for i in range(24)))
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dropbatch",
            "run",
            str(src),
            "--out",
            str(out),
            "--partial",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **stack.client_env()},
    )
    seen_mixed = False
    while proc.poll() is None and not seen_mixed:
        path = out / "results.jsonl"
        if path.exists():
            rows = [orjson.loads(x) for x in path.read_bytes().splitlines()]
            assert len(rows) == 24 and all("final" in r for r in rows), (
                "every request's line, marked"
            )
            finals = sum(r["final"] for r in rows)
            pending = sum(r["status"] == "pending" for r in rows)
            seen_mixed = 0 < finals < 24 and pending > 0
        time.sleep(0.2)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert seen_mixed, "a partial results.jsonl with final and pending lines while the batch ran"
    rows = [orjson.loads(x) for x in (out / "results.jsonl").read_bytes().splitlines()]
    assert len(rows) == 24 and all("final" not in r and r["status"] == "succeeded" for r in rows)
    assert orjson.loads(stdout)["counts"]["succeeded"] == 24
