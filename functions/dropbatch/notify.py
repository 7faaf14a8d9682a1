"""The completion messages (schema dropbatch.batch.v1): one builder, one publisher."""

from __future__ import annotations

import functools

import orjson

from . import logs
from .config import Config
from .errors import TransientError

SCHEMA = "dropbatch.batch.v1"
STATES = ("rejected", "submitted", "stalled", "succeeded", "partially_succeeded", "failed", "cancelled", "expired")
TERMINAL = ("rejected", "succeeded", "partially_succeeded", "failed", "cancelled", "expired")


@functools.cache
def publisher():
    from google.cloud import pubsub_v1

    return pubsub_v1.PublisherClient()


def build(state: str, *, batch_id: str, source: str, counts: dict | None = None, manifest: str | None = None,
          results_prefix: str | None = None, results_file: str | None = None, report: str | None = None,
          error: str | None = None) -> dict:
    if state not in STATES:
        raise ValueError(f"unknown batch state {state!r}")
    return {"schema": SCHEMA, "batch_id": batch_id, "state": state, "source": source, "counts": counts,
            "manifest": manifest, "results_prefix": results_prefix, "results_file": results_file, "report": report,
            "error": error}


def publish_json(config: Config, topic: str, body: dict, **attributes) -> None:
    client = publisher()
    path = client.topic_path(config.project, topic)
    try:
        client.publish(path, orjson.dumps(body), **{k: str(v) for k, v in attributes.items()}).result(timeout=60)
    except Exception as exc:  # the publish future raises api_core errors and timeouts alike: retry the step
        raise TransientError(f"publishing to {topic} failed: {exc}") from exc


def send(config: Config, message: dict) -> None:
    publish_json(config, config.notifications_topic, message, batch_id=message["batch_id"], state=message["state"])
    logs.info(f"batch {message['state']}", batch_id=message["batch_id"], state=message["state"],
              counts=message["counts"])
