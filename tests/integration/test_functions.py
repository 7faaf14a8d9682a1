"""The real functions, in process through functions-framework's test client, fed real CloudEvents.

They use the local stack's emulators. Their trigger prefix here is `manual/`, which the stack's own
notifications do not cover, so every delivery below is one this test made.
"""

from __future__ import annotations

import base64
import concurrent.futures
import datetime as dt
from pathlib import Path

import orjson
import pytest
from conftest import jobs_of, req
from dropbatch import batch
from dropbatch.documents import plain

pytestmark = pytest.mark.stack
MAIN = str(Path(__file__).resolve().parents[2] / "functions" / "main.py")


@pytest.fixture(scope="module")
def functions(stack):
    import os

    from dropbatch.config import get_config
    from functions_framework import create_app

    os.environ["DROPBATCH_INCOMING_PREFIX"] = "manual/"
    get_config.cache_clear()
    apps = {
        name: create_app(name, MAIN, "cloudevent").test_client()
        for name in ("submit_batch", "on_job_event", "split_results")
    }
    yield apps
    os.environ.pop("DROPBATCH_INCOMING_PREFIX")
    get_config.cache_clear()


def finalized(bucket, name, generation, when=None):
    """An Eventarc google.cloud.storage.object.v1.finalized CloudEvent (binary mode)."""
    headers = {
        "ce-id": f"evt-{generation}",
        "ce-specversion": "1.0",
        "ce-source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
        "ce-type": "google.cloud.storage.object.v1.finalized",
        "ce-subject": f"objects/{name}",
        "ce-time": (when or dt.datetime.now(dt.UTC)).isoformat().replace("+00:00", "Z"),
        "Content-Type": "application/json",
    }
    body = {
        "bucket": bucket,
        "name": name,
        "generation": str(generation),
        "contentType": "application/jsonl",
    }
    return headers, orjson.dumps(body)


def notification(bucket, name, generation, event_type="OBJECT_FINALIZE"):
    """A GCS notification on Pub/Sub as a push subscription delivers it (raw push body)."""
    attrs = {
        "bucketId": bucket,
        "objectId": name,
        "objectGeneration": str(generation),
        "eventType": event_type,
        "payloadFormat": "JSON_API_V1",
    }
    body = {
        "message": {
            "attributes": attrs,
            "data": base64.b64encode(b"{}").decode(),
            "messageId": "m1",
            "publishTime": dt.datetime.now(dt.UTC).isoformat(),
        },
        "subscription": "projects/p/subscriptions/s",
    }
    return {"Content-Type": "application/json"}, orjson.dumps(body)


def upload(bucket, name, lines):
    blob = bucket.blob(name)
    blob.upload_from_string(b"".join(orjson.dumps(l) + b"\n" for l in lines))
    return blob


def ledger_of(bucket, blob):
    from dropbatch.keys import batch_id

    bid = batch_id(bucket.name, blob.name, blob.generation)
    doc = bucket.blob(f"batches/{bid}/ledger.json")
    return bid, (orjson.loads(doc.download_as_bytes()) if doc.exists() else None)


def test_ignored_events_create_nothing(stack, bucket, functions, capfd):
    submit = functions["submit_batch"]
    blob = upload(bucket, "manual/ignored.jsonl", [req("x")])
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    cases = [
        finalized("another-bucket", blob.name, blob.generation),
        finalized(bucket.name, "elsewhere/a.jsonl", 5),
        finalized(bucket.name, "manual/folder/", 5),
        finalized(bucket.name, blob.name, blob.generation, old),
        finalized(bucket.name, "batches/x/results/manual/a.jsonl", 5),
        notification(bucket.name, blob.name, blob.generation, "OBJECT_DELETE"),
    ]
    capfd.readouterr()
    reasons = []
    for headers, body in cases:
        r = submit.post("/", headers=headers, data=body)
        assert r.status_code == 200, r.data
        lines = [orjson.loads(l) for l in capfd.readouterr().out.splitlines() if l.startswith("{")]
        ignored = [l for l in lines if l["message"].startswith("ignored: ")]
        assert len(ignored) == 1 and ignored[0]["severity"] == "INFO", lines
        reasons.append(ignored[0]["message"])
    assert ledger_of(bucket, blob)[1] is None
    assert (
        "another-bucket" in reasons[0]
        and "prefix" in reasons[1]
        and "folder placeholder" in reasons[2]
    )
    assert "old" in reasons[3] and "prefix" in reasons[4] and "deleted events" in reasons[5]


def test_eventarc_event_submits_and_the_stack_finishes(stack, bucket, functions, inbox, vertex):
    blob = upload(bucket, "manual/eventarc.jsonl", [req("one"), req("two")])
    r = functions["submit_batch"].post(
        "/",
        headers=finalized(bucket.name, blob.name, blob.generation)[0],
        data=finalized(bucket.name, blob.name, blob.generation)[1],
    )
    assert r.status_code == 200, r.data
    batch_id, ledger = ledger_of(bucket, blob)
    assert (
        ledger["state"] == "submitted" and len(ledger["parts"]) == 1 and ledger["parts"][0]["job"]
    )
    assert inbox.wait_for(batch_id, "succeeded")["counts"]["succeeded"] == 2


def test_eleven_concurrent_deliveries_both_shapes_one_job(stack, bucket, functions, inbox, vertex):
    vertex.faults(queued_s=1)
    blob = upload(bucket, "manual/eleven.jsonl", [req(f"q{i}") for i in range(7)])
    events = [
        finalized(bucket.name, blob.name, blob.generation)
        if i % 2
        else notification(bucket.name, blob.name, blob.generation)
        for i in range(11)
    ]
    submit = functions["submit_batch"]

    def deliver(event):  # as the platform does: retry until acknowledged
        for _ in range(200):
            r = submit.post("/", headers=event[0], data=event[1])
            if r.status_code == 200:
                return True
            import time

            time.sleep(0.1)
        return False

    with concurrent.futures.ThreadPoolExecutor(11) as pool:
        assert all(pool.map(deliver, events))
    batch_id, ledger = ledger_of(bucket, blob)
    assert inbox.wait_for(batch_id, "succeeded")["counts"]["succeeded"] == 7
    assert len(jobs_of(stack, batch_id)) == 1
    assert [m["state"] for m in inbox.of(batch_id)].count("submitted") == 1


def test_killed_after_claim_then_redelivered(stack, bucket, functions, inbox, vertex, capfd):
    """An execution claimed the batch and died before creating the job: its lease runs out, a retry
    finishes. The batch is kept off the active index until the retry, so the sweep cannot finish it
    in its place."""
    from dropbatch.keys import batch_id as derive

    blob = upload(bucket, "manual/killed.jsonl", [req("a"), req("b"), req("c")])
    bid = derive(bucket.name, blob.name, blob.generation)
    # The lease outlives any sweep tick that listed the batch before it left the index. With a 2 s
    # lease a fresh-clone run saw another execution take the batch over before the redelivery below:
    # most likely such a tick, still going through other batches, read this ledger after the lease
    # ran out and asked the deployed submit function to go on.
    lease_s = 8
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=lease_s)
    bucket.blob(f"batches/_active/{bid}").upload_from_string(b'{"since": "2026-01-01T00:00:00Z"}')
    dead = batch.new_claim(
        bid,
        f"gs://{bucket.name}/{blob.name}",
        blob.name,
        blob.generation,
        "dead-execution",
        lease_s,
    )
    bucket.blob(f"batches/{bid}/ledger.json").upload_from_string(
        orjson.dumps(dead.set(lease_until=soon.isoformat()), default=plain), if_generation_match=0
    )
    headers, body = finalized(bucket.name, blob.name, blob.generation)
    first = functions["submit_batch"].post("/", headers=headers, data=body)
    assert first.status_code == 500  # claim still held: the platform retries later
    # out of the sweep's sight: only the redelivery can resume
    bucket.blob(f"batches/_active/{bid}").delete()
    import time

    while dt.datetime.now(dt.UTC) <= soon:  # until the dead execution's lease has run out
        time.sleep(0.05)
    capfd.readouterr()
    again = functions["submit_batch"].post("/", headers=headers, data=body)
    assert again.status_code == 200, again.data
    logged = [
        orjson.loads(line)["message"]
        for line in capfd.readouterr().out.splitlines()
        if line.startswith("{")
    ]
    assert "resuming a half-finished claim" in logged and "job created" in logged, logged
    assert inbox.wait_for(bid, "succeeded")["counts"]["succeeded"] == 3
    assert len(jobs_of(stack, bid)) == 1


def test_a_generation_replaced_before_it_was_read_is_rejected_naming_the_newer(
    stack, bucket, functions, inbox, vertex
):
    """Two uploads of one name: each is its own batch; the first, read after it was replaced, never
    runs the second's content and says so."""
    from dropbatch.keys import batch_id as derive

    first = upload(bucket, "manual/twice.jsonl", [req("first")])
    old = first.generation
    second = upload(bucket, "manual/twice.jsonl", [req("second a"), req("second b")])
    for generation in (old, second.generation):
        r = functions["submit_batch"].post(
            "/",
            headers=finalized(bucket.name, first.name, generation)[0],
            data=finalized(bucket.name, first.name, generation)[1],
        )
        assert r.status_code == 200, r.data
    old_id, new_id = (
        derive(bucket.name, first.name, old),
        derive(bucket.name, first.name, second.generation),
    )
    msg = inbox.wait_for(old_id, "rejected")
    assert "replaced" in msg["error"] and f"generation {second.generation}" in msg["error"]
    assert not list(bucket.list_blobs(prefix=f"batches/{old_id}/input/"))
    assert inbox.wait_for(new_id, "succeeded")["counts"]["succeeded"] == 2


def test_cancel_before_any_job_ends_the_batch_without_reading_the_file(
    stack, bucket, functions, inbox, vertex, capfd
):
    """`dropbatch cancel` stops a batch in any state: a claim whose owner died (a file that kills
    its reader) ends `cancelled` at the next delivery, and the file is not read again."""
    import subprocess
    import sys

    from dropbatch.keys import batch_id as derive

    blob = upload(bucket, "manual/cancel-early.jsonl", [req("a")])
    bid = derive(bucket.name, blob.name, blob.generation)
    dead = batch.new_claim(
        bid,
        f"gs://{bucket.name}/{blob.name}",
        blob.name,
        blob.generation,
        "dead-execution",
        0,
        at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )
    bucket.blob(f"batches/{bid}/ledger.json").upload_from_string(
        orjson.dumps(dead, default=plain), if_generation_match=0
    )
    out = subprocess.run(
        [sys.executable, "-m", "dropbatch", "cancel", bid],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, **stack.client_env()},
        timeout=60,
    )
    assert out.returncode == 0 and "before any job" in out.stdout, out.stderr
    capfd.readouterr()
    headers, body = finalized(bucket.name, blob.name, blob.generation)
    assert functions["submit_batch"].post("/", headers=headers, data=body).status_code == 200
    logged = [
        orjson.loads(line)["message"]
        for line in capfd.readouterr().out.splitlines()
        if line.startswith("{")
    ]
    assert "validated" not in logged
    assert inbox.wait_for(bid, "cancelled")["error"] == "cancelled before any job was created"
    ledger = orjson.loads(bucket.blob(f"batches/{bid}/ledger.json").download_as_bytes())
    assert (
        ledger["state"] == "done" and ledger["final_state"] == "cancelled" and ledger["claims"] == 2
    )


def test_sweep_and_split_functions_accept_their_events(stack, bucket, functions, capfd):
    tick = {
        "message": {"data": base64.b64encode(b'{"source": "test"}').decode(), "messageId": "t1"},
        "subscription": "projects/p/subscriptions/sweep",
    }
    r = functions["on_job_event"].post("/", json=tick)
    assert r.status_code == 200, r.data
    task = {
        "message": {
            "data": base64.b64encode(
                orjson.dumps({"batch_id": "no-such-batch-0000000000", "part": 0, "round": 0})
            ).decode(),
            "messageId": "s1",
        },
        "subscription": "projects/p/subscriptions/split",
    }
    r = functions["split_results"].post("/", json=task)
    assert r.status_code == 200, r.data
    for bad in (
        {"batch_id": "../../etc", "part": 0},
        {"batch_id": "ok-0000000000", "part": "0"},
        [1],
    ):
        task["message"]["data"] = base64.b64encode(orjson.dumps(bad)).decode()
        capfd.readouterr()
        r = functions["split_results"].post("/", json=task)
        # permanent: acknowledged with a log line, never retried
        assert r.status_code == 200, r.data
        logged = [
            orjson.loads(line)
            for line in capfd.readouterr().out.splitlines()
            if line.startswith("{")
        ]
        assert [(e["severity"], e["message"]) for e in logged] in (
            [("WARNING", "ignored: not a split task")],
            [("ERROR", "ignored: the Pub/Sub message is not a JSON object")],
        )
        assert not list(bucket.list_blobs(prefix="batches/.."))


def test_request_text_and_inline_data_never_reach_logs(
    stack, bucket, functions, inbox, vertex, capfd
):
    secret, blob_data = "SECRET-PROMPT-7f3a9c", base64.b64encode(b"SECRET-BYTES-41d2" * 4).decode()
    line = {
        "key": "s",
        "request": {
            "contents": [
                {
                    "role": "user",
                    "parts": [
                        {"text": secret},
                        {"inlineData": {"mimeType": "image/png", "data": blob_data}},
                    ],
                }
            ]
        },
    }
    blob = upload(bucket, "manual/secret.jsonl", [line, req("x")])
    capfd.readouterr()
    r = functions["submit_batch"].post(
        "/",
        headers=finalized(bucket.name, blob.name, blob.generation)[0],
        data=finalized(bucket.name, blob.name, blob.generation)[1],
    )
    assert r.status_code == 200
    batch_id, _ = ledger_of(bucket, blob)
    message = inbox.wait_for(batch_id, "succeeded")
    out = capfd.readouterr()
    assert batch_id in out.out
    logs = (
        out.out
        + out.err
        + "".join(
            (Path(stack.logs) / f"{n}.log").read_text() for n in ("submit", "status", "split")
        )
    )
    assert secret not in logs and blob_data not in logs and "SECRET-BYTES" not in logs
    assert (
        secret not in orjson.dumps(inbox.of(batch_id)).decode()
        and message["counts"]["succeeded"] == 2
    )


def queued_message(stack, batch_id: str, state: str, message_state: str, counts: dict):
    """A Store as deployed (a 60 s outbox retry period: the test stack's 2 s would expire while a
    test runs) and a batch in `state` whose `message_state` message was just queued, not yet sent.
    Not in the active index: the stack's sweep stays out of it."""
    import dataclasses

    from dropbatch import batch
    from dropbatch.events import now
    from dropbatch.store import Store

    store = Store(dataclasses.replace(stack.config(), outbox_retry_s=60.0))
    message = {
        "schema": "dropbatch.batch.v1",
        "batch_id": batch_id,
        "state": message_state,
        "counts": counts,
    }
    store.create_json(
        store.ledger_path(batch_id),
        batch.new_claim(batch_id, "gs://b/o.jsonl", "o.jsonl", 1, "me", 60),
    )
    store.update_ledger(
        batch_id,
        lambda d: d.set(
            state=state,
            notified={"terminal" if message_state != "submitted" else "submitted": now()},
            outbox=[{"message": message, "tried": now()}],
        ),
    )
    return store, message


def test_a_second_finisher_leaves_a_fresh_message_to_the_execution_sending_it(stack, bucket, inbox):
    """Under load (a full `make test` on 2 cores) a split task's finish found the batch already
    ended with its terminal message queued, and published it while the execution that queued it
    was publishing it too: two terminal messages. A message younger than DROPBATCH_OUTBOX_RETRY_S
    is its owner's to send (as the sweep already waited); an older one is delivered once."""
    from dropbatch import batch, finish

    batch_id = "finisher-test-5555555555"
    counts = {"total": 1, "succeeded": 1, "failed": 0}
    store, message = queued_message(stack, batch_id, batch.DONE, "succeeded", counts)
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        list(pool.map(lambda _: finish.finalize(store, batch_id), range(10)))
    inbox.pull(timeout=3)
    assert inbox.of(batch_id) == []
    assert store.read_ledger(batch_id)[0].outbox[0]["message"] == message
    # its owner died: once the message is older than the retry period, a finisher delivers it
    store.update_ledger(batch_id, lambda d: d.outbox[0].update(tried="2020-01-01T00:00:00Z"))
    for _ in range(10):
        finish.finalize(store, batch_id)
    inbox.wait_for(batch_id, ["succeeded"], timeout=30)
    inbox.pull(timeout=2)
    assert [m["state"] for m in inbox.of(batch_id)] == ["succeeded"]
    assert store.read_ledger(batch_id)[0].outbox == []


def test_a_second_submitter_leaves_a_fresh_submitted_message_to_the_execution_sending_it(
    stack, bucket, inbox
):
    """A submission killed after its claim and redelivered ran submit_parts twice at once: the
    execution that lost the move to `submitted` published the message the winner had just queued
    and was publishing (two `submitted` messages in test_submit_killed_after_claim_then_redelivered
    on a fresh clone). Only the execution that queued it sends it at once; the others leave it to
    it for DROPBATCH_OUTBOX_RETRY_S."""
    from dropbatch import batch, jobs

    batch_id = "submitter-test-6666666666"
    store, message = queued_message(stack, batch_id, batch.SUBMITTED, "submitted", {"total": 1})
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        list(pool.map(lambda _: jobs.submit_parts(store, batch_id), range(10)))
    inbox.pull(timeout=3)
    assert inbox.of(batch_id) == []
    assert store.read_ledger(batch_id)[0].outbox[0]["message"] == message
