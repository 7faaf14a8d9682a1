"""A batch's cost bound is checked before any job exists (docs/contracts.md, Spending cap): over its
cap it ends `rejected` with the bound in report.json and the message, and Vertex never sees it."""

from __future__ import annotations

import orjson
import pytest
from conftest import drop, jobs_of, read_json, req


def test_a_batch_over_its_cap_is_rejected_before_any_job(stack, bucket, inbox, vertex):
    """Three requests with no output limit can bill 3 x 65,536 output tokens: $0.2458 at
    gemini-2.5-flash's batch price, over a cap of $0.10."""
    _, batch_id = drop(
        bucket, "capped.jsonl", [req(f"c{i}") for i in range(3)], {"max_cost": "0.1"}
    )
    done = inbox.wait_for(batch_id, "rejected", timeout=60)
    assert done["cost"]["cap"] == 0.1 and done["cost"]["bound"] > 0.1
    assert done["cost"]["output_tokens"] == 3 * 65_536
    report = read_json(bucket, f"batches/{batch_id}/report.json")
    assert [e["code"] for e in report["errors"]] == ["over_cost_cap"]
    assert report["errors"][0]["field"] == "metadata.max_cost"
    assert report["cost_bound"]["bound"] == done["cost"]["bound"]
    assert vertex.stats()["calls"].get("create", 0) == 0
    assert jobs_of(stack, batch_id) == []
    assert bucket.blob("incoming/capped.jsonl").exists(), "the user's object is kept"


def test_output_limits_bring_a_batch_under_its_cap(stack, bucket, inbox, vertex):
    lines = [req(f"u{i}", generationConfig={"maxOutputTokens": 100}) for i in range(3)]
    _, batch_id = drop(bucket, "under-cap.jsonl", lines, {"max_cost": "0.1"})
    done = inbox.wait_for(batch_id, "succeeded", timeout=90)
    assert done["counts"]["succeeded"] == 3
    report = read_json(bucket, f"batches/{batch_id}/report.json")
    assert report["cost_bound"]["output_tokens"] == 300 and report["cost_bound"]["cap"] == 0.1


@pytest.mark.parametrize(
    "metadata, code, field",
    [
        ({"max_cost": "ten dollars"}, "bad_cost_cap", "metadata.max_cost"),
        ({"max_cost": "-1"}, "bad_cost_cap", "metadata.max_cost"),
        ({"max_cots": "5"}, "unknown_metadata", "metadata.max_cots"),
    ],
)
def test_bad_metadata_is_a_clear_rejection(stack, bucket, inbox, vertex, metadata, code, field):
    _, batch_id = drop(
        bucket, f"meta-{code}-{sorted(metadata.values())[0][:3]}.jsonl", [req("m")], metadata
    )
    done = inbox.wait_for(batch_id, "rejected", timeout=60)
    report = read_json(bucket, f"batches/{batch_id}/report.json")
    assert [(e["code"], e["field"]) for e in report["errors"]] == [(code, field)]
    assert code in done["error"]
    assert jobs_of(stack, batch_id) == []


def committed_now(stack) -> float:
    """What today has committed on this stack before a test's batches (other tests' batches)."""
    from dropbatch import budget
    from dropbatch.store import Store

    return budget.committed(Store(stack.config()), "")


def test_the_daily_cap_makes_a_third_batch_wait_until_one_ends(stack, bucket, inbox, vertex):
    """Each batch is one request with no output limit: a bound of 65,536 output tokens, $0.082 at
    gemini-2.5-flash's batch price. Two fit under the cap beside what today committed; the third
    waits, with a `running` message that says so, and gets its job once one of the two ended."""
    from dropbatch.local import stack as local

    vertex.faults(running_s=6)
    cap = committed_now(stack) + 0.2
    local.restart_function("submit", DROPBATCH_MAX_DAILY_COST=f"{cap:.6f}")
    try:
        ids = []
        for n in range(3):
            ids.append(drop(bucket, f"daily-{n}.jsonl", [req(f"d{n}")])[1])
            inbox.wait_for(ids[-1], "submitted", timeout=60)
        waiting = inbox.wait_for(ids[2], "running", timeout=30)
        assert waiting["waiting"]["for"] == "budget" and waiting["waiting"]["cap"] == round(cap, 6)
        assert waiting["waiting"]["bound"] == pytest.approx(0.08192, abs=1e-4)
        assert waiting["counts"]["pending"] == 1 and waiting["jobs"] == []
        assert jobs_of(stack, ids[2]) == [] and all(jobs_of(stack, i) for i in ids[:2])
        done = [inbox.wait_for(i, "succeeded", timeout=120) for i in ids]
        assert all(d["counts"]["succeeded"] == 1 for d in done)
        first_end = min(
            read_json(bucket, f"batches/{i}/manifest.json")["timings"]["finished"] for i in ids[:2]
        )
        third = read_json(bucket, f"batches/{ids[2]}/ledger.json")
        assert third["parts"][0]["created"] >= first_end and third["waiting"] is None
        # a batch that does not fit, with DROPBATCH_OVER_DAILY_COST=reject: rejected, no job
        cap = committed_now(stack) + 0.1
        local.restart_function(
            "submit", DROPBATCH_MAX_DAILY_COST=f"{cap:.6f}", DROPBATCH_OVER_DAILY_COST="reject"
        )
        _, batch_id = drop(bucket, "daily-rejected.jsonl", [req("r1"), req("r2")])
        rejected = inbox.wait_for(batch_id, "rejected", timeout=60)
        assert "over_daily_cap" in rejected["error"] and rejected["cost"]["daily_cap"] > 0
        assert jobs_of(stack, batch_id) == []
    finally:
        local.restart_function("submit")


JOBS_ROLE = (
    '  permissions = ["aiplatform.batchPredictionJobs.create", '
    '"aiplatform.batchPredictionJobs.list"'
)
PREDICT = JOBS_ROLE + ', "aiplatform.endpoints.predict"]'


def estimated(lines) -> int:
    """The per-character estimate of the lines' input tokens: their bytes as dropped / 4."""
    return -(-sum(len(orjson.dumps(line)) + 1 for line in lines) // 4)


def test_a_small_files_input_tokens_are_counted_by_count_tokens(stack, bucket, inbox, vertex):
    """A file of at most DROPBATCH_COUNT_TOKENS_SAMPLE (20) requests is counted whole by Vertex's
    countTokens before any cap is checked, one call a request: the bound's input tokens are what the
    job then bills as prompt tokens, not the estimate from the lines' bytes."""
    texts = [f"count me {i} " + "word " * i for i in range(5)]
    _, batch_id = drop(bucket, "counted.jsonl", [req(t) for t in texts])
    inbox.wait_for(batch_id, "succeeded", timeout=90)
    bound = read_json(bucket, f"batches/{batch_id}/report.json")["cost_bound"]
    assert bound["input_tokens_source"] == "countTokens" and bound["counted_requests"] == 5
    assert vertex.stats()["calls"]["count_tokens"] == 5
    manifest = read_json(bucket, f"batches/{batch_id}/manifest.json")
    assert bound["input_tokens"] == manifest["usage"]["prompt_tokens"] > 0


def test_a_larger_file_keeps_the_estimate_when_the_sample_counts_less(stack, bucket, inbox, vertex):
    """25 requests: the first 20 are counted; they hold fewer tokens than their bytes / 4, so the
    estimate stands (a bound is scaled up by a sample, never down)."""
    lines = [req(f"sample {i}") for i in range(25)]
    _, batch_id = drop(bucket, "sampled.jsonl", lines)
    inbox.wait_for(batch_id, "succeeded", timeout=90)
    bound = read_json(bucket, f"batches/{batch_id}/report.json")["cost_bound"]
    assert bound["counted_requests"] == 20 and vertex.stats()["calls"]["count_tokens"] == 20
    assert bound["input_tokens"] == estimated(lines)


def test_without_endpoints_predict_the_estimate_stands(stack, bucket, inbox, vertex, infra_copy):
    """countTokens refused (the submit account without aiplatform.endpoints.predict): the batch
    runs on the per-character estimate, and the report says why it was not counted."""
    infra_copy(PREDICT, JOBS_ROLE + "]")
    lines = [req(f"u{i}") for i in range(3)]
    _, batch_id = drop(bucket, "uncounted.jsonl", lines)
    assert inbox.wait_for(batch_id, "succeeded", timeout=90)["counts"]["succeeded"] == 3
    report = read_json(bucket, f"batches/{batch_id}/report.json")
    assert report["cost_bound"]["count_tokens_error"] == "ConfigurationError"
    assert "input_tokens_source" not in report["cost_bound"]
    assert report["cost_bound"]["input_tokens"] == estimated(lines)
    assert vertex.stats()["calls"]["refused"] == 1, "refused once, not once a request"
