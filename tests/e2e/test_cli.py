"""The CLI against the local stack, as a user runs it: run, status, list, cancel; and the stalled report."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from conftest import drop, read_json, req

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parents[2]


def dropbatch(stack, *args, timeout=180):
    env = {**os.environ, **stack.client_env()}
    return subprocess.run([sys.executable, "-m", "dropbatch", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_run_wait_out_json(stack, vertex, tmp_path):
    out = dropbatch(stack, "run", ROOT / "examples/requests.jsonl", "--out", tmp_path / "res", "--json")
    assert out.returncode == 0, out.stderr
    manifest = orjson.loads(out.stdout)
    assert manifest["state"] == "succeeded" and manifest["counts"]["succeeded"] == 8
    keys = [orjson.loads(line)["key"] for line in (ROOT / "examples/requests.jsonl").read_bytes().splitlines()]
    rows = [orjson.loads(line) for line in (tmp_path / "res" / "results.jsonl").read_bytes().splitlines()]
    assert [r["key"] for r in rows] == keys, "results.jsonl in the file's order"
    assert not (tmp_path / "res" / "results").exists(), "per-key files only when asked"
    assert (tmp_path / "res" / "manifest.json").exists() and (tmp_path / "res" / "errors.jsonl").exists()
    human = dropbatch(stack, "status", manifest["batch_id"])
    assert human.returncode == 0 and "succeeded" in human.stdout
    listed = orjson.loads(dropbatch(stack, "list", "--json").stdout)
    assert listed[0]["batch_id"] == manifest["batch_id"], "newest first"
    assert [r["created"] for r in listed] == sorted((r["created"] for r in listed), reverse=True)


def test_cost_in_run_status_and_list_since(stack, vertex, tmp_path):
    out = dropbatch(stack, "run", ROOT / "examples/requests.jsonl", "--wait", "--json")
    manifest = orjson.loads(out.stdout)
    cost = manifest["cost"]
    assert cost["estimated"] > 0 and cost["online_equivalent"] == pytest.approx(2 * cost["estimated"], rel=1e-3)
    assert cost["price_source"].startswith("https://cloud.google.com/") and cost["model"] == "gemini-2.5-flash"
    human = dropbatch(stack, "status", manifest["batch_id"]).stdout
    assert f"about {cost['estimated']:.4f} USD as a batch" in human
    window = orjson.loads(dropbatch(stack, "list", "--since", "1h", "--json").stdout)
    rows = window["batches"]
    assert manifest["batch_id"] in [r["batch_id"] for r in rows]
    totals = window["totals"]
    assert totals["batches"] == len(rows) and totals["requests"] == sum(r["requests"] or 0 for r in rows)
    assert totals["cost"] == pytest.approx(sum(r["cost"] or 0 for r in rows)) and totals["cost"] >= cost["estimated"]
    text = dropbatch(stack, "list", "--since", "1h").stdout
    assert f"last 1h: {totals['batches']:,} batches, {totals['requests']:,} requests" in text
    assert dropbatch(stack, "list", "--since", "yesterday").returncode == 2


def test_run_out_per_key_writes_the_bucket_objects(stack, bucket, vertex, tmp_path):
    out = dropbatch(stack, "run", ROOT / "examples/requests.jsonl", "--out", tmp_path / "res", "--per-key")
    assert out.returncode == 0, out.stderr
    assert "results.jsonl (one line per request, in input order)" in out.stdout
    files = sorted((tmp_path / "res" / "results").glob("*.json"))
    assert len(files) == 8
    batch_id = orjson.loads(files[0].read_bytes())["batch_id"]
    for f in files:
        assert orjson.loads(f.read_bytes()) == read_json(bucket, f"batches/{batch_id}/results/{f.name}")


def test_run_rejected_file_exits_1_with_lines(stack, vertex):
    out = dropbatch(stack, "run", ROOT / "examples/broken.jsonl")
    assert out.returncode == 1
    assert "line 2: request.contents[0].role is 'assistant'" in out.stdout and "line 3:" in out.stdout


def test_status_of_unknown_batch_is_a_usage_error(stack):
    out = dropbatch(stack, "status", "no-such-batch-0000000000")
    assert out.returncode == 2 and "no batch" in out.stderr and "Traceback" not in out.stderr


def test_cancel_gives_a_cancelled_message(stack, bucket, inbox, vertex):
    vertex.faults(queued_s=60)
    _, batch_id = drop(bucket, "cancel-me.jsonl", [req(f"c{i}") for i in range(5)])
    inbox.wait_for(batch_id, "submitted")
    out = dropbatch(stack, "cancel", batch_id)
    assert out.returncode == 0, out.stderr
    done = inbox.wait_for(batch_id, "cancelled", timeout=60)
    assert done["counts"]["total"] == 5 and done["counts"]["missing"] == 5
    manifest = read_json(bucket, f"batches/{batch_id}/manifest.json")
    assert len(manifest["rounds"]) == 1, "a cancelled batch is not retried"


def test_a_job_past_its_deadline_is_reported_stalled(stack, bucket, inbox, vertex):
    from dropbatch import status
    from dropbatch.ledger import Store

    vertex.faults(queued_s=60)
    _, batch_id = drop(bucket, "slow.jsonl", [req("s")])
    inbox.wait_for(batch_id, "submitted")
    time.sleep(1.5)
    store = Store(stack.config(job_deadline_s=1))
    for _ in range(3):  # reported once, however many sweeps see it
        status.advance(store, batch_id)
    msg = inbox.wait_for(batch_id, "stalled")
    assert "JOB_STATE_" in msg["error"] and "after 1 s" in msg["error"]
    time.sleep(1)
    inbox.pull()
    assert [m["state"] for m in inbox.of(batch_id)].count("stalled") == 1
    ledger = read_json(bucket, f"batches/{batch_id}/ledger.json")
    assert ledger["parts"][0]["stalled"]
    vertex.faults(queued_s=0.1)
