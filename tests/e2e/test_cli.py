"""The CLI against the local stack, as a user runs it: run, status, list, cancel, local status."""

from __future__ import annotations

import re
import time
from pathlib import Path

import orjson
import pytest
from conftest import drop, dropbatch, read_json, req

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parents[2]


def test_run_wait_out_json(stack, vertex, tmp_path):
    out = dropbatch(
        stack, "run", ROOT / "examples/requests.jsonl", "--out", tmp_path / "res", "--json"
    )
    assert out.returncode == 0, out.stderr
    manifest = orjson.loads(out.stdout)
    assert manifest["state"] == "succeeded" and manifest["counts"]["succeeded"] == 8
    keys = [
        orjson.loads(line)["key"]
        for line in (ROOT / "examples/requests.jsonl").read_bytes().splitlines()
    ]
    rows = [
        orjson.loads(line)
        for line in (tmp_path / "res" / "results.jsonl").read_bytes().splitlines()
    ]
    assert [r["key"] for r in rows] == keys, "results.jsonl in the file's order"
    assert not (tmp_path / "res" / "results").exists(), "per-key files only when asked"
    assert (tmp_path / "res" / "manifest.json").exists() and (
        tmp_path / "res" / "errors.jsonl"
    ).exists()
    human = dropbatch(stack, "status", manifest["batch_id"])
    assert human.returncode == 0 and "succeeded" in human.stdout
    listed = orjson.loads(dropbatch(stack, "list", "--json").stdout)
    assert listed[0]["batch_id"] == manifest["batch_id"], "newest first"
    assert [r["created"] for r in listed] == sorted((r["created"] for r in listed), reverse=True)


def test_cost_in_run_status_and_list_since(stack, vertex, tmp_path):
    out = dropbatch(stack, "run", ROOT / "examples/requests.jsonl", "--wait", "--json")
    manifest = orjson.loads(out.stdout)
    cost = manifest["cost"]
    assert cost["estimated"] > 0 and cost["online_equivalent"] == pytest.approx(
        2 * cost["estimated"], rel=1e-3
    )
    assert (
        cost["price_source"].startswith("https://cloud.google.com/")
        and cost["model"] == "gemini-2.5-flash"
    )
    human = dropbatch(stack, "status", manifest["batch_id"]).stdout
    assert f"about {cost['estimated']:.4f} USD as a batch" in human
    window = orjson.loads(dropbatch(stack, "list", "--since", "1h", "--json").stdout)
    rows = window["batches"]
    assert manifest["batch_id"] in [r["batch_id"] for r in rows]
    totals = window["totals"]
    assert totals["batches"] == len(rows) and totals["requests"] == sum(
        r["requests"] or 0 for r in rows
    )
    assert (
        totals["cost"] == pytest.approx(sum(r["cost"] or 0 for r in rows))
        and totals["cost"] >= cost["estimated"]
    )
    text = dropbatch(stack, "list", "--since", "1h").stdout
    assert f"last 1h: {totals['batches']:,} batches, {totals['requests']:,} requests" in text
    assert dropbatch(stack, "list", "--since", "yesterday").returncode == 2


def test_run_out_per_key_writes_the_bucket_objects(stack, bucket, vertex, tmp_path):
    out = dropbatch(
        stack, "run", ROOT / "examples/requests.jsonl", "--out", tmp_path / "res", "--per-key"
    )
    assert out.returncode == 0, out.stderr
    assert "results.jsonl (one line per request, in input order)" in out.stdout
    files = sorted((tmp_path / "res" / "results").glob("*.json"))
    assert len(files) == 8
    batch_id = orjson.loads(files[0].read_bytes())["batch_id"]
    for f in files:
        assert orjson.loads(f.read_bytes()) == read_json(
            bucket, f"batches/{batch_id}/results/{f.name}"
        )


def test_run_rejected_file_exits_1_with_lines(stack, vertex):
    out = dropbatch(stack, "run", ROOT / "examples/broken.jsonl")
    assert out.returncode == 1
    assert (
        "line 2: request.contents[0].role is 'assistant'" in out.stdout and "line 3:" in out.stdout
    )


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


def listed_states(stack) -> dict[str, int]:
    listed = orjson.loads(dropbatch(stack, "list", "--limit", "10000", "--json").stdout)
    states = {}
    for r in listed:
        states[r["state"]] = states.get(r["state"], 0) + 1
    return states


def test_local_status_counts_batches_backlog_and_dead_letters(stack, vertex):
    """The counts the dashboard charts, from the local stack: batches by state (as `list` has them),
    the backlog, and the dead letters, which counting leaves in place. The push subscriptions
    dead-letter as infra/ says."""
    import monitoring_checks
    from dropbatch.local.terraform import Terraform, load_terraform
    from google.cloud import pubsub_v1

    tf = load_terraform(ROOT / "infra")
    policy = Terraform(tf, {"project_id": stack.project})
    attempts = tf["resource"]["google_pubsub_subscription"]["push"]["dead_letter_policy"][0][
        "max_delivery_attempts"
    ]
    subscriber, publisher = pubsub_v1.SubscriberClient(), pubsub_v1.PublisherClient()
    for key in ("uploads", "sweep", "split"):
        sub = subscriber.get_subscription(
            subscription=f"projects/{stack.project}/subscriptions/{stack.topics[key]}-push"
        )
        assert sub.dead_letter_policy.max_delivery_attempts == int(policy.value(attempts)) == 10
        assert sub.dead_letter_policy.dead_letter_topic.endswith(
            f"/{stack.topics[key]}-dead-letter"
        )
    assert dropbatch(stack, "run", ROOT / "examples/requests.jsonl", "--wait").returncode == 0
    dead = f"projects/{stack.project}/topics/{stack.topics['split']}-dead-letter"
    for n in range(3):
        publisher.publish(dead, b"{}", batch_id=f"b-dead-{n}").result()
    try:
        for _ in range(2):  # counting twice counts the same three: they stay for a person
            out = dropbatch(stack, "local", "status")
            assert out.returncode == 0, out.stderr
            assert (
                "dead letters uploads 0, sweep 0, split 3 (batches b-dead-0, b-dead-1, b-dead-2)"
                in out.stdout
            )
        for _ in range(10):  # a batch an earlier test on this stack left in flight may move on
            states = listed_states(stack)
            out = dropbatch(stack, "local", "status")
            if listed_states(stack) == states:
                break
            time.sleep(2)
        line = next(x for x in out.stdout.splitlines() if x.strip().startswith("batches"))
        assert states.get("succeeded") and line.split(None, 1)[1] == ", ".join(
            f"{n} {s}" for s, n in sorted(states.items())
        )
        backlog = next(x for x in out.stdout.splitlines() if x.strip().startswith("backlog"))
        assert re.fullmatch(
            r"\s*backlog\s+\d+ active batches, \d+ parts waiting for a job, \d+ jobs queued, "
            r"\d+ jobs running, \d+ parts to split",
            backlog,
        ), backlog
    finally:
        hold = f"projects/{stack.project}/subscriptions/{stack.topics['split']}-dead-letter-hold"
        got = subscriber.pull(subscription=hold, max_messages=100, timeout=10)
        if got.received_messages:
            subscriber.acknowledge(
                subscription=hold, ack_ids=[m.ack_id for m in got.received_messages]
            )
    # the dashboard's dead-letter tile selects these subscriptions, and not the push ones
    tiles = orjson.loads((ROOT / "infra" / "dashboard.json").read_bytes())["mosaicLayout"]["tiles"]
    [tile] = [t["widget"] for t in tiles if t["widget"]["title"].startswith("Dead letters")]
    query = tile["xyChart"]["dataSets"][0]["timeSeriesQuery"]["timeSeriesFilter"]["filter"]
    for key in ("uploads", "sweep", "split"):
        for name, held in (
            (f"{stack.topics[key]}-dead-letter-hold", True),
            (f"{stack.topics[key]}-push", False),
        ):
            series = {
                "metric": {"type": "pubsub.googleapis.com/subscription/num_undelivered_messages"},
                "resource": {"type": "pubsub_subscription", "labels": {"subscription_id": name}},
            }
            assert monitoring_checks.matches(query, series) is held, name
