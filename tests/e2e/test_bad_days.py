"""Bad days on the local stack (issue: big files and bad days): poison values, publishing that keeps
failing, names that are not batch files, a file replaced before it was read, a job that vanishes, a
job refused halfway. Each test asserts the end state and that the stack keeps working."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
import requests
from conftest import drop, read_json, req, settled

pytestmark = pytest.mark.stack


def log_lines(stack, name):
    return [
        orjson.loads(l)
        for l in (Path(stack.logs) / f"{name}.log").read_text().splitlines()
        if l.startswith("{")
    ]


def test_poison_values_give_one_small_message_that_quotes_nothing(stack, bucket, inbox, vertex):
    role = "R" * 8_000_000
    sentence = "My database password is hunter2 and it must never leak"
    lines = [
        {"request": {"contents": [{"role": role, "parts": [{"text": "hi"}]}]}},
        {"request": {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], sentence: 1}},
        {
            "key": ["secret-key-word", "another"],
            "request": {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
        },
    ]
    _, batch_id = drop(bucket, "poison.jsonl", lines)
    messages = settled(bucket, inbox, batch_id, timeout=120)
    assert [m["state"] for m in messages] == ["rejected"]
    raw = orjson.dumps(messages[0])
    assert (
        len(raw) < 16_000
        and b"RRRR" not in raw
        and b"hunter2" not in raw
        and b"secret-key-word" not in raw
    )
    assert "line 1: invalid_role at request.contents[0].role" in messages[0]["error"]
    report = bucket.blob(f"batches/{batch_id}/report.json").download_as_bytes()
    assert len(report) < 20_000 and b"clipped" in report and b"secret-key-word" not in report
    assert len(bucket.blob(f"batches/{batch_id}/ledger.json").download_as_bytes()) < 20_000
    validated = [
        l
        for l in log_lines(stack, "submit")
        if l.get("batch_id") == batch_id and l["message"] == "validated"
    ]
    assert len(validated) == 1, "a rejected file is never validated again"
    _, after = drop(bucket, "after-poison.jsonl", [req("still working")])
    assert inbox.wait_for(after, "succeeded")["counts"]["succeeded"] == 1


def test_a_topic_that_refuses_every_message_ends_the_batch_anyway(stack, bucket, inbox, vertex):
    from dropbatch import notify
    from dropbatch.local import stack as local

    for name in ("submit", "status"):
        local.restart_function(name, kill_signal=15, DROPBATCH_NOTIFICATIONS_TOPIC="no-such-topic")
    try:
        _, batch_id = drop(bucket, "unheard.jsonl", [b"{broken"])
        ledger, path = {}, f"batches/{batch_id}/ledger.json"
        for _ in range(300):
            ledger = read_json(bucket, path) if bucket.blob(path).exists() else {}
            if (
                ledger.get("undelivered")
                and not bucket.blob(f"batches/_active/{batch_id}").exists()
            ):
                break
            time.sleep(0.2)
    finally:
        for name in ("submit", "status"):
            local.restart_function(name, kill_signal=15)
    assert ledger["state"] == "rejected" and not ledger["outbox"]
    assert [u["state"] for u in ledger["undelivered"]] == ["rejected"]
    given_up = [
        l
        for name in ("submit", "status")
        for l in log_lines(stack, name)
        if l.get("batch_id") == batch_id and l["message"] == "message given up"
    ]
    assert len(given_up) == 1 and given_up[0]["severity"] == "ERROR"
    assert given_up[0]["attempts"] == notify.MAX_PUBLISH_ATTEMPTS
    validated = [
        l
        for l in log_lines(stack, "submit")
        if l.get("batch_id") == batch_id and l["message"] == "validated"
    ]
    assert len(validated) == 1


def test_every_upload_is_answered(stack, bucket, inbox, vertex):
    from dropbatch.keys import batch_id as derive

    good = b"".join(orjson.dumps(req(f"u{i}")) + b"\n" for i in range(2))
    ids = {}
    for name in ("requests.json", "data.csv", "picture.png", "UPPER.JSONL", "Mixed.JsonL.GZ"):
        blob = bucket.blob(f"incoming/{name}")
        blob.upload_from_string(
            __import__("gzip").compress(good) if name.lower().endswith(".gz") else good
        )
        ids[name] = derive(bucket.name, blob.name, blob.generation)
    placeholder = bucket.blob("incoming/folder/")
    placeholder.upload_from_string(b"")
    for name in ("requests.json", "data.csv", "picture.png"):
        msg = inbox.wait_for(ids[name], "rejected")
        assert (
            ".jsonl or .jsonl.gz"
            in read_json(bucket, f"batches/{ids[name]}/report.json")["errors"][0]["message"]
        )
        assert "unsupported_name" in msg["error"]
    for name in ("UPPER.JSONL", "Mixed.JsonL.GZ"):
        assert inbox.wait_for(ids[name], "succeeded")["counts"]["succeeded"] == 2
    folder_id = derive(bucket.name, placeholder.name, placeholder.generation)
    assert not bucket.blob(f"batches/{folder_id}/ledger.json").exists()


def test_a_job_deleted_behind_our_back_ends_the_batch(stack, bucket, inbox, vertex):
    """A job that disappears (404 on get) ends its batch: what it had written is split and
    delivered, the rest is missing and not retried; `dropbatch cancel` says the job is gone instead
    of failing on a raw 404."""
    import subprocess
    import sys

    vertex.faults(running_s=30, lines_per_file=1)
    _, batch_id = drop(bucket, "vanishing.jsonl", [req(f"v{i}") for i in range(6)])
    inbox.wait_for(batch_id, "submitted")
    deadline = time.monotonic() + 30
    while (
        not list(bucket.list_blobs(prefix=f"batches/{batch_id}/output/"))
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    job = read_json(bucket, f"batches/{batch_id}/ledger.json")["parts"][0]["job"]
    requests.post(
        f"{stack.vertex}/_emulator/jobs/{job.rsplit('/', 1)[-1]}:forget"
    ).raise_for_status()
    out = subprocess.run(
        [sys.executable, "-m", "dropbatch", "cancel", batch_id],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, **stack.client_env()},
        timeout=60,
    )
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    done = inbox.wait_for(batch_id, ["failed", "cancelled"], timeout=60)
    assert "can no longer read the job" in done["error"] or done["state"] == "cancelled"
    c = done["counts"]
    assert c["total"] == 6 and c["succeeded"] >= 1 and c["missing"] >= 1, (
        "what was written is delivered"
    )
    manifest = read_json(bucket, f"batches/{batch_id}/manifest.json")
    assert len(manifest["rounds"]) == 1, "a lost job's requests are not retried"
    lines = bucket.blob(f"batches/{batch_id}/results.jsonl").download_as_bytes().splitlines()
    assert sorted(orjson.loads(l)["status"] for l in lines).count("succeeded") == c["succeeded"]


def test_a_job_refused_halfway_leaves_the_others_running(stack, bucket, inbox, vertex):
    # 100 requests: parts of 40, 40, 20; the second is refused
    vertex.faults(create_errors=[0, 400, 0])
    _, batch_id = drop(bucket, "halfway.jsonl", [req(f"h{i}") for i in range(100)])
    done = inbox.wait_for(batch_id, "failed", timeout=90)
    c = done["counts"]
    assert (c["total"], c["succeeded"], c["missing"]) == (100, 60, 40)
    manifest = read_json(bucket, f"batches/{batch_id}/manifest.json")
    assert [bool(j["name"]) for j in manifest["jobs"]] == [True, False, True] and len(
        manifest["rounds"]
    ) == 1
    got = [
        orjson.loads(l)
        for l in bucket.blob(f"batches/{batch_id}/results.jsonl").download_as_bytes().splitlines()
    ]
    assert [r["status"] for r in got] == ["succeeded"] * 40 + ["missing"] * 40 + ["succeeded"] * 20


def test_a_job_past_its_deadline_is_reported_stalled(stack, bucket, inbox, vertex):
    from dropbatch import sweep
    from dropbatch.events import age_s
    from dropbatch.store import Store

    vertex.faults(queued_s=60)
    _, batch_id = drop(bucket, "slow.jsonl", [req("s")])
    inbox.wait_for(batch_id, "submitted")
    store = Store(stack.config(job_deadline_s=1))
    while age_s(store.read_ledger(batch_id)[0].parts[0].created) <= 1.05:  # past the deadline
        time.sleep(0.05)
    for _ in range(3):  # reported once, however many sweeps see it
        sweep.advance(store, batch_id)
    msg = inbox.wait_for(batch_id, "stalled")
    assert "JOB_STATE_" in msg["error"] and "after 1 s" in msg["error"]
    time.sleep(1)
    inbox.pull()
    assert [m["state"] for m in inbox.of(batch_id)].count("stalled") == 1
    ledger = read_json(bucket, f"batches/{batch_id}/ledger.json")
    assert ledger["parts"][0]["stalled"]
    vertex.faults(queued_s=0.1)
