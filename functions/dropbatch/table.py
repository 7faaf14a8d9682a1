"""results.jsonl into a BigQuery table (DROPBATCH_RESULTS_TABLE): one typed row per request, once.

The rows are written from results.jsonl to batches/BATCH_ID/table/rows.jsonl (streamed: bounded
memory), loaded by a load job into a per-batch staging table (WRITE_TRUNCATE), and MERGEd into the
results table on (batch_id, line): a finish that runs twice, or a resumed batch that ends again,
leaves each request once with its last outcome. A load job id would not do here: bqemulator ignores
job ids. BigQuery runs a table's MERGE statements one at a time
(cloud.google.com/bigquery/docs/data-manipulation-language, "DML statement conflicts"), so
concurrent finishes do not insert twice. The schema is results_table.json, which infra/bigquery.tf
reads too.
"""

from __future__ import annotations

import functools
from pathlib import Path

import orjson

from . import layout, logs
from .errors import DropbatchError

SCHEMA_FILE = Path(__file__).with_name("results_table.json")


@functools.cache
def schema() -> list[dict]:
    return orjson.loads(SCHEMA_FILE.read_bytes())


def fields() -> list:
    """The schema as google-cloud-bigquery SchemaFields."""
    from google.cloud import bigquery

    return [bigquery.SchemaField.from_api_repr(f) for f in schema()]


def row(line: int, result: dict, *, model: str, source: str, rounds: dict, finished: str) -> dict:
    """One table row of a results.jsonl line (`rounds`: job name -> round)."""
    usage, error = result.get("usage") or {}, result.get("error") or {}
    code = error.get("code")
    return {
        "batch_id": result["batch_id"],
        "line": line,
        "key": result["key"],
        "status": result["status"],
        "text": result.get("text"),
        "finish_reason": result.get("finish_reason"),
        "prompt_tokens": usage.get("promptTokenCount"),
        "candidates_tokens": usage.get("candidatesTokenCount"),
        "thoughts_tokens": usage.get("thoughtsTokenCount"),
        "total_tokens": usage.get("totalTokenCount"),
        "error_code": None if code is None else str(code),
        "error_message": error.get("message"),
        "response": result.get("response"),
        "processed_time": result.get("processed_time"),
        "model": model,
        "source": source,
        "round": rounds.get(result.get("job")),
        "job": result.get("job"),
        "finished_time": finished,
    }


def write_rows(store, batch_id: str, **context) -> str:
    """batches/BATCH_ID/table/rows.jsonl from results.jsonl; returns its path."""
    target = store.path(batch_id, layout.TABLE_ROWS)
    with (
        store.bucket.blob(store.path(batch_id, layout.RESULTS_FILE)).open("rb") as src,
        store.bucket.blob(target).open(
            "wb", chunk_size=8 << 20, content_type="application/jsonl"
        ) as out,
    ):
        for line, raw in enumerate(src, 1):
            out.write(orjson.dumps(row(line, orjson.loads(raw), **context)) + b"\n")
    return target


def client(project: str):
    from google.cloud import bigquery

    return bigquery.Client(project=project)


def create(bq, table: str) -> None:
    """The results table and its dataset, as infra/bigquery.tf makes them (the local stack calls
    this)."""
    from google.cloud import bigquery

    bq.create_dataset(table.rsplit(".", 1)[0], exists_ok=True)
    t = bigquery.Table(table, schema=fields())
    t.time_partitioning = bigquery.TimePartitioning(field="finished_time")
    t.clustering_fields = ["batch_id"]
    bq.create_table(t, exists_ok=True)


def load(store, batch_id: str, table: str, **context) -> None:
    """Put the batch's results into `table` (PROJECT.DATASET.TABLE), replacing its earlier rows by
    line."""
    from google.api_core import exceptions
    from google.cloud import bigquery

    project, dataset, _ = table.split(".")
    bq = client(store.config.project)
    staging = f"{project}.{dataset}._dropbatch_load_{batch_id.replace('-', '_')}"
    names = [f["name"] for f in schema()]
    try:
        rows = write_rows(store, batch_id, **context)
        bq.load_table_from_uri(
            store.uri(rows),
            staging,
            job_config=bigquery.LoadJobConfig(
                source_format="NEWLINE_DELIMITED_JSON",
                schema=fields(),
                write_disposition="WRITE_TRUNCATE",
            ),
        ).result(timeout=600)
        merge = bq.query(
            f"MERGE `{table}` t USING `{staging}` s ON t.batch_id = s.batch_id AND t.line = s.line "
            f"WHEN MATCHED THEN UPDATE SET "
            f"{', '.join(f'{n} = s.{n}' for n in names if n not in ('batch_id', 'line'))} "
            f"WHEN NOT MATCHED THEN INSERT ({', '.join(names)}) VALUES "
            f"({', '.join(f's.{n}' for n in names)})"
        )
        merge.result(timeout=600)
        bq.delete_table(staging, not_found_ok=True)
    except exceptions.GoogleAPICallError as e:
        raise DropbatchError(
            f"the results table {table} was not loaded: {e.code} {e.message[:300]}"
        ) from e
    logs.info(
        "results table loaded", event="results_table", table=table, rows=merge.num_dml_affected_rows
    )
