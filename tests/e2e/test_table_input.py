"""A BigQuery table as input: a dropped incoming/NAME.bq.json pointer runs the table's rows as a
batch (docs/contracts.md, "Tables as input"); the rows are validated as JSONL lines, by row number.
"""

from __future__ import annotations

import orjson
import pytest
from conftest import read_json, req
from test_results_table import bq_client, table_rows

pytestmark = pytest.mark.stack


def make_table(
    stack, name: str, rows: list[dict], request_type: str = "JSON", key_type: str | None = "STRING"
):
    """A table in the local BigQuery with a `request` column (and `id`, and a column Vertex would
    copy)."""
    from google.cloud import bigquery

    bq = bq_client(stack)
    bq.create_dataset(f"{stack.project}.inputs", exists_ok=True)
    table_id = f"{stack.project}.inputs.{name}"
    bq.delete_table(table_id, not_found_ok=True)
    schema = [bigquery.SchemaField("request", request_type), bigquery.SchemaField("note", "STRING")]
    if key_type:
        schema.append(bigquery.SchemaField("id", key_type))
    bq.create_table(bigquery.Table(table_id, schema=schema))
    if rows:
        data = b"".join(orjson.dumps(r) + b"\n" for r in rows)
        import io

        bq.load_table_from_file(
            io.BytesIO(data),
            table_id,
            job_config=bigquery.LoadJobConfig(
                source_format="NEWLINE_DELIMITED_JSON", schema=schema
            ),
        ).result(timeout=60)
    return table_id


def drop_pointer(bucket, name: str, pointer: dict):
    from dropbatch.keys import batch_id

    blob = bucket.blob(f"incoming/{name}.bq.json")
    blob.upload_from_string(orjson.dumps(pointer), content_type="application/json")
    return blob, batch_id(bucket.name, blob.name, blob.generation)


def read_results(bucket, batch_id):
    return [
        orjson.loads(raw)
        for raw in bucket.blob(f"batches/{batch_id}/results.jsonl").download_as_bytes().splitlines()
    ]


def test_a_pointer_runs_the_table_end_to_end(stack, bucket, inbox, vertex):
    """Rows keyed by `id` (a JSON request column), split over several jobs; results in row order,
    the results table with one row per request, and the user's pointer untouched."""
    n = 90  # 3 parts of 40 (conftest.STACK_ENV)
    rows = [
        {"request": req(f"row {i}")["request"], "note": f"n{i}", "id": f"id-{i:03d}"}
        for i in range(n)
    ]
    table_id = make_table(stack, "prompts", rows)
    blob, batch_id = drop_pointer(
        bucket,
        "prompts",
        {"table": f"bq://{table_id}", "key_column": "id", "model": "gemini-2.0-flash-001"},
    )
    done = inbox.wait_for(batch_id, "succeeded", timeout=180)
    assert done["counts"]["total"] == n and done["counts"]["succeeded"] == n
    results = read_results(bucket, batch_id)
    keys = [r["key"] for r in results]
    assert sorted(keys) == sorted(r["id"] for r in rows) and len(set(keys)) == n
    order = {r["id"]: i for i, r in enumerate(rows)}
    for result in results:  # each result answers its own row's prompt
        assert f"row {order[result['key']]}" in (result["text"] or ""), result["key"]
    ledger = read_json(bucket, f"batches/{batch_id}/ledger.json")
    assert ledger["model"] == "gemini-2.0-flash-001" and len(ledger["parts"]) == 3
    assert [r["key"] for r in table_rows(stack, batch_id)] == keys, (
        "the results table, one row per request"
    )
    assert bucket.get_blob(blob.name).generation == blob.generation, "the pointer is never touched"


def test_string_request_column_without_keys(stack, bucket, inbox, vertex):
    """A STRING request column holding each request's JSON text; no key column: rows are keyed by
    number."""
    rows = [
        {"request": orjson.dumps(req(f"plain {i}")["request"]).decode(), "note": None}
        for i in range(5)
    ]
    table_id = make_table(stack, "plain", rows, request_type="STRING", key_type=None)
    _, batch_id = drop_pointer(bucket, "plain", {"table": f"bq://{table_id}"})
    done = inbox.wait_for(batch_id, "succeeded", timeout=120)
    results = read_results(bucket, batch_id)
    assert [r["key"] for r in results] == ["1", "2", "3", "4", "5"] and done["counts"][
        "succeeded"
    ] == 5
    texts = sorted(r["text"] for r in results)
    assert all(any(f"plain {i}" in t for t in texts) for i in range(5))


def test_bad_rows_are_reported_by_row_and_key(stack, bucket, inbox):
    rows = [
        {"request": req("fine")["request"], "id": "a"},
        {"request": {"contents": []}, "id": "b"},
        {"request": req("dup")["request"], "id": "a"},
    ]
    table_id = make_table(stack, "bad_rows", rows)
    _, batch_id = drop_pointer(
        bucket, "bad-rows", {"table": f"bq://{table_id}", "key_column": "id"}
    )
    done = inbox.wait_for(batch_id, "rejected", timeout=60)
    report = read_json(bucket, f"batches/{batch_id}/report.json")
    codes = sorted((e["code"], e.get("key")) for e in report["errors"])
    assert ("empty_contents", "b") in codes and ("duplicate_key", "a") in codes, codes
    assert "line" in done["error"] and "fine" not in done["error"], (
        "the message carries codes, not user text"
    )


@pytest.mark.parametrize(
    "pointer, code",
    [
        ({"table": "bq://dropbatch-local.inputs.no_such_table"}, "table_not_found"),
        ({"table": "bq://dropbatch-local.inputs.no_request_col"}, "no_request_column"),
        ({"table": "prompts"}, "bad_pointer"),
        ({"table": "bq://dropbatch-local.inputs.prompts", "colour": "red"}, "bad_pointer"),
    ],
)
def test_a_table_that_cannot_be_run_is_rejected_with_the_reason(
    stack, bucket, inbox, pointer, code
):
    from google.cloud import bigquery

    bq = bq_client(stack)
    bq.create_dataset(f"{stack.project}.inputs", exists_ok=True)
    bq.create_table(
        bigquery.Table(
            f"{stack.project}.inputs.no_request_col",
            schema=[bigquery.SchemaField("prompt", "STRING")],
        ),
        exists_ok=True,
    )
    _, batch_id = drop_pointer(bucket, f"cannot-{code}-{len(pointer)}", pointer)
    done = inbox.wait_for(batch_id, "rejected", timeout=60)
    report = read_json(bucket, f"batches/{batch_id}/report.json")
    assert report["errors"][0]["code"] == code and code in done["error"]


def test_a_table_read_checkpoints_and_continues_in_new_calls(stack, bucket, inbox, vertex):
    """A submit budget of 50 ms: the rows are read over several calls, each going on from the row
    the last one stopped at (tabledata.list's startIndex); every row once, in order."""
    from dropbatch.local import stack as local

    # three parts of 10; a 50 ms budget stops it after a row or a few (a call is a row when the
    # machine is loaded: each costs a continuation's round trip, so the table is small)
    n = 30
    rows = [
        {"request": req(f"c{i} " + "pad " * 20)["request"], "id": f"k{i:04d}"} for i in range(n)
    ]
    table_id = make_table(stack, "continued", rows)
    local.restart_function(
        "submit", kill_signal=15, DROPBATCH_SUBMIT_BUDGET_S="0.05", DROPBATCH_MAX_JOB_REQUESTS="10"
    )
    try:
        _, batch_id = drop_pointer(
            bucket, "continued", {"table": f"bq://{table_id}", "key_column": "id"}
        )
        done = inbox.wait_for(batch_id, "succeeded", timeout=360)
    finally:
        local.restart_function("submit", kill_signal=15)
    assert done["counts"]["total"] == n and done["counts"]["succeeded"] == n
    ledger = read_json(bucket, f"batches/{batch_id}/ledger.json")
    assert ledger["progress"]["continuations"] >= 2 and len(ledger["parts"]) == 3
    results = read_results(bucket, batch_id)
    assert sorted(r["key"] for r in results) == [r["id"] for r in rows]


def _table(stack, name: str, schema: list[tuple[str, str]], rows: list[dict]) -> str:
    import io

    from google.cloud import bigquery

    bq = bq_client(stack)
    bq.create_dataset(f"{stack.project}.inputs", exists_ok=True)
    table_id = f"{stack.project}.inputs.{name}"
    bq.delete_table(table_id, not_found_ok=True)
    fields = [bigquery.SchemaField(n, t) for n, t in schema]
    bq.create_table(bigquery.Table(table_id, schema=fields))
    bq.load_table_from_file(
        io.BytesIO(b"".join(orjson.dumps(r) + b"\n" for r in rows)),
        table_id,
        job_config=bigquery.LoadJobConfig(source_format="NEWLINE_DELIMITED_JSON", schema=fields),
    ).result(timeout=60)
    return table_id


def test_tables_in_each_familys_documented_columns(stack, bucket, inbox, vertex):
    """Claude's table (custom_id, request: partner-models/claude/batch), an open model's (custom_id,
    method, url, body: partner-models/llama-batch) and text-embedding's (content, task_type:
    batch-prediction-genai- embeddings) run as their files would; the custom_id column keys the rows
    without a key_column."""
    vertex.faults(fail_rate=0.0)
    claude = _table(
        stack,
        "claude_rows",
        [("custom_id", "STRING"), ("request", "JSON"), ("note", "STRING")],
        [
            {
                "custom_id": f"c-{i}",
                "note": "x",
                "request": {
                    "anthropic_version": "vertex-2023-10-16",
                    "max_tokens": 64,
                    "messages": [{"role": "user", "content": f"claude {i}"}],
                },
            }
            for i in range(4)
        ],
    )
    llama = _table(
        stack,
        "llama_rows",
        [("custom_id", "STRING"), ("method", "STRING"), ("url", "STRING"), ("body", "STRING")],
        [
            {
                "custom_id": f"l-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": orjson.dumps(
                    {"messages": [{"role": "user", "content": f"llama {i}"}]}
                ).decode(),
            }
            for i in range(3)
        ],
    )
    texts = _table(
        stack,
        "embedding_rows",
        [("content", "STRING"), ("task_type", "STRING")],
        [
            {"content": "12345", "task_type": "RETRIEVAL_QUERY"},
            {"content": "banana bread", "task_type": None},
        ],
    )
    runs = {}
    for name, table_id, model in (
        ("claude-table", claude, "claude-3-5-haiku@20241022"),
        ("llama-table", llama, "meta/llama-3.1-8b-instruct-maas"),
        ("embedding-table", texts, "text-embedding-005"),
    ):
        runs[name] = drop_pointer(bucket, name, {"table": f"bq://{table_id}", "model": model})[1]
    for name, batch_id in runs.items():
        done = inbox.wait_for(batch_id, ["succeeded", "rejected", "failed"], timeout=180)
        report = (
            read_json(bucket, f"batches/{batch_id}/report.json")
            if done["state"] == "rejected"
            else {}
        )
        assert done["state"] == "succeeded", (name, done, report.get("errors", [])[:4])
    claude_results = read_results(bucket, runs["claude-table"])
    assert [r["key"] for r in claude_results] == [f"c-{i}" for i in range(4)]
    assert all(f"claude {i}" in r["text"] for i, r in enumerate(claude_results))
    assert [r["key"] for r in read_results(bucket, runs["llama-table"])] == ["l-0", "l-1", "l-2"]
    embedded = read_results(bucket, runs["embedding-table"])
    assert [r["request"] for r in embedded] == [
        {"content": "12345", "task_type": "RETRIEVAL_QUERY"},
        {"content": "banana bread"},
    ], "a null column is not given"
    assert all(len(r["embedding"]) == 768 for r in embedded), "a STRING content column stays text"
