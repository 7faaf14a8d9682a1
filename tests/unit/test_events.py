"""events: the storage event's two shapes and the Pub/Sub message's body."""

from __future__ import annotations

import base64

import pytest
from cloudevents.http import CloudEvent
from dropbatch.errors import PermanentError
from dropbatch.events import object_event, pubsub_json


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
