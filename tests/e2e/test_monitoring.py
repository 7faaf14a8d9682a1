"""The log-based metrics of infra/monitoring.tf against the lines the functions really write:
batches run on the local stack, their functions' stdout is read back as Cloud Logging would store it
(monitoring_checks.entry), and each metric's whole filter must match lines of that batch, with
values and labels that agree with the manifest."""

from __future__ import annotations

import time
from pathlib import Path

import monitoring_checks as checks
import orjson
import pytest
from conftest import drop, read_json, req

pytestmark = pytest.mark.stack
SERVICES = {"submit": "dropbatch-submit", "status": "dropbatch-status", "split": "dropbatch-split"}


@pytest.fixture
def log_marks(stack):
    """Where each function's log ends now: the test reads only what was written after."""
    return {name: (Path(stack.logs) / f"{name}.log").stat().st_size for name in SERVICES}


def entries(stack, marks: dict, batch_id: str) -> list[dict]:
    out = []
    for name, service in SERVICES.items():
        with open(Path(stack.logs) / f"{name}.log", "rb") as f:
            f.seek(marks[name])
            for raw in f:
                if raw.startswith(b"{"):
                    line = orjson.loads(raw)
                    if line.get("batch_id") == batch_id:
                        out.append(checks.entry(line, service))
    return out


def counted(metrics: dict, name: str, found: list[dict]) -> list[dict]:
    """The entries metric `name` counts, each with its value and labels extracted (all of them
    present)."""
    m = metrics[name]
    hits = [e for e in found if checks.matches(m["filter"], e)]
    out = []
    for e in hits:
        labels = {k: checks.extract(x, e) for k, x in m["label_extractors"].items()}
        assert None not in labels.values(), (name, labels, e)
        value = checks.extract(m["value_extractor"], e) if checks.get(m, "value_extractor") else 1
        assert isinstance(value, (int, float)) and not isinstance(value, bool), (name, value)
        out.append({"value": value, **labels})
    return out


def test_each_metric_counts_what_the_batch_did(stack, bucket, inbox, vertex, log_marks):
    metrics = checks.evaluate()["metrics"]
    vertex.faults(fail_rate=0.4, fail_code=429, thinking=True)
    _, batch_id = drop(bucket, "metrics.jsonl", [req(f"count me {i}") for i in range(30)])
    done = inbox.wait_for(batch_id, ["succeeded", "partially_succeeded", "failed"], timeout=120)
    manifest = read_json(bucket, f"batches/{batch_id}/manifest.json")
    deadline = time.monotonic() + 10  # the finisher's last lines are written after the message
    found = entries(stack, log_marks, batch_id)
    while not any(e["jsonPayload"].get("event") == "tokens" for e in found):
        assert time.monotonic() < deadline, "no tokens lines"
        time.sleep(0.1)
        found = entries(stack, log_marks, batch_id)

    ended = counted(metrics, "batches_ended", found)
    assert ended == [{"value": 1, "state": done["state"], "model": "gemini-2.5-flash"}]
    requests = counted(metrics, "requests", found)
    assert sum(r["value"] for r in requests) == 30
    assert (
        sum(r["value"] for r in requests if r["status"] == "succeeded")
        == done["counts"]["succeeded"]
    )
    assert {r["code"] for r in requests if r["status"] != "succeeded"} <= {"429", "missing"}
    tokens = {r["kind"]: r["value"] for r in counted(metrics, "tokens", found)}
    usage = manifest["usage"]
    assert (
        tokens
        == {
            "input": usage["prompt_tokens"],
            "output": usage["candidates_tokens"],
            "thinking": usage["thoughts_tokens"],
        }
        and usage["thoughts_tokens"] > 0
    )
    [cost] = counted(metrics, "batch_cost", found)
    assert cost["value"] == manifest["cost"]["estimated"] == done["cost"]["estimated"] > 0
    [latency] = counted(metrics, "batch_latency", found)
    assert 0 < latency["value"] < 120 and latency["state"] == done["state"]
    assert len(counted(metrics, "submit_latency", found)) == len(manifest["rounds"]) == 2
    assert len(counted(metrics, "retry_rounds", found)) == 1
    assert not counted(metrics, "batches_stalled", found) and not counted(
        metrics, "notifications_undelivered", found
    )


def test_stalls_and_jobs_past_the_queue_limit_are_counted(stack, bucket, inbox, vertex, log_marks):
    from dropbatch.local import stack as local

    metrics = checks.evaluate()["metrics"]
    # queued long enough for a sweep to see it past both limits when a full `make test` loads the
    # 2 cores (6 s was not always: a tick can take seconds then)
    vertex.faults(queued_s=15)
    local.restart_function("status", DROPBATCH_JOB_DEADLINE_S="3", DROPBATCH_QUEUE_LIMIT_S="1")
    try:
        _, batch_id = drop(bucket, "slow.jsonl", [req("slow one"), req("slow two")])
        inbox.wait_for(batch_id, "stalled", timeout=60)
        inbox.wait_for(batch_id, ["succeeded"], timeout=60)
    finally:
        local.restart_function("status")
    found = entries(stack, log_marks, batch_id)
    assert {s["stage"] for s in counted(metrics, "batches_stalled", found)} == {"job"}
    assert counted(metrics, "jobs_no_progress", found)


def test_undelivered_messages_are_counted(stack, bucket, inbox, vertex, log_marks, infra_copy):
    metrics = checks.evaluate()["metrics"]
    infra_copy(
        '''  topic    = google_pubsub_topic.notifications.name
  role     = "roles/pubsub.publisher"''',
        '''  topic    = google_pubsub_topic.notifications.name
  role     = "roles/pubsub.subscriber"''',
    )
    # running messages are tried (and refused) while the job runs
    vertex.faults(running_s=6, lines_per_file=1)
    _, batch_id = drop(bucket, "unheard.jsonl", [req(f"nobody hears this {i}") for i in range(4)])
    deadline = time.monotonic() + 120
    # each message is given up after its publish attempts (notify.py)
    while time.monotonic() < deadline:
        found = entries(stack, log_marks, batch_id)
        if "succeeded" in [
            h["state"] for h in counted(metrics, "notifications_undelivered", found)
        ]:
            break
        time.sleep(1)
    hits = counted(metrics, "notifications_undelivered", found)
    # two functions log these (submit, split): the log's order across processes is not the messages'
    # order
    assert sorted(h["state"] for h in hits if h["state"] != "running") == [
        "submitted",
        "succeeded",
    ], hits
    assert "running" in [h["state"] for h in hits], (
        "a refused running message is counted and never fails the batch"
    )
    assert counted(metrics, "batches_ended", found) == [
        {"value": 1, "state": "succeeded", "model": "gemini-2.5-flash"}
    ]
    inbox.pull()
    assert inbox.of(batch_id) == []  # nothing reached the topic: what the alert is for
