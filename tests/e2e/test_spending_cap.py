"""A batch's cost bound is checked before any job exists (docs/contracts.md, Spending cap): over its
cap it ends `rejected` with the bound in report.json and the message, and Vertex never sees it."""

from __future__ import annotations

import pytest
from conftest import drop, owner, read_json, req


def jobs_of(stack, batch_id: str) -> list:
    return (
        owner()
        .get(
            f"{stack.vertex}/v1/projects/{stack.project}/locations/us-central1/batchPredictionJobs",
            params={"filter": f'labels.dropbatch_batch="{batch_id}"'},
        )
        .json()
        .get("batchPredictionJobs", [])
    )


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
