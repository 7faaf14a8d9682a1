"""Re-drops pay only for what changed (DROPBATCH_REUSE=on, reuse.py; docs/contracts.md, "Reuse"):
a request another batch in the bucket already answered is answered from that answer, with no line
sent to Vertex, and results.jsonl comes out as a fresh run's."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest
from conftest import drop, jobs_of, read_json, req

pytestmark = pytest.mark.stack

# 2,000 requests, 20 changed (the 10,000 and 100 of the issue at full size: make bench-reuse)
N = 2_000
CHANGED = set(range(7, N, 100))


@pytest.fixture
def reusing(stack):
    """The submit and split functions with reuse on, in parts of 1,000 and results.jsonl buckets of
    500 lines (not conftest's 40 and 10)."""
    from dropbatch.local import stack as local

    env = {
        "DROPBATCH_REUSE": "on",
        "DROPBATCH_MAX_JOB_REQUESTS": "1000",
        "DROPBATCH_RESULTS_BUCKET_LINES": "500",
    }
    for name in ("submit", "split"):
        local.restart_function(name, kill_signal=15, **env)
    yield
    for name in ("submit", "split"):
        local.restart_function(name, kill_signal=15)


def sent(stack, batch_id: str) -> int:
    """The requests Vertex was given for the batch: its jobs' completion stats."""
    return sum(
        int(j["completionStats"].get(k, 0))
        for j in jobs_of(stack, batch_id)
        for k in ("successfulCount", "failedCount", "incompleteCount")
    )


def results_file(bucket, batch_id: str) -> list[dict]:
    data = bucket.blob(f"batches/{batch_id}/results.jsonl").download_as_bytes()
    return [orjson.loads(line) for line in data.splitlines()]


def test_a_re_drop_sends_only_the_changed_lines(stack, bucket, inbox, vertex, reusing):
    """2,000 requests, then the same file with 20 lines changed: jobs for exactly those 20; the
    other 1,980 results are the first batch's answers, marked `reused_from`, counted `reused`, with
    the cost they spared; results.jsonl has a line per request in order, shaped as a fresh run's.
    Dropped a third time, with three of the second batch's result objects deleted: no job for the
    first round, and the three whose answers are gone go to Vertex in a retry round, not lost."""
    run = uuid.uuid4().hex[:8]  # the index lives in the bucket: this test's requests are its own
    first = [req(f"{run} question {i}") for i in range(N)]
    _, a = drop(bucket, f"reuse-{run}-a.jsonl", first)
    assert inbox.wait_for(a, "succeeded", timeout=300)["counts"]["succeeded"] == N
    assert sent(stack, a) == N

    changed = CHANGED
    second = [req(f"{run} question {i}, again") if i in changed else first[i] for i in range(N)]
    _, b = drop(bucket, f"reuse-{run}-b.jsonl", second)
    done = inbox.wait_for(b, "succeeded", timeout=300)
    assert sent(stack, b) == len(changed), "only the changed lines go to Vertex"
    assert done["counts"]["total"] == N and done["counts"]["succeeded"] == N
    reused = N - len(changed)
    assert done["counts"]["reused"] == reused
    manifest = read_json(bucket, f"batches/{b}/manifest.json")
    assert manifest["counts"]["reused"] == reused and manifest["rounds"][0]["reused"] == reused
    assert manifest["cost"]["saved_by_reuse"] > 0 and done["cost"]["saved_by_reuse"] > 0
    assert 0 < manifest["cost"]["estimated"] < manifest["cost"]["saved_by_reuse"]

    fresh, again = results_file(bucket, a), results_file(bucket, b)
    assert len(again) == N and [r["key"] for r in again] == [r["key"] for r in fresh]
    for i, (old, new) in enumerate(zip(fresh, again)):
        assert new["batch_id"] == b and new["status"] == "succeeded"
        if i in changed:
            assert "reused_from" not in new and set(new) == set(old), i
            assert new["request"]["contents"][0]["parts"][0]["text"].endswith(", again")
            continue
        assert new["reused_from"] == a and set(new) - {"reused_from"} == set(old), i
        assert (new["response"], new["text"], new["job"]) == (
            old["response"],
            old["text"],
            old["job"],
        )
    key = again[8]["key"]
    assert read_json(bucket, f"batches/{b}/results/{key}.json") == again[8]

    # a third time: the index now points at b's answers; three of them are gone
    gone = [again[i]["key"] for i in (0, 1000, N - 1)]
    for k in gone:
        bucket.blob(f"batches/{b}/results/{k}.json").delete()
    _, c = drop(bucket, f"reuse-{run}-c.jsonl", second)
    done = inbox.wait_for(c, ["succeeded", "partially_succeeded", "failed"], timeout=300)
    assert done["state"] == "succeeded" and done["counts"]["succeeded"] == N, done["counts"]
    assert done["counts"]["reused"] == N - 3
    jobs = jobs_of(stack, c)
    rounds = [j["labels"]["dropbatch_part"].split("-")[0] for j in jobs]
    assert rounds == ["1"], "round 0 needed no job"
    assert sent(stack, c) == 3
    third = results_file(bucket, c)
    assert [r["key"] for r in third] == [r["key"] for r in again]
    assert [r["text"] for r in third] == [r["text"] for r in again]
    assert [i for i, r in enumerate(third) if "reused_from" not in r] == [0, 1000, N - 1]
    assert third[1]["reused_from"] == a, "the batch that asked Vertex, not the one it came through"


def test_earlier_answers_are_written_while_the_job_runs(stack, bucket, inbox, vertex, reusing):
    """A re-drop's reused results do not wait for its job: the sweep queues a partial split for a
    running part with reused lines before the job writes anything, so a `running` message counts
    them succeeded while the job for the changed lines still runs; the end is as without."""
    run = uuid.uuid4().hex[:8]
    first = [req(f"{run} early {i}") for i in range(40)]
    _, a = drop(bucket, f"early-{run}-a.jsonl", first)
    assert inbox.wait_for(a, "succeeded", timeout=120)["counts"]["succeeded"] == 40
    vertex.faults(running_s=120, output_at_end=True)  # no output file to queue a split for
    _, b = drop(bucket, f"early-{run}-b.jsonl", [req(f"{run} new {i}") for i in range(2)] + first)

    def copied(m):
        c = m["counts"]
        return m["state"] == "running" and c["succeeded"] == 40 and c["pending"] == 2

    deadline = time.monotonic() + 90
    while not any(copied(m) for m in inbox.of(b)) and time.monotonic() < deadline:
        inbox.pull()
    assert any(copied(m) for m in inbox.of(b)), [m["counts"] for m in inbox.of(b)]
    assert [j["state"] for j in jobs_of(stack, b)] == ["JOB_STATE_RUNNING"]
    vertex.faults(output_at_end=False)
    done = inbox.wait_for(b, "succeeded", timeout=120)
    assert done["counts"]["succeeded"] == 42 and done["counts"]["reused"] == 40
    assert sent(stack, b) == 2
    again = results_file(bucket, b)
    assert [r.get("reused_from") for r in again] == [None, None] + [a] * 40


def test_answers_from_a_retry_round_are_reused_too(stack, bucket, inbox, vertex, reusing):
    """A request that failed for a transient reason and was answered in a retry round is indexed
    like one answered at once: dropped again, only the requests that never succeeded go to
    Vertex."""
    run = uuid.uuid4().hex[:8]
    lines = [req(f"{run} retried {i}") for i in range(30)]
    vertex.faults(fail_rate=0.4, fail_code=429)
    _, a = drop(bucket, f"retried-{run}-a.jsonl", lines)
    first = inbox.wait_for(a, ["succeeded", "partially_succeeded", "failed"], timeout=120)
    manifest = read_json(bucket, f"batches/{a}/manifest.json")
    retried = sum(r["requests"] for r in manifest["rounds"][1:])
    assert retried > first["counts"]["failed"], "some answers came in a retry round"
    vertex.faults(fail_rate=0.0)
    _, b = drop(bucket, f"retried-{run}-b.jsonl", lines)
    done = inbox.wait_for(b, "succeeded", timeout=120)
    assert done["counts"]["reused"] == first["counts"]["succeeded"]
    assert sent(stack, b) == first["counts"]["failed"]
