"""CloudEvents in, plain values out: storage finalize (Eventarc or a GCS notification on Pub/Sub)
and Pub/Sub."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt

import orjson

from .errors import PermanentError

PUBSUB = "google.cloud.pubsub.topic.v1.messagePublished"
_GCS_EVENT_TYPES = {
    "OBJECT_FINALIZE": "finalized",
    "OBJECT_DELETE": "deleted",
    "OBJECT_ARCHIVE": "archived",
    "OBJECT_METADATA_UPDATE": "metadataUpdated",
}


@dataclasses.dataclass(frozen=True)
class ObjectEvent:
    bucket: str
    name: str
    generation: int
    kind: str  # finalized, deleted, archived, metadataUpdated
    time: dt.datetime | None


def parse_time(value) -> dt.datetime | None:
    if not value:
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def now(at: dt.datetime | None = None) -> str:
    """A timestamp as the ledger and the manifest write them: UTC, milliseconds, Z."""
    return (at or utcnow()).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def age_s(value, at: dt.datetime | None = None) -> float:
    """Seconds since a timestamp (a datetime or an ISO string) until `at` (default: now); 0 for
    none."""
    when = parse_time(value)
    return 0.0 if when is None else ((at or utcnow()) - when).total_seconds()


def pubsub_message(event) -> tuple[bytes, dict, dt.datetime | None]:
    """(data, attributes, publish time) of a messagePublished CloudEvent."""
    data = event.data if isinstance(event.data, dict) else {}
    message = data.get("message") or {}
    raw = message.get("data") or ""
    try:
        payload = base64.b64decode(raw) if raw else b""
    except (ValueError, TypeError):
        raise PermanentError("the Pub/Sub message data is not base64") from None
    when = parse_time(
        message.get("publishTime") or message.get("publish_time") or event.get("time")
    )
    return payload, message.get("attributes") or {}, when


def pubsub_json(event) -> tuple[dict, dt.datetime | None]:
    payload, _, when = pubsub_message(event)
    try:
        body = orjson.loads(payload) if payload else {}
    except orjson.JSONDecodeError:
        raise PermanentError("the Pub/Sub message is not JSON") from None
    if not isinstance(body, dict):
        raise PermanentError("the Pub/Sub message is not a JSON object")
    return body, when


def object_event(event) -> ObjectEvent | None:
    """The object an event is about, from either shape; None for events that are not about an
    object."""
    ce_type = event.get("type") or ""
    if ce_type.startswith("google.cloud.storage.object.v1."):
        data = event.data if isinstance(event.data, dict) else {}
        kind = ce_type.rsplit(".", 1)[-1]
        return ObjectEvent(
            bucket=data.get("bucket", ""),
            name=data.get("name", ""),
            generation=int(data.get("generation") or 0),
            kind=kind,
            time=parse_time(event.get("time") or data.get("updated")),
        )
    if ce_type == PUBSUB:
        _, attrs, when = pubsub_message(event)
        if "objectId" not in attrs:
            return None
        return ObjectEvent(
            bucket=attrs.get("bucketId", ""),
            name=attrs["objectId"],
            generation=int(attrs.get("objectGeneration") or 0),
            kind=_GCS_EVENT_TYPES.get(attrs.get("eventType", ""), attrs.get("eventType", "")),
            time=parse_time(attrs.get("eventTime")) or when,
        )
    return None
