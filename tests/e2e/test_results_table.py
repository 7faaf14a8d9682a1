"""Results into BigQuery (DROPBATCH_RESULTS_TABLE; on the local stack PROJECT.dropbatch.results):
one row per request, matching results.jsonl, once however often the finish runs (docs/contracts.md,
Results table)."""

from __future__ import annotations

import orjson
import pytest
from conftest import drop, read_json, req

pytestmark = pytest.mark.stack


def bq_client(stack):
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    return bigquery.Client(
        project=stack.project,
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=stack.bigquery),
    )


def table_rows(stack, batch_id: str) -> list[dict]:
    from google.cloud import bigquery

    query = (
        f"SELECT * EXCEPT (response), TO_JSON_STRING(response) AS response FROM "
        f"`{stack.results_table}` "
        "WHERE batch_id = @b ORDER BY line"
    )
    job = bq_client(stack).query(
        query,
        job_config=bigquery.QueryJobConfig(
            query_parameters=[bigquery.ScalarQueryParameter("b", "STRING", batch_id)]
        ),
    )
    return [dict(r.items()) for r in job.result()]


def test_one_row_per_request_matching_results_file(stack, bucket, inbox, vertex):
    from dropbatch import table
    from dropbatch.store import Store

    # failures with a retry round, a blocked prompt, dropped lines (missing) and several parts
    vertex.faults(fail_rate=0.3, fail_code=429, drop_rate=0.1, lines_per_file=17)
    lines = [req("BLOCKME please" if i == 7 else f"question {i}") for i in range(1, 61)]
    _, batch_id = drop(bucket, "tabled.jsonl", lines)
    done = inbox.wait_for(batch_id, ["succeeded", "partially_succeeded", "failed"], timeout=120)
    prefix = f"batches/{batch_id}/"
    manifest = read_json(bucket, prefix + "manifest.json")
    assert done["results_table"] == manifest["results_table"] == stack.results_table
    assert manifest["results_table_error"] is None
    results = [
        orjson.loads(raw)
        for raw in bucket.blob(prefix + "results.jsonl").download_as_bytes().splitlines()
    ]
    rounds = {j["name"]: j["round"] for j in manifest["jobs"]}
    assert len(set(rounds.values())) == 2, "the faults gave a retry round"

    def check(rows):
        assert [r["line"] for r in rows] == list(range(1, len(results) + 1)), "one row per request"
        for row, result in zip(rows, results):
            usage, error = result["usage"] or {}, result["error"] or {}
            assert (row["key"], row["status"], row["text"], row["finish_reason"]) == (
                result["key"],
                result["status"],
                result["text"],
                result["finish_reason"],
            ), row["line"]
            assert row["prompt_tokens"] == usage.get("promptTokenCount")
            assert row["total_tokens"] == usage.get("totalTokenCount")
            assert row["error_code"] == (None if error.get("code") is None else str(error["code"]))
            assert (orjson.loads(row["response"]) if row["response"] else None) == result[
                "response"
            ]
            assert (
                row["round"] == rounds.get(result["job"])
                and row["model"]
                and row["source"] == done["source"]
            )
        statuses = {r["status"] for r in rows}
        assert {"succeeded", "failed"} <= statuses

    check(table_rows(stack, batch_id))
    store = Store(stack.config())
    for _ in range(3):  # the finishing step's load again: still one row per request
        table.load(
            store,
            batch_id,
            stack.results_table,
            model="m",
            source=done["source"],
            rounds=rounds,
            finished=manifest["timings"]["finished"],
        )
    again = table_rows(stack, batch_id)
    check(again)
    assert {r["model"] for r in again} == {"m"}, "a later load replaces the rows, by line"


def test_a_failed_load_keeps_the_results_and_says_why(stack, bucket, inbox):
    """A results table that cannot be loaded (its dataset does not exist) leaves the batch's state
    and its bucket files as they are; the message and the manifest say why."""
    from dropbatch.local import stack as local

    missing = f"{stack.project}.no_such_dataset.results"
    local.restart_function("split", kill_signal=15, DROPBATCH_RESULTS_TABLE=missing)
    try:
        _, batch_id = drop(bucket, "untabled.jsonl", [req("a"), req("b")])
        done = inbox.wait_for(batch_id, ["succeeded", "partially_succeeded", "failed"], timeout=90)
    finally:
        local.restart_function("split", kill_signal=15)
    assert done["state"] == "succeeded" and done["results_table"] == missing
    assert (
        f"the results table {missing} was not loaded: " in done["error"]
        and "no_such_dataset" in done["error"]
    )
    manifest = read_json(bucket, f"batches/{batch_id}/manifest.json")
    assert manifest["results_table_error"] in done["error"]
    assert (
        len(bucket.blob(f"batches/{batch_id}/results.jsonl").download_as_bytes().splitlines()) == 2
    )
