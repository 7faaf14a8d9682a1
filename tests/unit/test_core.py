"""config, events, logs, notify: the small modules every function stands on."""

from __future__ import annotations

import base64
import dataclasses

import orjson
import pytest
from cloudevents.http import CloudEvent
from dropbatch import logs, notify
from dropbatch.config import Config
from dropbatch.errors import PermanentError, UsageError
from dropbatch.events import object_event, pubsub_json


def test_config_from_env_casts_and_refuses_nonsense():
    cfg = Config.from_env(
        {
            "DROPBATCH_BUCKET": "b",
            "DROPBATCH_MAX_JOB_REQUESTS": "1_000",
            "GOOGLE_CLOUD_PROJECT": "p",
        }
    )
    assert (cfg.bucket, cfg.max_job_requests, cfg.project) == ("b", 1000, "p")
    with pytest.raises(UsageError, match="DROPBATCH_MAX_ERRORS"):
        Config.from_env({"DROPBATCH_MAX_ERRORS": "many"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.bucket = "other"


def test_both_storage_event_shapes():
    eventarc = CloudEvent(
        {
            "type": "google.cloud.storage.object.v1.finalized",
            "source": "//storage/b",
            "id": "1",
            "time": "2026-11-25T00:00:00Z",
        },
        {"bucket": "b", "name": "incoming/a.jsonl", "generation": "42"},
    )
    ev = object_event(eventarc)
    assert (ev.bucket, ev.name, ev.generation, ev.kind) == (
        "b",
        "incoming/a.jsonl",
        42,
        "finalized",
    )
    pubsub = CloudEvent(
        {"type": "google.cloud.pubsub.topic.v1.messagePublished", "source": "//pubsub", "id": "2"},
        {
            "message": {
                "data": "",
                "attributes": {
                    "bucketId": "b",
                    "objectId": "incoming/a.jsonl",
                    "objectGeneration": "42",
                    "eventType": "OBJECT_DELETE",
                    "eventTime": "2026-11-25T00:00:00Z",
                },
            }
        },
    )
    ev = object_event(pubsub)
    assert (ev.bucket, ev.name, ev.generation, ev.kind) == ("b", "incoming/a.jsonl", 42, "deleted")


def test_pubsub_json_refuses_garbage():
    bad = CloudEvent(
        {"type": "google.cloud.pubsub.topic.v1.messagePublished", "source": "s", "id": "3"},
        {"message": {"data": base64.b64encode(b"[1, 2]").decode()}},
    )
    with pytest.raises(PermanentError):
        pubsub_json(bad)


def test_log_lines_carry_severity_and_context(capfd):
    token = logs.bind(batch_id="b-1", execution_id="x-1")
    try:
        logs.warning("careful", part=3)
    finally:
        logs.reset(token)
    logs.info("outside")
    first, second = [orjson.loads(l) for l in capfd.readouterr().out.splitlines()]
    assert (
        first["severity"] == "WARNING"
        and first["batch_id"] == "b-1"
        and first["execution_id"] == "x-1"
    )
    assert first["part"] == 3 and first["message"] == "careful"
    assert first["logging.googleapis.com/labels"] == {"batch_id": "b-1", "execution_id": "x-1"}
    assert "batch_id" not in second and "logging.googleapis.com/labels" not in second


def test_log_lines_inside_a_request_carry_its_trace(capfd, monkeypatch):
    """Cloud Logging groups lines under the platform's request log by `logging.googleapis.com/trace`
    (projects/P/traces/ID) and `.../spanId` (16 hex digits), read from W3C traceparent or
    X-Cloud-Trace-Context."""
    import flask

    monkeypatch.setenv("DROPBATCH_PROJECT", "my-project")
    app = flask.Flask("t")
    cases = [
        (
            {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
            "00f067aa0ba902b7",
        ),
        ({"X-Cloud-Trace-Context": "4bf92f3577b34da6a3ce929d0e0e4736/17;o=1"}, "0000000000000011"),
        (
            {"traceparent": "garbage", "X-Cloud-Trace-Context": "4bf92f3577b34da6a3ce929d0e0e4736"},
            None,
        ),
    ]
    for headers, span in cases:
        with app.test_request_context(headers=headers):
            logs.info("in a request")
        line = orjson.loads(capfd.readouterr().out)
        assert (
            line["logging.googleapis.com/trace"]
            == "projects/my-project/traces/4bf92f3577b34da6a3ce929d0e0e4736"
        )
        assert line.get("logging.googleapis.com/spanId") == span
    with app.test_request_context(headers={"traceparent": "00-nothex-00f067aa0ba902b7-01"}):
        logs.info("no trace")
    assert "logging.googleapis.com/trace" not in orjson.loads(capfd.readouterr().out)


def test_message_schema():
    msg = notify.build(
        "succeeded", batch_id="b", source="gs://x/incoming/a.jsonl", counts={"total": 1}
    )
    assert set(msg) == {
        "schema",
        "batch_id",
        "state",
        "source",
        "counts",
        "manifest",
        "results_prefix",
        "results_file",
        "report",
        "error",
    }
    assert msg["schema"] == "dropbatch.batch.v1"
    with pytest.raises(ValueError):
        notify.build("done", batch_id="b", source="s")


@pytest.mark.parametrize(
    "location, host",
    [
        ("global", "aiplatform.googleapis.com"),
        ("us-central1", "us-central1-aiplatform.googleapis.com"),
        ("europe-west4", "europe-west4-aiplatform.googleapis.com"),
    ],
)
def test_vertex_endpoint_for_a_location(location, host):
    """Google's newer notebooks default to location=global, served by aiplatform.googleapis.com."""
    from dropbatch import vertex

    assert vertex.api_endpoint(location) == host


def test_execution_id_is_the_platforms_when_there_is_one():
    """Log lines join the platform's request logs: the id is the Function-Execution-Id header Cloud
    Run functions send (and functions-framework sets when absent); outside a request, a fresh one.
    """
    import flask
    from dropbatch.store import execution_id

    with flask.Flask("t").test_request_context(headers={"Function-Execution-Id": "exec-7f3a"}):
        assert execution_id() == "exec-7f3a"
    assert len(execution_id()) == 12 and execution_id() != execution_id()


def test_bucket_paths_are_built_only_by_the_layout_module():
    """docs/contracts.md's layout, in one module: no other module of the package spells a batch
    object's name (its string constants and f-string parts are searched; docstrings, messages and
    local temp files aside)."""
    import ast
    import re
    from pathlib import Path

    package = Path(__file__).resolve().parents[2] / "functions" / "dropbatch"
    names = re.compile(
        r"^(?:input|output|split|ordered|results|submit)/|(?:ledger|report|manifest)\.json"
        r"|(?:errors|results)\.jsonl|\.done\.json|\.checkpoint\.json|seg/b|/ordered/"
    )
    offenders = []
    for path in package.glob("*.py"):
        if path.name == "layout.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        offenders += [
            f"{path.name}:{node.lineno}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and names.search(node.value)
            and " " not in node.value
            and not node.value.endswith(".tmp")
        ]
    assert offenders == []


def test_results_table_rows_have_exactly_the_schemas_columns():
    """table.row fills every column of results_table.json (the schema infra/bigquery.tf reads) and
    no other."""
    from dropbatch import outcome, table

    result = outcome.result_object(
        "k",
        "failed",
        "b-1",
        "projects/p/locations/l/batchPredictionJobs/1",
        usage={"promptTokenCount": 3, "totalTokenCount": 5},
        error={"code": 429, "message": "quota"},
    )
    row = table.row(
        4,
        result,
        model="gemini-2.5-flash",
        source="gs://b/incoming/f.jsonl",
        rounds={"projects/p/locations/l/batchPredictionJobs/1": 1},
        finished="2026-12-02T00:00:00Z",
    )
    assert list(row) == [f["name"] for f in table.schema()]
    assert (
        row["line"],
        row["round"],
        row["error_code"],
        row["prompt_tokens"],
        row["total_tokens"],
    ) == (4, 1, "429", 3, 5)
