"""The GenerateContentRequest schema, derived from google.cloud.aiplatform_v1's descriptors.

`build_schema()` reads the real descriptors (slow import); the result is snapshotted in
gemini_schema.json so validation starts fast. A unit test keeps the snapshot equal to the
descriptors of the installed library: `python -m dropbatch.schema` rewrites it.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import orjson

SNAPSHOT = Path(__file__).with_name("gemini_schema.json")
ROOT = "google.cloud.aiplatform.v1.GenerateContentRequest"
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")

# Field kinds, by protobuf FieldDescriptor.TYPE_*.
_KIND = {
    1: "double",
    2: "float",
    3: "int64",
    4: "uint64",
    5: "int32",
    6: "uint64",
    7: "uint32",
    8: "bool",
    9: "string",
    12: "bytes",
    13: "uint32",
    15: "int32",
    16: "int64",
    17: "int32",
    18: "int64",
}
_WELL_KNOWN = {
    "google.protobuf.Struct": "struct",
    "google.protobuf.Value": "value",
    "google.protobuf.ListValue": "list",
    "google.protobuf.Duration": "duration",
    "google.protobuf.Timestamp": "timestamp",
    "google.protobuf.FieldMask": "fieldmask",
}


@functools.lru_cache(maxsize=4096)
def snake_case(name: str) -> str:
    """A JSON (camelCase) field name as the proto (snake_case) one: generationConfig ->
    generation_config."""
    return _CAMEL.sub("_", name).lower()


def _field_spec(field, messages: dict) -> dict:
    spec: dict = {}
    if field.type == 14:
        spec["kind"] = "enum"
        spec["enum"] = sorted(v.name for v in field.enum_type.values)
        spec["closed"] = bool(getattr(field.enum_type, "is_closed", False))
    elif field.type == 11:
        mt = field.message_type
        if mt.GetOptions().map_entry:
            spec["kind"] = "map"
            spec["key"] = _KIND[mt.fields_by_name["key"].type]
            spec["value"] = _field_spec(mt.fields_by_name["value"], messages)
        elif mt.full_name in _WELL_KNOWN:
            spec["kind"] = _WELL_KNOWN[mt.full_name]
        elif mt.full_name.startswith("google.protobuf.") and mt.full_name.endswith("Value"):
            # wrapper types take the bare scalar
            spec["kind"] = _KIND[mt.fields_by_name["value"].type]
        else:
            spec["kind"] = "message"
            spec["message"] = mt.full_name
            _collect(mt, messages)
    else:
        spec["kind"] = _KIND[field.type]
    return spec


def _collect(descriptor, messages: dict) -> None:
    if descriptor.full_name in messages:
        return
    fields: dict = {}
    messages[descriptor.full_name] = fields
    for f in descriptor.fields:
        # proto-plus renames fields that clash with Python names (type -> type_); the API knows only
        # the real name.
        name = f.name[:-1] if f.name.endswith("_") else f.name
        spec = _field_spec(f, messages)
        spec["json"] = f.json_name
        spec["repeated"] = f.is_repeated and spec["kind"] != "map"
        oneof = f.containing_oneof
        # Synthetic oneofs (proto3 `optional`) are not real choices.
        if oneof is not None and not (len(oneof.fields) == 1 and oneof.name == "_" + f.name):
            spec["oneof"] = oneof.name
        fields[name] = spec


def build_schema() -> dict:
    from google.cloud.aiplatform_v1.types import prediction_service

    messages: dict = {}
    _collect(prediction_service.GenerateContentRequest.pb().DESCRIPTOR, messages)
    return {"root": ROOT, "messages": dict(sorted(messages.items()))}


@functools.cache
def load_schema() -> dict:
    return orjson.loads(SNAPSHOT.read_bytes())


def write_snapshot() -> None:
    SNAPSHOT.write_bytes(
        orjson.dumps(build_schema(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )


if __name__ == "__main__":
    write_snapshot()
    print(f"wrote {SNAPSHOT}")
