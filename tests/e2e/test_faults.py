"""The fault suite on the local stack: every test asserts the end state (jobs, result objects,
errors.jsonl, manifest counts, messages), not just that nothing crashed."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from conftest import (
    NOT_TERMINAL,
    drop,
    free_port,
    jobs_of,
    read_json,
    req,
    settled,
    wait_port,
)

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parents[2]


def results(bucket, batch_id) -> dict:
    prefix = f"batches/{batch_id}/results/"
    return {
        b.name[len(prefix) : -5]: orjson.loads(b.download_as_bytes())
        for b in bucket.list_blobs(prefix=prefix)
    }


def errors_of(bucket, batch_id) -> list:
    return [
        orjson.loads(l)
        for l in bucket.blob(f"batches/{batch_id}/errors.jsonl").download_as_bytes().splitlines()
    ]


def terminal_messages(bucket, inbox, batch_id):
    return [m for m in settled(bucket, inbox, batch_id) if m["state"] not in NOT_TERMINAL]


def test_retry_round_turns_transient_failures_into_successes(stack, bucket, inbox, vertex):
    vertex.faults(fail_rate=0.4, fail_code=429)
    _, batch_id = drop(bucket, "retry.jsonl", [req(f"retry me {i}") for i in range(30)])
    done = inbox.wait_for(batch_id, ["succeeded", "partially_succeeded", "failed"], timeout=90)
    manifest = read_json(bucket, f"batches/{batch_id}/manifest.json")
    first, second = (
        [j for j in manifest["jobs"] if j["round"] == 0],
        [j for j in manifest["jobs"] if j["round"] == 1],
    )
    failed_first = sum(int(j["completion_stats"]["failed"]) for j in first)
    assert failed_first > 0 and second, manifest["jobs"]
    assert manifest["rounds"] == [
        {"round": 0, "requests": 30, "jobs": 1},
        {"round": 1, "requests": failed_first, "jobs": 1},
    ]
    c = done["counts"]
    assert c["total"] == 30 and c["failed"] < failed_first and c["succeeded"] + c["failed"] == 30
    got = results(bucket, batch_id)
    assert (
        len(got) == 30 and sum(r["status"] == "succeeded" for r in got.values()) == c["succeeded"]
    )
    assert [e["key"] for e in errors_of(bucket, batch_id)] == sorted(
        k for k, r in got.items() if r["status"] == "failed"
    )
    assert len(terminal_messages(bucket, inbox, batch_id)) == 1


def test_non_retryable_failures_are_not_retried(stack, bucket, inbox, vertex):
    _, batch_id = drop(bucket, "noretry.jsonl", [req("fine"), req("BLOCKME"), req("fine too")])
    done = inbox.wait_for(batch_id, "partially_succeeded")
    manifest = read_json(bucket, f"batches/{batch_id}/manifest.json")
    assert len(manifest["rounds"]) == 1 and done["counts"]["failed"] == 1
    assert errors_of(bucket, batch_id)[0]["retryable"] is False


def test_permanent_400_on_create_fails_once(stack, bucket, inbox, vertex):
    vertex.faults(create_errors=[400])
    _, batch_id = drop(bucket, "refused.jsonl", [req("a")])
    msg = inbox.wait_for(batch_id, "failed")
    assert "refused" in msg["error"] and "400" in msg["error"]
    settled(bucket, inbox, batch_id)
    assert vertex.stats()["calls"]["create"] == 1, "a permanent error must not be retried"
    assert jobs_of(stack, batch_id) == []
    assert read_json(bucket, f"batches/{batch_id}/ledger.json")["state"] == "failed"


def test_partially_succeeded_job(stack, bucket, inbox, vertex):
    vertex.faults(job_outcome="PARTIALLY_SUCCEEDED", fail_rate=0.3, fail_code=400)
    _, batch_id = drop(bucket, "partial.jsonl", [req(f"p{i}") for i in range(30)])
    done = inbox.wait_for(batch_id, "partially_succeeded", timeout=60)
    assert 0 < done["counts"]["failed"] < 30 and len(results(bucket, batch_id)) == 30


def test_split_killed_at_random_points_and_redelivered(stack, bucket, inbox, vertex):
    from dropbatch.local import stack as local

    n = 2500
    rng = random.Random(11)
    # five parts of 500, not 63 of 40 (conftest.STACK_ENV): a kill lands inside a part's split
    local.restart_function("submit", kill_signal=15, DROPBATCH_MAX_JOB_REQUESTS="500")
    try:
        _, batch_id = drop(bucket, "killed-split.jsonl", [req(f"k{i}") for i in range(n)])
        inbox.wait_for(batch_id, "submitted", timeout=60)
    finally:
        local.restart_function("submit", kill_signal=15)
    prefix = f"batches/{batch_id}/results/"
    kills = 0
    deadline = time.monotonic() + 120
    while kills < 3 and time.monotonic() < deadline:
        # a page of names up to the next kill's mark, not the whole listing twenty times a second
        mark = 100 * (kills + 1)
        written = sum(1 for _ in bucket.list_blobs(prefix=prefix, max_results=mark))
        if written >= mark and sum(1 for _ in bucket.list_blobs(prefix=prefix)) < n:
            time.sleep(rng.uniform(0, 0.3))
            # SIGKILL mid-split; Pub/Sub redelivers the unacknowledged task
            local.restart_function("split")
            kills += 1
        time.sleep(0.05)
    done = inbox.wait_for(batch_id, ["succeeded", "partially_succeeded"], timeout=180)
    assert kills == 3
    assert done["counts"] == {
        "total": n,
        "succeeded": n,
        "failed": 0,
        "missing": 0,
        "duplicate_outputs": 0,
        "unmatched_outputs": 0,
    }
    # the objects' names: downloading 2,500 of them one by one took longer than the split
    assert sum(1 for _ in bucket.list_blobs(prefix=prefix)) == n
    assert len(terminal_messages(bucket, inbox, batch_id)) == 1


def test_gcs_503s_during_result_writes(stack, bucket, inbox, vertex):
    from dropbatch.local import stack as local

    port = free_port()
    proxy = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "tests/bench/proxy.py"),
            "--upstream",
            stack.storage,
            "--port",
            str(port),
            "--latency-ms",
            "0",
            "--fail-rate",
            "0.2",
        ]
    )
    try:
        wait_port(port)
        local.restart_function("split", STORAGE_EMULATOR_HOST=f"http://127.0.0.1:{port}")
        _, batch_id = drop(bucket, "flaky-gcs.jsonl", [req(f"f{i}") for i in range(200)])
        done = inbox.wait_for(batch_id, "succeeded", timeout=120)
    finally:
        local.restart_function("split", kill_signal=15)
        proxy.terminate()
    assert done["counts"]["succeeded"] == 200 and done["counts"]["duplicate_outputs"] == 0
    got = results(bucket, batch_id)
    assert len(got) == 200 and all(r["status"] == "succeeded" for r in got.values())
    lines = [
        orjson.loads(l)
        for l in (Path(stack.logs) / "split.log").read_text().splitlines()
        if l.startswith("{")
    ]
    written = [
        l for l in lines if l.get("batch_id") == batch_id and l["message"] == "results written"
    ]
    assert written and sum(l["retries"] for l in written) > 0, "the proxy's 503s were not met"


def test_split_checkpoints_and_continues_in_new_tasks(stack, bucket, inbox, vertex):
    """A split task that reaches its time budget checkpoints and publishes its continuation; the
    chain of tasks ends with exact results and one message (budget 50 ms here, so it happens many
    times)."""
    from dropbatch.local import stack as local

    vertex.faults(fail_rate=0.1, fail_code=400, lines_per_file=700)
    n = 240  # 6 parts of 40 (conftest.STACK_ENV), each split over several tasks
    local.restart_function("split", kill_signal=15, DROPBATCH_SPLIT_BUDGET_S="0.05")
    try:
        _, batch_id = drop(bucket, "checkpointed.jsonl", [req(f"c{i}") for i in range(n)])
        done = inbox.wait_for(batch_id, ["succeeded", "partially_succeeded"], timeout=180)
    finally:
        local.restart_function("split", kill_signal=15)
    c = done["counts"]
    assert (
        c["total"] == n
        and c["succeeded"] + c["failed"] == n
        and c["failed"] > 0
        and c["missing"] == 0
    )
    assert c["duplicate_outputs"] == 0 and c["unmatched_outputs"] == 0
    got = results(bucket, batch_id)
    assert len(got) == n and sum(r["status"] == "failed" for r in got.values()) == c["failed"]
    assert len(errors_of(bucket, batch_id)) == c["failed"]
    lines = [
        orjson.loads(l)
        for l in (Path(stack.logs) / "split.log").read_text().splitlines()
        if l.startswith("{")
    ]
    checkpoints = [
        l
        for l in lines
        if l.get("batch_id") == batch_id and l["message"].startswith("split checkpointed")
    ]
    assert len(checkpoints) >= 3
    assert len(terminal_messages(bucket, inbox, batch_id)) == 1


def test_submit_killed_after_claim_then_redelivered(stack, bucket, inbox, vertex):
    """SIGKILL the submit function while it validates and stages (after the claim, before any
    create): the redelivered event (or the sweep) takes the claim over once its lease runs out; one
    job per part."""
    from dropbatch.local import stack as local

    n = 2000  # 50 parts of 40 (conftest.STACK_ENV): staging them takes long enough to be killed in
    local.restart_function("submit", kill_signal=15, DROPBATCH_CLAIM_LEASE_S="3")
    try:
        _, batch_id = drop(
            bucket, "killed-submit.jsonl", [req(f"s{i} " + "pad " * 50) for i in range(n)]
        )
        ledger = bucket.blob(f"batches/{batch_id}/ledger.json")
        deadline = time.monotonic() + 30
        while not ledger.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert jobs_of(stack, batch_id) == [], "killed before any job was created"
        # SIGKILL mid-validation or staging
        local.restart_function("submit", DROPBATCH_CLAIM_LEASE_S="3")
        assert orjson.loads(ledger.download_as_bytes())["state"] == "claimed"
        done = inbox.wait_for(batch_id, ["succeeded"], timeout=240)
    finally:
        local.restart_function("submit", kill_signal=15)
    assert done["counts"]["total"] == n and done["counts"]["succeeded"] == n
    manifest = read_json(bucket, f"batches/{batch_id}/manifest.json")
    assert len(manifest["jobs"]) == 50
    assert len(jobs_of(stack, batch_id)) == 50, "one job per part, none twice"
    assert [m["state"] for m in inbox.of(batch_id)].count("submitted") == 1


def test_a_create_whose_answer_was_lost_makes_one_job_under_list_lag(stack, bucket, inbox, vertex):
    """The create made the job but its answer was lost (503), and Vertex's list does not show new
    jobs at once: the next try waits for the list to settle (DROPBATCH_LIST_SETTLE_S), finds the job
    by its labels, and creates none. Ten deliveries of the upload change nothing."""
    from google.cloud import pubsub_v1

    vertex.faults(create_lost=1, list_lag_s=2)
    blob, batch_id = drop(bucket, "lost-create.jsonl", [req("a"), req("b")])
    publisher = pubsub_v1.PublisherClient()
    topic = publisher.topic_path(stack.project, stack.topics["uploads"])
    for _ in range(10):
        publisher.publish(
            topic,
            b"{}",
            bucketId=stack.bucket,
            objectId=blob.name,
            eventType="OBJECT_FINALIZE",
            objectGeneration=str(blob.generation),
            payloadFormat="JSON_API_V1",
        ).result()
    done = inbox.wait_for(batch_id, "succeeded", timeout=90)
    assert done["counts"]["succeeded"] == 2
    assert vertex.stats()["calls"]["create"] == 1, "the lost create's job was found, not made again"
    assert len(jobs_of(stack, batch_id)) == 1


@pytest.mark.parametrize("gz", [False, True])
def test_submit_checkpoints_and_continues_in_new_calls(stack, bucket, inbox, vertex, gz):
    """One streaming pass that stops before its budget (10 ms here), saves where it is, and goes on
    in a new call from that line: plain files by seeking, gzip files by decompressing up to it;
    exact results."""
    import gzip

    from dropbatch.keys import batch_id as derive
    from dropbatch.local import stack as local

    n = 600  # 15 parts of 40 (conftest.STACK_ENV)
    lines = [
        req(f"c{i} " + "pad " * 20) if i % 7 else {"key": f"k{i}", **req(f"keyed {i}")}
        for i in range(n)
    ]
    data = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    local.restart_function("submit", kill_signal=15, DROPBATCH_SUBMIT_BUDGET_S="0.01")
    try:
        blob = bucket.blob(f"incoming/continued{'.jsonl.gz' if gz else '.jsonl'}")
        blob.upload_from_string(gzip.compress(data) if gz else data)
        batch_id = derive(bucket.name, blob.name, blob.generation)
        done = inbox.wait_for(batch_id, "succeeded", timeout=240)
    finally:
        local.restart_function("submit", kill_signal=15)
    assert done["counts"]["total"] == n and done["counts"]["succeeded"] == n
    ledger = read_json(bucket, f"batches/{batch_id}/ledger.json")
    assert ledger["progress"]["continuations"] >= 3 and len(ledger["parts"]) == 15
    got = [
        orjson.loads(l)
        for l in bucket.blob(f"batches/{batch_id}/results.jsonl").download_as_bytes().splitlines()
    ]
    assert [r["key"] for r in got] == [
        line.get("key") or f"{i + 1:0{len(str(n))}d}" for i, line in enumerate(lines)
    ]
    assert [m["state"] for m in inbox.of(batch_id)].count("submitted") == 1
    assert not [
        b.name for b in bucket.list_blobs(prefix=f"batches/{batch_id}/input/") if ".c0" in b.name
    ], "chunks are composed into parts and deleted"
