"""The schema walk (checks.py): a value against a compiled aiplatform.v1 message, field by field,
accepting what protobuf's json_format.ParseDict accepts plus the API's lenient one-object forms.
Each message may carry a hook (content_checks) for what the schema cannot say."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re

from .keys import SHOWN_CHARS, shown
from .schema import ROOT, snake_case

MAX_DEPTH = 100  # json_format.ParseDict's default max_recursion_depth
_INT_RANGES = {
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}
_FLOAT_MAX = 3.4028234663852886e38
_DURATION_RE = re.compile(r"-?\d+(\.\d{1,9})?s\Z")
_TIMESTAMP_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)\Z")
_LENIENT_SINGLE = {
    ("google.cloud.aiplatform.v1.Content", "parts"),
    ("google.cloud.aiplatform.v1.GenerateContentRequest", "contents"),
}


# ---------------------------------------------------------------- compiled schema


@dataclasses.dataclass(slots=True)
class Field:
    name: str
    kind: str
    repeated: bool
    oneof: str | None
    message: str | None = None
    sub: dict | None = None
    enum: frozenset | None = None
    closed: bool = False
    key: str | None = None
    value: Field | None = None


def _compile_field(name: str, spec: dict, messages: dict) -> Field:
    f = Field(
        name, spec["kind"], spec.get("repeated", False), spec.get("oneof"), spec.get("message")
    )
    if f.kind == "enum":
        f.enum, f.closed = frozenset(spec["enum"]), spec.get("closed", False)
    elif f.kind == "map":
        f.key, f.value = spec["key"], _compile_field("value", spec["value"], messages)
    if f.message:
        f.sub = messages[f.message]
    return f


class Message(dict):
    """A compiled message: its fields by proto and JSON name (nothing else, so that no field a user
    writes is taken for anything but a field), its full name, and its hook: what the schema cannot
    say (content_checks), called after its fields were walked."""

    __slots__ = ("name", "hook")

    def __init__(self, name: str):
        super().__init__()
        self.name, self.hook = name, None


def compile_schema(schema: dict) -> dict[str, Message]:
    messages = {name: Message(name) for name in schema["messages"]}
    for full_name, fields in schema["messages"].items():
        table = messages[full_name]
        for name, spec in fields.items():
            field = _compile_field(name, spec, messages)
            table[name] = field
            table[spec["json"]] = field
    return messages


# ---------------------------------------------------------------- paths and hints


def path_of(node) -> str:
    parts = []
    while node is not None:
        node, seg = node
        parts.append(seg)
    out = ""
    for seg in reversed(parts):
        if isinstance(seg, str) and len(seg) > SHOWN_CHARS:  # a user's field or map key: clipped
            seg = f"{seg[:SHOWN_CHARS]}...({len(seg):,} chars)"
        out += f"[{seg}]" if isinstance(seg, int) else (f".{seg}" if out else seg)
    return out


def kind_name(value) -> str:
    if value is None:
        return "null"
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)


def _unknown_field_hint(table: dict, name: str) -> str:
    msg = table.name
    gen = table["generationConfig"].sub if msg == ROOT else {}
    if msg == ROOT:
        if name in gen:
            return f'; it belongs under generationConfig: {{"generationConfig": {{"{name}": ...}}}}'
        if name == "config":
            return (
                "; 'config' is the google-genai SDK's argument, not a request field: put "
                "generation "
                "settings in generationConfig and systemInstruction, tools, safetySettings beside "
                "contents"
            )
    if name.endswith("_") and name[:-1] in table:
        return f"; '{name}' is the Python SDK's name, in JSON write '{name[:-1]}'"
    if msg == "google.cloud.aiplatform.v1.Content" and name == "content":
        return '; write the message as parts: [{"text": "..."}]'
    snake = snake_case(name)
    if snake != name and snake in table:
        return ""
    close = [k for k in table if k.lower().replace("_", "") == name.lower().replace("_", "")]
    if close:
        return f"; did you mean '{close[0]}'?"
    return ""


# ---------------------------------------------------------------- the schema walk


class Line:
    """Problems of one line: (code, path-node, message); and whether a one-object form stood for a
    list."""

    __slots__ = ("problems", "single")

    def __init__(self):
        self.problems: list = []
        self.single = False

    def add(self, code: str, node, message: str) -> None:
        self.problems.append((code, node, message))


def walk_message(value, table: dict, node, out: Line, depth: int) -> None:
    if depth > MAX_DEPTH:
        out.add("schema", node, f"{path_of(node)} is nested more than {MAX_DEPTH} levels deep")
        return
    if not isinstance(value, dict):
        out.add("schema", node, f"{path_of(node)} is {kind_name(value)}; it must be an object")
        return
    oneofs = None
    for name, item in value.items():
        field = table.get(name)
        if field is None:
            child = (node, name)
            out.add(
                "schema",
                child,
                f"{path_of(child)} is not a field of {table.name.rsplit('.', 1)[-1]}"
                + _unknown_field_hint(table, name),
            )
            continue
        if item is None:
            continue  # null clears a field, as Vertex's own echo writes unset oneof members
        if field.oneof is not None:
            oneofs = _check_oneof(oneofs, field, name, node, out)
        if field.repeated:
            _check_repeated(item, field, table, (node, name), out, depth)
        else:
            _check_value(item, field, (node, name), out, depth)
    if table.hook is not None:
        table.hook(value, node, out)


def _check_oneof(oneofs: dict | None, field: Field, name: str, node, out: Line) -> dict:
    """The oneof members set so far, with this one; two members of one oneof are a problem."""
    oneofs = {} if oneofs is None else oneofs
    if field.oneof in oneofs:
        out.add(
            "schema",
            node,
            f"{path_of(node)} sets both '{oneofs[field.oneof]}' and '{name}'; "
            f"only one of the '{field.oneof}' fields may be given",
        )
    else:
        oneofs[field.oneof] = name
    return oneofs


def _check_repeated(item, field: Field, table: dict, child, out: Line, depth: int) -> None:
    if isinstance(item, list):
        for i, element in enumerate(item):
            if element is None and field.kind != "value":
                out.add(
                    "schema", (child, i), f"{path_of((child, i))} is null; lists cannot hold null"
                )
            else:
                _check_value(element, field, (child, i), out, depth)
        return
    if isinstance(item, dict) and (table.name, field.name) in _LENIENT_SINGLE:
        out.single = True
        _check_value(item, field, (child, 0), out, depth)
        return
    hint = ""
    if field.name in ("parts", "contents") and isinstance(item, str):
        hint = (
            '; write e.g. [{"text": "..."}]'
            if field.name == "parts"
            else '; write e.g. [{"role": "user", "parts": [{"text": "..."}]}]'
        )
    out.add("schema", child, f"{path_of(child)} is {kind_name(item)}; it must be a list{hint}")


def _check_value(value, field: Field, node, out: Line, depth: int) -> None:
    kind = field.kind
    if kind == "message":
        walk_message(value, field.sub, node, out, depth + 1)
    elif kind == "string":
        if not isinstance(value, str):
            out.add("schema", node, f"{path_of(node)} is {kind_name(value)}; it must be a string")
    else:
        _SCALAR_CHECKS.get(kind, _no_check)(value, field, node, out, depth)


def _check_bool(value, field: Field, node, out: Line, depth: int) -> None:
    if not isinstance(value, bool):
        out.add(
            "schema",
            node,
            f"{path_of(node)} is {kind_name(value)}; it must be true or false (no quotes)",
        )


def _check_number(value, field: Field, node, out: Line, depth: int) -> None:
    kind = field.kind
    problem = (
        _float_problem(value, kind) if kind in ("double", "float") else _int_problem(value, kind)
    )
    if problem:
        out.add("schema", node, f"{path_of(node)} {problem}")


def _check_enum(value, field: Field, node, out: Line, depth: int) -> None:
    if isinstance(value, str) and value in field.enum:
        return
    try:
        ok = not field.closed and -(2**31) <= int(value) < 2**31
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        choices = ", ".join(sorted(field.enum)[:12])
        out.add("schema", node, f"{path_of(node)} is {shown(value)}; use one of {choices}")


def _check_bytes(value, field: Field, node, out: Line, depth: int) -> None:
    if not isinstance(value, str) or base64_problem(value, strict=False):
        out.add("schema", node, f"{path_of(node)} must be base64 text")


def _check_map(value, field: Field, node, out: Line, depth: int) -> None:
    if not isinstance(value, dict):
        out.add("schema", node, f"{path_of(node)} is {kind_name(value)}; it must be an object")
        return
    for k, v in value.items():
        child = (node, k)
        if field.key in _INT_RANGES and _int_problem(k, field.key):
            out.add("schema", child, f"{path_of(child)}: map key {shown(k)} must be a whole number")
        if field.key == "bool" and k not in ("true", "false"):
            out.add("schema", child, f"{path_of(child)}: map key {shown(k)} must be true or false")
        if v is None:
            out.add("schema", child, f"{path_of(child)} is null; map values cannot be null")
        else:
            _check_value(v, field.value, child, out, depth)


def _check_struct(value, field: Field, node, out: Line, depth: int) -> None:
    if not isinstance(value, dict):
        out.add("schema", node, f"{path_of(node)} is {kind_name(value)}; it must be an object")
    elif _json_depth(value, depth + 1) > MAX_DEPTH:
        out.add("schema", node, f"{path_of(node)} is nested more than {MAX_DEPTH} levels deep")


def _check_json_value(value, field: Field, node, out: Line, depth: int) -> None:
    if _json_depth(value, depth) > MAX_DEPTH:
        out.add("schema", node, f"{path_of(node)} is nested more than {MAX_DEPTH} levels deep")


def _check_list(value, field: Field, node, out: Line, depth: int) -> None:
    if not isinstance(value, list):
        out.add("schema", node, f"{path_of(node)} is {kind_name(value)}; it must be a list")


def _check_duration(value, field: Field, node, out: Line, depth: int) -> None:
    if not isinstance(value, str) or not _DURATION_RE.match(value):
        out.add("schema", node, f'{path_of(node)} is {shown(value)}; write a duration like "1.5s"')


def _check_timestamp(value, field: Field, node, out: Line, depth: int) -> None:
    if not isinstance(value, str) or not _TIMESTAMP_RE.match(value):
        out.add(
            "schema",
            node,
            f"{path_of(node)} is {shown(value)}; write an RFC 3339 time like "
            '"2026-01-01T00:00:00Z"',
        )


def _check_fieldmask(value, field: Field, node, out: Line, depth: int) -> None:
    if not isinstance(value, str):
        out.add("schema", node, f"{path_of(node)} must be a string of comma-separated field paths")


def _no_check(value, field: Field, node, out: Line, depth: int) -> None:
    """A kind the schema walk has no rule for (as the elif chain before it had none)."""


def _json_depth(value, depth: int) -> int:
    """The message depth json_format reaches for a Value: two levels per JSON object or list."""
    depth += 1
    if depth > MAX_DEPTH:
        return depth
    if isinstance(value, dict):
        return max((_json_depth(v, depth + 1) for v in value.values()), default=depth + 1)
    if isinstance(value, list):
        return max((_json_depth(v, depth + 1) for v in value), default=depth + 1)
    return depth


def _int_problem(value, kind: str) -> str | None:
    if isinstance(value, bool):
        return f"is {kind_name(value)}; it must be a whole number"
    if isinstance(value, float):
        if not value.is_integer():
            return f"is {shown(value)}; it must be a whole number"
        value = int(value)
    elif isinstance(value, str):
        try:
            if " " in value:
                raise ValueError
            try:
                value = int(value)
            except ValueError:
                f = float(value)
                if not f.is_integer():
                    raise
                value = int(f)
        except (ValueError, OverflowError):
            return f"is {shown(value)}; it must be a whole number"
    elif not isinstance(value, int):
        return f"is {kind_name(value)}; it must be a whole number"
    lo, hi = _INT_RANGES[kind]
    if not lo <= value <= hi:
        return f"is {shown(value)}; it must be between {lo} and {hi}"
    return None


def _float_problem(value, kind: str) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return f"is {kind_name(value)}; it must be a number"
    if isinstance(value, str):
        if value in ("NaN", "Infinity", "-Infinity"):
            return None
        try:
            if value == "nan":
                raise ValueError
            float(value)
        except ValueError:
            return f"is {shown(value)}; it must be a number"
        return None
    if kind == "float" and abs(value) > _FLOAT_MAX:
        return f"is {shown(value)}; it is too large for a 32-bit float"
    return None


def base64_problem(value: str, strict: bool) -> str | None:
    """json_format decodes url-safe base64 leniently; strict mode asks for what Vertex decodes."""
    try:
        if strict:
            base64.b64decode(value.replace("-", "+").replace("_", "/"), validate=True)
        else:
            encoded = value.encode("utf-8")
            base64.urlsafe_b64decode(encoded + b"=" * (4 - len(encoded) % 4))
    except (binascii.Error, ValueError):
        return "invalid"
    return None


# The checks of every field kind but message and string (those two are _check_value's own: most
# fields are one of them). A kind the schema gives and no rule names is not checked.
_SCALAR_CHECKS = {
    "bool": _check_bool,
    "double": _check_number,
    "float": _check_number,
    **dict.fromkeys(_INT_RANGES, _check_number),
    "enum": _check_enum,
    "bytes": _check_bytes,
    "map": _check_map,
    "struct": _check_struct,
    "value": _check_json_value,
    "list": _check_list,
    "duration": _check_duration,
    "timestamp": _check_timestamp,
    "fieldmask": _check_fieldmask,
}
