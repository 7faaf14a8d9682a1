"""The main job on the local stack: drop a file through the GCS API, read the messages a user
reads."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import orjson
import pytest
import requests
from conftest import drop, owner, read_json, req, settled
from corpus import CORPUS

pytestmark = pytest.mark.stack


def plain(lines):
    return [{k: v for k, v in line.items() if k != "key"} for line in lines]


def test_drop_a_file_get_results_and_messages(stack, bucket, inbox, vertex):
    lines = plain(CORPUS) + [req("BLOCKME now")]
    blob, batch_id = drop(bucket, "happy path.jsonl", lines)
    submitted = inbox.wait_for(batch_id, "submitted")
    assert submitted["schema"] == "dropbatch.batch.v1" and submitted["counts"] == {
        "total": len(lines)
    }
    assert submitted["_attributes"] == {"batch_id": batch_id, "state": "submitted"}
    done = inbox.wait_for(batch_id, ["succeeded", "partially_succeeded", "failed"])
    assert done["state"] == "partially_succeeded"
    assert done["counts"] == {
        "total": 12,
        "succeeded": 11,
        "failed": 1,
        "missing": 0,
        "duplicate_outputs": 0,
        "unmatched_outputs": 0,
    }
    prefix = f"batches/{batch_id}/"
    assert done["results_prefix"] == f"gs://{stack.bucket}/{prefix}results/"
    assert done["manifest"] == f"gs://{stack.bucket}/{prefix}manifest.json"
    names = sorted(b.name[len(prefix) + 8 :] for b in bucket.list_blobs(prefix=prefix + "results/"))
    assert names == [f"{i:02d}.json" for i in range(1, 13)]
    first = read_json(bucket, prefix + "results/01.json")
    assert first["status"] == "succeeded" and first["key"] == "01" and first["batch_id"] == batch_id
    assert (
        first["text"] and first["finish_reason"] == "STOP" and first["job"].startswith("projects/")
    )
    assert not any(k.startswith("dropbatch") for k in first["request"].get("labels") or {})
    blocked = read_json(bucket, prefix + "results/12.json")
    assert blocked["status"] == "failed" and blocked["error"]["code"] == "PROHIBITED_CONTENT"
    errors = [
        orjson.loads(l)
        for l in bucket.blob(prefix + "errors.jsonl").download_as_bytes().splitlines()
    ]
    assert [(e["key"], e["status"]) for e in errors] == [("12", "failed")]
    manifest = read_json(bucket, prefix + "manifest.json")
    assert (
        manifest["usage"]["total_tokens"] > 0
        and manifest["jobs"][0]["state"] == "JOB_STATE_SUCCEEDED"
    )
    ledger = read_json(bucket, prefix + "ledger.json")
    assert ledger["state"] == "done" and ledger["final_state"] == "partially_succeeded"
    staged = bucket.blob(prefix + "input/part-00000.jsonl").download_as_bytes().splitlines()
    from dropbatch.keys import line_from_labels

    labels = [orjson.loads(l)["request"]["labels"] for l in staged]
    assert [line_from_labels(l) for l in labels] == list(range(1, 13))
    assert labels[11] == {"dropbatch_l0": "c"}, (
        "line 12 in base 36, one digit a key (at most 36 values each)"
    )
    assert blob.exists(), "the user's object stays where it was"
    assert not list(bucket.list_blobs(prefix=f"batches/_active/{batch_id}"))


def test_rejected_file_keeps_object_and_names_lines(stack, bucket, inbox):
    lines = [
        req("fine"),
        b"{broken",
        {"request": {"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}},
    ]
    blob, batch_id = drop(bucket, "broken.jsonl", lines)
    msg = inbox.wait_for(batch_id, "rejected")
    assert msg["counts"] == {"total": 3, "errors": 2} and "line 2" in msg["error"]
    report = read_json(bucket, f"batches/{batch_id}/report.json")
    assert report["valid"] is False
    assert [(e["line"], e["code"]) for e in report["errors"]] == [
        (2, "invalid_json"),
        (3, "invalid_role"),
    ]
    assert msg["report"] == f"gs://{stack.bucket}/batches/{batch_id}/report.json"
    assert blob.exists() and blob.download_as_bytes().count(b"\n") == 3
    assert not list(bucket.list_blobs(prefix=f"batches/{batch_id}/input/"))


def handled(stack, batch_id: str) -> int:
    """How many deliveries of the batch's upload the submit function has answered as already
    handled."""
    with open(Path(stack.logs) / "submit.log", "rb") as f:
        return sum(
            1
            for line in f
            if line.startswith(b"{")
            and (e := orjson.loads(line)).get("batch_id") == batch_id
            and e["message"].startswith("duplicate delivery")
        )


def test_same_notification_ten_times_creates_one_job(stack, bucket, inbox, vertex):
    from google.cloud import pubsub_v1

    blob, batch_id = drop(bucket, "tenfold.jsonl", [req(f"q{i}") for i in range(5)])
    inbox.wait_for(batch_id, "submitted")
    publisher = pubsub_v1.PublisherClient()
    topic = publisher.topic_path(stack.project, stack.topics["uploads"])
    attrs = {
        "bucketId": stack.bucket,
        "objectId": blob.name,
        "objectGeneration": str(blob.generation),
        "eventType": "OBJECT_FINALIZE",
        "payloadFormat": "JSON_API_V1",
    }
    for _ in range(10):
        publisher.publish(topic, b"{}", **attrs).result()
    done = inbox.wait_for(batch_id, "succeeded")
    assert done["counts"]["succeeded"] == 5
    deadline = time.monotonic() + 30  # until the submit function has answered every one of the ten
    while handled(stack, batch_id) < 10:
        assert time.monotonic() < deadline, f"{handled(stack, batch_id)} of 10 deliveries answered"
        time.sleep(0.1)
    states = [m["state"] for m in settled(bucket, inbox, batch_id)]
    assert states.count("submitted") == 1 and states.count("succeeded") == 1, states
    jobs = (
        owner()
        .get(
            f"{stack.vertex}/v1/projects/{stack.project}/locations/us-central1/batchPredictionJobs",
            params={"filter": f'labels.dropbatch_batch="{batch_id}"'},
        )
        .json()["batchPredictionJobs"]
    )
    assert len(jobs) == 1


def test_over_limit_file_becomes_several_jobs_one_batch(stack, bucket, inbox, vertex):
    # The stack under test allows 40 requests a job (conftest.STACK_ENV).
    lines = [req(f"question {i}") for i in range(95)]
    _, batch_id = drop(bucket, "big.jsonl", lines)
    done = inbox.wait_for(batch_id, "succeeded", timeout=90)
    assert done["counts"]["total"] == 95 and done["counts"]["succeeded"] == 95
    manifest = read_json(bucket, f"batches/{batch_id}/manifest.json")
    assert [j["requests"] for j in manifest["jobs"]] == [40, 40, 15]
    assert len({j["name"] for j in manifest["jobs"]}) == 3
    results = list(bucket.list_blobs(prefix=f"batches/{batch_id}/results/"))
    assert len(results) == 95
    assert [m["state"] for m in inbox.of(batch_id) if m["state"] != "running"] == [
        "submitted",
        "succeeded",
    ]


def test_429_on_create_is_retried_without_duplicate_job(stack, bucket, inbox, vertex):
    vertex.faults(create_errors=[429, 503])
    _, batch_id = drop(bucket, "throttled.jsonl", [req("a"), req("b")])
    done = inbox.wait_for(batch_id, "succeeded", timeout=90)
    assert done["counts"]["succeeded"] == 2
    stats = vertex.stats()
    assert stats["calls"]["create"] == 3  # two refused, one created
    jobs = (
        owner()
        .get(
            f"{stack.vertex}/v1/projects/{stack.project}/locations/us-central1/batchPredictionJobs",
            params={"filter": f'labels.dropbatch_batch="{batch_id}"'},
        )
        .json()["batchPredictionJobs"]
    )
    assert len(jobs) == 1


def test_model_from_object_metadata(stack, bucket, inbox, vertex):
    _, batch_id = drop(bucket, "pro.jsonl", [req("a")], metadata={"model": "gemini-2.5-pro"})
    inbox.wait_for(batch_id, "succeeded")
    manifest = read_json(bucket, f"batches/{batch_id}/manifest.json")
    job = owner().get(f"{stack.vertex}/v1/{manifest['jobs'][0]['name']}").json()
    assert job["model"].endswith("publishers/google/models/gemini-2.5-pro")


@pytest.mark.parametrize(
    "outcome, state", [("FAILED", "failed"), ("EXPIRED", "expired"), ("CANCELLED", "cancelled")]
)
def test_failed_jobs_still_get_partial_results(stack, bucket, inbox, vertex, outcome, state):
    """A FAILED, EXPIRED or CANCELLED job leaves partial output (the emulator writes half its
    files): what it wrote is split and delivered; what it never wrote is missing (a retry round may
    try it again, except after a cancel), and every request has its line in results.jsonl."""
    vertex.faults(job_outcome=outcome, fail_rate=0.3, lines_per_file=5)
    _, batch_id = drop(bucket, f"outcome-{outcome}.jsonl", [req(f"p{i}") for i in range(30)])
    done = inbox.wait_for(batch_id, state, timeout=60)
    assert done["error"] and outcome.lower()[:6] in done["error"].lower()  # failed, expire, cancel
    c = done["counts"]
    assert (
        c["total"] == 30 and c["succeeded"] + c["failed"] + c["missing"] == 30 and c["missing"] > 0
    )
    manifest = read_json(bucket, f"batches/{batch_id}/manifest.json")
    first = [j for j in manifest["jobs"] if j["round"] == 0]
    stats = first[0]["completion_stats"]
    assert first[0]["state"] == f"JOB_STATE_{outcome}" and stats["incomplete"] > 0
    assert len(manifest["rounds"]) == (1 if outcome == "CANCELLED" else 2)
    assert len(list(bucket.list_blobs(prefix=f"batches/{batch_id}/results/"))) == 30 - c["missing"]
    lines = bucket.blob(f"batches/{batch_id}/results.jsonl").download_as_bytes().splitlines()
    assert len(lines) == 30


def test_missing_and_duplicate_outputs_are_counted(stack, bucket, inbox, vertex):
    vertex.faults(drop_rate=0.2, duplicate_rate=0.2)
    n = 100  # enough that a 20% drop and duplicate rate always shows (0.8**80 is about 2e-8)
    _, batch_id = drop(bucket, "lossy.jsonl", [req(f"p{i}") for i in range(n)])
    done = inbox.wait_for(batch_id, ["partially_succeeded", "succeeded"], timeout=60)
    c = done["counts"]
    manifest = read_json(bucket, f"batches/{batch_id}/manifest.json")
    first = [j["completion_stats"] for j in manifest["jobs"] if j["round"] == 0]
    missing_first = n - sum(int(s["successful"]) + int(s["failed"]) for s in first)
    assert missing_first > 0 and c["duplicate_outputs"] > 0
    # The missing ones were retried once: what is still missing after the retry round is listed.
    assert manifest["rounds"][1]["requests"] == missing_first and c["missing"] <= missing_first
    assert (
        c["succeeded"] + c["missing"] == n
        and len(list(bucket.list_blobs(prefix=f"batches/{batch_id}/results/"))) == n - c["missing"]
    )
    errors = [
        orjson.loads(l)
        for l in bucket.blob(f"batches/{batch_id}/errors.jsonl").download_as_bytes().splitlines()
    ]
    assert sum(e["status"] == "missing" for e in errors) == c["missing"]


def test_gzip_file_and_names_with_spaces_and_unicode(stack, bucket, inbox, vertex):
    import gzip

    data = gzip.compress(b"".join(orjson.dumps(req(f"z{i}")) + b"\n" for i in range(3)))
    blob = bucket.blob("incoming/Résumé final (v2).jsonl.gz")
    blob.upload_from_string(data)
    from dropbatch.keys import batch_id as derive

    batch_id = derive(bucket.name, blob.name, blob.generation)
    assert batch_id.startswith("r-sum-final-v2-")
    done = inbox.wait_for(batch_id, "succeeded")
    assert done["counts"]["succeeded"] == 3


def test_inline_data_request(stack, bucket, inbox, vertex):
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 20).decode()
    line = {
        "key": "img",
        "request": {
            "contents": [
                {
                    "role": "user",
                    "parts": [
                        {"inlineData": {"mimeType": "image/png", "data": png}},
                        {"text": "what is it"},
                    ],
                }
            ]
        },
    }
    _, batch_id = drop(bucket, "inline.jsonl", [line])
    inbox.wait_for(batch_id, "succeeded")
    result = read_json(bucket, f"batches/{batch_id}/results/img.json")
    assert result["status"] == "succeeded"


def test_separate_results_bucket(stack, bucket, inbox, vertex):
    """With DROPBATCH_RESULTS_BUCKET, everything dropbatch writes goes there; the drop bucket only
    receives."""
    from dropbatch.local import provision
    from dropbatch.local import stack as local
    from dropbatch.store import storage_client

    results_bucket = "dropbatch-results-test"
    requests.post(
        f"{stack.storage}/storage/v1/b",
        params={"project": stack.project},
        json={"name": results_bucket},
    )
    # the grants infra/ makes with results_bucket_name
    provision.write_policy(stack, results_bucket=results_bucket)
    for name in ("submit", "status", "split"):
        local.restart_function(name, kill_signal=15, DROPBATCH_RESULTS_BUCKET=results_bucket)
    try:
        _, batch_id = drop(bucket, "elsewhere.jsonl", [req("a"), req("b")])
        done = inbox.wait_for(batch_id, "succeeded", timeout=90)
    finally:
        for name in ("submit", "status", "split"):
            local.restart_function(name, kill_signal=15)
        provision.write_policy(stack)
    other = storage_client(stack.project).bucket(results_bucket)
    assert done["results_prefix"] == f"gs://{results_bucket}/batches/{batch_id}/results/"
    assert len(list(other.list_blobs(prefix=f"batches/{batch_id}/results/"))) == 2
    assert not list(bucket.list_blobs(prefix=f"batches/{batch_id}/"))


def test_running_messages_report_progress_while_the_job_runs(stack, bucket, inbox, vertex):
    """While a job runs, `running` messages carry the round's counts so far (from Vertex's
    completion stats) and each job's stats, only when they moved, at most one per
    DROPBATCH_PROGRESS_S (3 s on the local stack); the terminal message is unchanged."""

    def partial(m):
        c = m["counts"]
        return m["state"] == "running" and 0 < c["succeeded"] < 24 and c["pending"] > 0

    # Six output files 5 s apart; once a partial count is out, the rest come fast (a loaded
    # machine may take most of the 30 s to split the first file, so the test waits on the event)
    vertex.faults(running_s=30, lines_per_file=4)
    start = time.monotonic()
    _, batch_id = drop(bucket, "progress.jsonl", [req(f"slowly {i}") for i in range(24)])
    deadline = start + 60
    while not any(partial(m) for m in inbox.of(batch_id)) and time.monotonic() < deadline:
        inbox.pull()
    vertex.faults(running_s=0.1)
    done = inbox.wait_for(batch_id, "succeeded", timeout=90)
    elapsed = time.monotonic() - start
    messages = settled(bucket, inbox, batch_id)
    running = [m for m in messages if m["state"] == "running"]
    assert running and messages.index(running[-1]) < messages.index(done), [
        m["state"] for m in messages
    ]
    assert any(partial(m) for m in running), running
    for m in running:
        c = m["counts"]
        assert (
            c["total"] == 24
            and c["succeeded"] + c["failed"] + c["pending"] == 24
            and c["round"] == 0
        )
        assert m["jobs"] and all(
            j["name"].startswith("projects/") and j["completion_stats"] for j in m["jobs"]
        )
        assert m["results_prefix"] and m["manifest"] is None
    counts = [m["counts"] for m in running]
    assert all(a != b for a, b in zip(counts, counts[1:])), (
        "a running message only when the counts moved"
    )
    assert len(running) <= elapsed / 3 + 1, "at most one per DROPBATCH_PROGRESS_S"
    assert set(done) == {
        "schema",
        "batch_id",
        "state",
        "source",
        "counts",
        "manifest",
        "results_prefix",
        "results_file",
        "report",
        "error",
        "cost",
        "_attributes",
    } | ({"results_table"} if stack.results_table else set())
