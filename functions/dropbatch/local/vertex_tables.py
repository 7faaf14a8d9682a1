"""The Vertex emulator's BigQuery output: a job whose input is a table writes a table
(batch-prediction-from-bigquery: the input's columns plus `response` and `status`)."""

from __future__ import annotations

import datetime as dt
import io
import re

import orjson


# members Vertex writes back as null when unset (as seen in its output)
def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _stats(ok: int, failed: int, incomplete: int) -> dict:
    """CompletionStats as the REST API writes them: int64 values are strings."""
    return {
        "successfulCount": str(ok),
        "failedCount": str(failed),
        "incompleteCount": str(incomplete),
    }


class TableWriter:
    """The BigQuery half of the output writer (OutputWriter)."""

    def _predict_to_table(self, name: str, job: dict) -> None:
        """A BigQuery destination (bigqueryDestination.outputUri: bq://PROJECT, bq://PROJECT.DATASET
        or bq://PROJECT.DATASET.TABLE, as BigQueryDestination documents it: a dataset
        prediction_<model>_<time> and a table `predictions` when not given). Each row is the input
        row's columns, `request` among them, plus `response` (JSON) for a row that succeeded and
        `status` (STRING, empty when it succeeded), as batch-prediction-from-bigquery describes the
        output table. No `processed_time`: no public source shows one in a BigQuery output."""
        from google.cloud import bigquery

        project, dataset, table = _destination(job)
        client = bigquery.Client(project=project)
        client.create_dataset(f"{project}.{dataset}", exists_ok=True)
        self._set(
            name,
            outputInfo={
                "bigqueryOutputDataset": f"bq://{project}.{dataset}",
                "bigqueryOutputTable": table,
            },
        )
        schema = _output_schema(client, job)
        rows, ok, failed = [], 0, 0
        for raw, label, columns in self._inputs(job):
            line, good = self._predict_line(raw, label, job["model"])
            out = orjson.loads(line)
            rows.append(
                {
                    "request": out.get("request"),
                    **(columns or {}),
                    "response": out.get("response"),
                    "status": out.get("status") or "",
                }
            )
            ok, failed = ok + good, failed + (not good)
        # datetimes as RFC 3339
        data = b"".join(orjson.dumps(row, default=str) + b"\n" for row in rows)
        client.load_table_from_file(
            io.BytesIO(data),
            f"{project}.{dataset}.{table}",
            job_config=bigquery.LoadJobConfig(
                source_format="NEWLINE_DELIMITED_JSON",
                schema=schema,
                write_disposition="WRITE_APPEND",
            ),
        ).result(timeout=120)
        self._sleep(name, self.faults.running_s)
        stats = _stats(ok, failed, 0)
        self._finish(
            name,
            "JOB_STATE_SUCCEEDED" if ok or not failed else "JOB_STATE_FAILED",
            completionStats=stats,
        )


def _destination(job: dict) -> tuple[str, str, str]:
    """(project, dataset, table) of a job's bigqueryDestination: a dataset
    prediction_<model>_<time> and a table `predictions` when not given."""
    uri = (job["outputConfig"].get("bigqueryDestination") or {}).get("outputUri", "")
    names = uri[5:].split(".") if uri.startswith("bq://") else []
    if not 1 <= len(names) <= 3 or not all(names):
        raise ValueError(
            "outputConfig.bigqueryDestination.outputUri must be bq://PROJECT[.DATASET[.TABLE]]"
        )
    model = job["model"].rsplit("/", 1)[-1]
    stamp = dt.datetime.now(dt.UTC).strftime("%Y_%m_%dT%H_%M_%S_%fZ")
    project, dataset, table = (
        names
        + [f"prediction_{re.sub(r'[^A-Za-z0-9_]', '_', model)}_{stamp}", "predictions"][
            len(names) - 1 :
        ]
    )[:3]
    return project, dataset, table


def _output_schema(client, job: dict) -> list:
    """The output table's columns: the input table's (or `request`), then response and status."""
    from google.cloud import bigquery

    source = job["inputConfig"]
    schema = (
        [
            f
            for f in client.get_table(source["bigquerySource"]["inputUri"][5:]).schema
            if f.name not in ("response", "status")
        ]
        if source.get("instancesFormat") == "bigquery"
        else [bigquery.SchemaField("request", "JSON")]
    )
    schema += [
        bigquery.SchemaField("response", "JSON"),
        bigquery.SchemaField("status", "STRING"),
    ]
    return schema
