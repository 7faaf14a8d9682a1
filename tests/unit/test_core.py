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
    cfg = Config.from_env({"DROPBATCH_BUCKET": "b", "DROPBATCH_MAX_JOB_REQUESTS": "1_000",
                           "GOOGLE_CLOUD_PROJECT": "p"})
    assert (cfg.bucket, cfg.max_job_requests, cfg.project) == ("b", 1000, "p")
    assert cfg.model_resource("gemini-2.5-flash") == \
        "projects/p/locations/us-central1/publishers/google/models/gemini-2.5-flash"
    with pytest.raises(UsageError, match="DROPBATCH_MAX_ERRORS"):
        Config.from_env({"DROPBATCH_MAX_ERRORS": "many"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.bucket = "other"


def test_both_storage_event_shapes():
    eventarc = CloudEvent({"type": "google.cloud.storage.object.v1.finalized", "source": "//storage/b",
                           "id": "1", "time": "2026-11-25T00:00:00Z"},
                          {"bucket": "b", "name": "incoming/a.jsonl", "generation": "42"})
    ev = object_event(eventarc)
    assert (ev.bucket, ev.name, ev.generation, ev.kind) == ("b", "incoming/a.jsonl", 42, "finalized")
    pubsub = CloudEvent({"type": "google.cloud.pubsub.topic.v1.messagePublished", "source": "//pubsub", "id": "2"},
                        {"message": {"data": "", "attributes": {"bucketId": "b", "objectId": "incoming/a.jsonl",
                                                                "objectGeneration": "42",
                                                                "eventType": "OBJECT_DELETE",
                                                                "eventTime": "2026-11-25T00:00:00Z"}}})
    ev = object_event(pubsub)
    assert (ev.bucket, ev.name, ev.generation, ev.kind) == ("b", "incoming/a.jsonl", 42, "deleted")


def test_pubsub_json_refuses_garbage():
    bad = CloudEvent({"type": "google.cloud.pubsub.topic.v1.messagePublished", "source": "s", "id": "3"},
                     {"message": {"data": base64.b64encode(b"[1, 2]").decode()}})
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
    assert first["severity"] == "WARNING" and first["batch_id"] == "b-1" and first["execution_id"] == "x-1"
    assert first["part"] == 3 and first["message"] == "careful"
    assert "batch_id" not in second


def test_message_schema():
    msg = notify.build("succeeded", batch_id="b", source="gs://x/incoming/a.jsonl", counts={"total": 1})
    assert set(msg) == {"schema", "batch_id", "state", "source", "counts", "manifest", "results_prefix",
                        "results_file", "report", "error"}
    assert msg["schema"] == "dropbatch.batch.v1"
    with pytest.raises(ValueError):
        notify.build("done", batch_id="b", source="s")


@pytest.mark.parametrize("location, host", [("global", "aiplatform.googleapis.com"),
                                            ("us-central1", "us-central1-aiplatform.googleapis.com"),
                                            ("europe-west4", "europe-west4-aiplatform.googleapis.com")])
def test_vertex_endpoint_for_a_location(location, host):
    """Google's newer notebooks default to location=global, served by aiplatform.googleapis.com."""
    from dropbatch import vertex

    assert vertex.api_endpoint(location) == host
