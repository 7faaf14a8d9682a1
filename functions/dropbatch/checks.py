"""One request against the real GenerateContentRequest schema, and what the schema cannot say.

The schema walk is compiled from gemini_schema.json (derived from aiplatform_v1's descriptors) and
accepts what protobuf's json_format.ParseDict accepts, plus the lenient forms the API and its docs
use (`parts` or `contents` as one object instead of a list). On top it checks what the schema
cannot say: contents and parts present, roles, one payload per part, gs:// URIs, mime types,
base64, keys. Problems are (code, field path, message); messages never quote more than a clipped
value (`shown`).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import re

from .keys import LEGACY_LINE_LABEL, LINE_LABEL_PREFIX, SHOWN_CHARS, key_problem, shown
from .schema import ROOT, load_schema, snake_case

MAX_DEPTH = 100  # json_format.ParseDict's default max_recursion_depth
# Mime types Gemini accepts for inline and file data (Vertex AI docs, Gemini 2.x models).
MIME_TYPES = frozenset(
    [
        "application/pdf",
        "text/plain",
        "image/png",
        "image/jpeg",
        "image/webp",
        "image/heic",
        "image/heif",
        "audio/aac",
        "audio/flac",
        "audio/mp3",
        "audio/m4a",
        "audio/mpeg",
        "audio/mpga",
        "audio/mp4",
        "audio/opus",
        "audio/pcm",
        "audio/wav",
        "audio/webm",
        "video/x-flv",
        "video/quicktime",
        "video/mpeg",
        "video/mpegs",
        "video/mpg",
        "video/mp4",
        "video/webm",
        "video/wmv",
        "video/3gpp",
    ]
)
ROLES = ("user", "model")
PAYLOADS = (
    "text",
    "inline_data",
    "file_data",
    "function_call",
    "function_response",
    "executable_code",
    "code_execution_result",
)
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
_ONLINE_SHAPE = (
    "contents",
    "systemInstruction",
    "system_instruction",
    "generationConfig",
    "generation_config",
)


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


def _compile(schema: dict) -> dict:
    messages: dict = {name: {} for name in schema["messages"]}
    for full_name, fields in schema["messages"].items():
        table = messages[full_name]
        for name, spec in fields.items():
            field = _compile_field(name, spec, messages)
            table[name] = field
            table[spec["json"]] = field
        table["__name__"] = full_name
    return messages


_compiled: dict | None = None


def _root() -> dict:
    global _compiled
    if _compiled is None:
        _compiled = _compile(load_schema())
    return _compiled[ROOT]


# ---------------------------------------------------------------- paths and hints


def _path(node) -> str:
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


def _kind_name(value) -> str:
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
    msg = table["__name__"]
    gen = _compiled["google.cloud.aiplatform.v1.GenerationConfig"] if _compiled else {}
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
    close = [
        k
        for k in table
        if k != "__name__" and k.lower().replace("_", "") == name.lower().replace("_", "")
    ]
    if close:
        return f"; did you mean '{close[0]}'?"
    return ""


# ---------------------------------------------------------------- the schema walk


class _Line:
    """Problems of one line: (code, path-node, message); and whether a one-object form stood for a
    list."""

    __slots__ = ("problems", "single")

    def __init__(self):
        self.problems: list = []
        self.single = False

    def add(self, code: str, node, message: str) -> None:
        self.problems.append((code, node, message))


def _check_message(value, table: dict, node, out: _Line, depth: int) -> None:
    if depth > MAX_DEPTH:
        out.add("schema", node, f"{_path(node)} is nested more than {MAX_DEPTH} levels deep")
        return
    if not isinstance(value, dict):
        out.add("schema", node, f"{_path(node)} is {_kind_name(value)}; it must be an object")
        return
    oneofs = None
    for name, item in value.items():
        field = table.get(name)
        if field is None:
            child = (node, name)
            out.add(
                "schema",
                child,
                f"{_path(child)} is not a field of {table['__name__'].rsplit('.', 1)[-1]}"
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
    hook = _HOOKS.get(table["__name__"])
    if hook is not None:
        hook(value, node, out)


def _check_oneof(oneofs: dict | None, field: Field, name: str, node, out: _Line) -> dict:
    """The oneof members set so far, with this one; two members of one oneof are a problem."""
    oneofs = {} if oneofs is None else oneofs
    if field.oneof in oneofs:
        out.add(
            "schema",
            node,
            f"{_path(node)} sets both '{oneofs[field.oneof]}' and '{name}'; "
            f"only one of the '{field.oneof}' fields may be given",
        )
    else:
        oneofs[field.oneof] = name
    return oneofs


def _check_repeated(item, field: Field, table: dict, child, out: _Line, depth: int) -> None:
    if isinstance(item, list):
        for i, element in enumerate(item):
            if element is None and field.kind != "value":
                out.add(
                    "schema", (child, i), f"{_path((child, i))} is null; lists cannot hold null"
                )
            else:
                _check_value(element, field, (child, i), out, depth)
        return
    if isinstance(item, dict) and (table["__name__"], field.name) in _LENIENT_SINGLE:
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
    out.add("schema", child, f"{_path(child)} is {_kind_name(item)}; it must be a list{hint}")


def _check_value(value, field: Field, node, out: _Line, depth: int) -> None:
    kind = field.kind
    if kind == "message":
        _check_message(value, field.sub, node, out, depth + 1)
    elif kind == "string":
        if not isinstance(value, str):
            out.add("schema", node, f"{_path(node)} is {_kind_name(value)}; it must be a string")
    else:
        _SCALAR_CHECKS.get(kind, _no_check)(value, field, node, out, depth)


def _check_bool(value, field: Field, node, out: _Line, depth: int) -> None:
    if not isinstance(value, bool):
        out.add(
            "schema",
            node,
            f"{_path(node)} is {_kind_name(value)}; it must be true or false (no quotes)",
        )


def _check_number(value, field: Field, node, out: _Line, depth: int) -> None:
    kind = field.kind
    problem = (
        _float_problem(value, kind) if kind in ("double", "float") else _int_problem(value, kind)
    )
    if problem:
        out.add("schema", node, f"{_path(node)} {problem}")


def _check_enum(value, field: Field, node, out: _Line, depth: int) -> None:
    if isinstance(value, str) and value in field.enum:
        return
    try:
        ok = not field.closed and -(2**31) <= int(value) < 2**31
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        choices = ", ".join(sorted(field.enum)[:12])
        out.add("schema", node, f"{_path(node)} is {shown(value)}; use one of {choices}")


def _check_bytes(value, field: Field, node, out: _Line, depth: int) -> None:
    if not isinstance(value, str) or _base64_problem(value, strict=False):
        out.add("schema", node, f"{_path(node)} must be base64 text")


def _check_map(value, field: Field, node, out: _Line, depth: int) -> None:
    if not isinstance(value, dict):
        out.add("schema", node, f"{_path(node)} is {_kind_name(value)}; it must be an object")
        return
    for k, v in value.items():
        child = (node, k)
        if field.key in _INT_RANGES and _int_problem(k, field.key):
            out.add("schema", child, f"{_path(child)}: map key {shown(k)} must be a whole number")
        if field.key == "bool" and k not in ("true", "false"):
            out.add("schema", child, f"{_path(child)}: map key {shown(k)} must be true or false")
        if v is None:
            out.add("schema", child, f"{_path(child)} is null; map values cannot be null")
        else:
            _check_value(v, field.value, child, out, depth)


def _check_struct(value, field: Field, node, out: _Line, depth: int) -> None:
    if not isinstance(value, dict):
        out.add("schema", node, f"{_path(node)} is {_kind_name(value)}; it must be an object")
    elif _json_depth(value, depth + 1) > MAX_DEPTH:
        out.add("schema", node, f"{_path(node)} is nested more than {MAX_DEPTH} levels deep")


def _check_json_value(value, field: Field, node, out: _Line, depth: int) -> None:
    if _json_depth(value, depth) > MAX_DEPTH:
        out.add("schema", node, f"{_path(node)} is nested more than {MAX_DEPTH} levels deep")


def _check_list(value, field: Field, node, out: _Line, depth: int) -> None:
    if not isinstance(value, list):
        out.add("schema", node, f"{_path(node)} is {_kind_name(value)}; it must be a list")


def _check_duration(value, field: Field, node, out: _Line, depth: int) -> None:
    if not isinstance(value, str) or not _DURATION_RE.match(value):
        out.add("schema", node, f'{_path(node)} is {shown(value)}; write a duration like "1.5s"')


def _check_timestamp(value, field: Field, node, out: _Line, depth: int) -> None:
    if not isinstance(value, str) or not _TIMESTAMP_RE.match(value):
        out.add(
            "schema",
            node,
            f'{_path(node)} is {shown(value)}; write an RFC 3339 time like "2026-01-01T00:00:00Z"',
        )


def _check_fieldmask(value, field: Field, node, out: _Line, depth: int) -> None:
    if not isinstance(value, str):
        out.add("schema", node, f"{_path(node)} must be a string of comma-separated field paths")


def _no_check(value, field: Field, node, out: _Line, depth: int) -> None:
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
        return f"is {_kind_name(value)}; it must be a whole number"
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
        return f"is {_kind_name(value)}; it must be a whole number"
    lo, hi = _INT_RANGES[kind]
    if not lo <= value <= hi:
        return f"is {shown(value)}; it must be between {lo} and {hi}"
    return None


def _float_problem(value, kind: str) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return f"is {_kind_name(value)}; it must be a number"
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


def _base64_problem(value: str, strict: bool) -> str | None:
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


# ---------------------------------------------------------------- checks the schema cannot express


def _first(obj: dict, *names):
    for name in names:
        value = obj.get(name)
        if value is not None:
            return value
    return None


def _check_request(request: dict, node, out: _Line) -> None:
    contents = request.get("contents")
    if contents is None or contents == [] or contents == {}:
        out.add(
            "empty_contents",
            (node, "contents"),
            'request.contents is missing or empty; give at least one {"role": "user", "parts": '
            "[...]}",
        )
    labels = request.get("labels")
    if isinstance(labels, dict):
        _check_labels(labels, (node, "labels"), out)


# Request labels, as Vertex takes them (cloud.google.com/vertex-ai/generative-ai/docs/multimodal/
# add-labels-to-api-calls): keys start with a lowercase letter; keys and values hold lowercase
# letters, digits, `_` and `-` (international characters allowed), at most 63 characters; at most 64
# labels a request, of which dropbatch keeps RESERVED_LABELS for the line it stages each request
# with (keys.line_labels).
MAX_LABELS, RESERVED_LABELS, MAX_LABEL_CHARS = 64, 5, 63
_LABEL_KEY = re.compile(r"[^\W\d_][\w-]*\Z")
_LABEL_VALUE = re.compile(r"[\w-]*\Z")


def _check_labels(labels: dict, node, out: _Line) -> None:
    if len(labels) > MAX_LABELS - RESERVED_LABELS:
        out.add(
            "invalid_label",
            node,
            f"{_path(node)} has {len(labels)} labels; at most "
            f"{MAX_LABELS - RESERVED_LABELS} (Vertex takes {MAX_LABELS}, dropbatch adds up to "
            f"{RESERVED_LABELS})",
        )
    for key, value in labels.items():
        child = (node, key)
        if key.startswith(LINE_LABEL_PREFIX) or key == LEGACY_LINE_LABEL:
            out.add(
                "invalid_label",
                child,
                f"{_path(child)}: label keys starting with {LINE_LABEL_PREFIX!r} are "
                "dropbatch's own; choose another key",
            )
        elif len(key) > MAX_LABEL_CHARS or not _LABEL_KEY.match(key) or key != key.lower():
            out.add(
                "invalid_label",
                child,
                f"{_path(child)}: label key {shown(key)} must start with a lowercase "
                f"letter and hold at most {MAX_LABEL_CHARS} lowercase letters, digits, '_' or '-'",
            )
        if isinstance(value, str) and (
            len(value) > MAX_LABEL_CHARS or not _LABEL_VALUE.match(value) or value != value.lower()
        ):
            out.add(
                "invalid_label",
                child,
                f"{_path(child)}: label value {shown(value)} must hold at most "
                f"{MAX_LABEL_CHARS} lowercase letters, digits, '_' or '-'",
            )


def _check_content(content: dict, node, out: _Line) -> None:
    role = content.get("role")
    if role is not None and isinstance(role, str) and role.lower() not in ROLES:
        hint = (
            "; put system prompts in request.systemInstruction" if role.lower() == "system" else ""
        )
        out.add(
            "invalid_role",
            (node, "role"),
            f"{_path((node, 'role'))} is {shown(role)}; use 'user' or 'model'{hint}",
        )
    parts = content.get("parts")
    if parts is None or parts == [] or parts == {}:
        out.add(
            "empty_parts",
            (node, "parts"),
            f"{_path((node, 'parts'))} is missing or empty; "
            'give at least one part, e.g. {"text": "..."}',
        )


_PAYLOAD_NAMES = {name: name for name in PAYLOADS} | {
    "inlineData": "inline_data",
    "fileData": "file_data",
    "functionCall": "function_call",
    "functionResponse": "function_response",
    "executableCode": "executable_code",
    "codeExecutionResult": "code_execution_result",
}


def _check_part(part: dict, node, out: _Line) -> None:
    given = [name for name, value in part.items() if value is not None and name in _PAYLOAD_NAMES]
    if not given:
        out.add(
            "part_payload",
            node,
            f"{_path(node)} has no content; give exactly one of text, inlineData, "
            "fileData, functionCall, functionResponse",
        )


def _check_mime(obj: dict, node, out: _Line) -> None:
    mime = _first(obj, "mimeType", "mime_type")
    if mime is None:
        out.add(
            "mime_type",
            (node, "mimeType"),
            f"{_path((node, 'mimeType'))} is missing; "
            'give the media type, e.g. "image/jpeg" or "application/pdf"',
        )
    elif isinstance(mime, str) and mime.lower() not in MIME_TYPES:
        out.add(
            "mime_type",
            (node, "mimeType"),
            f"{_path((node, 'mimeType'))} is {shown(mime)}, which Gemini does not "
            "accept; use an image, audio, video, PDF or text/plain type",
        )


def _check_file_data(file_data: dict, node, out: _Line) -> None:
    uri = _first(file_data, "fileUri", "file_uri")
    if uri is None:
        out.add(
            "file_uri",
            (node, "fileUri"),
            f"{_path((node, 'fileUri'))} is missing; give a gs:// URI",
        )
    elif isinstance(uri, str) and not (uri.startswith("gs://") and len(uri) > 5 and "/" in uri[5:]):
        out.add(
            "file_uri",
            (node, "fileUri"),
            f"{_path((node, 'fileUri'))} is {shown(uri)}; batch jobs read "
            "files from Cloud Storage: use gs://BUCKET/OBJECT (or send the bytes as inlineData)",
        )
    _check_mime(file_data, node, out)


def _check_blob(blob: dict, node, out: _Line) -> None:
    _check_mime(blob, node, out)
    data = blob.get("data")
    if (
        isinstance(data, str)
        and not _base64_problem(data, strict=False)
        and _base64_problem(data, strict=True)
    ):
        out.add(
            "invalid_base64",
            (node, "data"),
            f"{_path((node, 'data'))} is not valid base64; encode the bytes "
            "with base64 (e.g. base64.b64encode(data).decode())",
        )
    elif data is None or data == "":
        out.add(
            "invalid_base64",
            (node, "data"),
            f"{_path((node, 'data'))} is empty; give the base64 bytes",
        )


_HOOKS = {
    ROOT: _check_request,
    "google.cloud.aiplatform.v1.Content": _check_content,
    "google.cloud.aiplatform.v1.Part": _check_part,
    "google.cloud.aiplatform.v1.FileData": _check_file_data,
    "google.cloud.aiplatform.v1.Blob": _check_blob,
}


def as_lists(request: dict) -> dict:
    """The request with `contents` and every Content's `parts` as lists, as dropbatch stages it
    (DESIGN.md: the lenient one-object forms are accepted and staged as a list). Only call on a
    valid request."""
    request = dict(request)
    for name in ("contents", "systemInstruction", "system_instruction"):
        value = request.get(name)
        if name == "contents" and isinstance(value, dict):
            value = [value]
        if isinstance(value, list):
            request[name] = [_parts_as_list(c) for c in value]
        elif isinstance(value, dict):
            request[name] = _parts_as_list(value)
    return request


def _parts_as_list(content):
    if isinstance(content, dict) and isinstance(content.get("parts"), dict):
        return {**content, "parts": [content["parts"]]}
    return content


_SEGMENT = re.compile(r"\[\d+\]|\.?([A-Za-z_][A-Za-z0-9_]*)")


def safe_field(field: str | None, also: frozenset = frozenset()) -> str | None:
    """The field path when every name in it is one of the schema's own or in `also` (a model
    family's field names), so that it can go into a message; else None: a path through a user's
    unknown field or map key would quote user text."""
    if not field:
        return None
    _root()
    known = _known_names() | also
    pos = 0
    while pos < len(field):
        m = _SEGMENT.match(field, pos)
        if m is None or (m.group(1) is not None and m.group(1) not in known):
            return None
        pos = m.end()
    return field


@functools.cache
def _known_names() -> frozenset:
    return frozenset(
        {"request", "key"}
        | {name for table in _compiled.values() for name in table if name != "__name__"}
    )


def check_request(request) -> list[tuple[str, str, str]]:
    """Problems of one request as (code, field path, message); empty when the request is good."""
    return _request_problems(request)[0]


def _request_problems(request) -> tuple[list[tuple[str, str, str]], bool]:
    """(problems, whether contents and every parts are lists as written: no one-object form to make
    a list)."""
    out = _Line()
    try:
        _check_message(request, _root(), (None, "request"), out, 1)
    except RecursionError:
        return [("schema", "request", "request is nested too deeply")], False
    return [(code, _path(node), message) for code, node, message in out.problems], not out.single


def check_message(value, message: str, path: str) -> list[tuple[str, str, str]]:
    """Problems of `value` as the aiplatform.v1 message `message` (for example "Content"), with
    paths under `path`: the same schema walk and checks as a request's."""
    _root()
    out = _Line()
    try:
        _check_message(
            value, _compiled[f"google.cloud.aiplatform.v1.{message}"], (None, path), out, 1
        )
    except RecursionError:
        return [("schema", path, f"{path} is nested too deeply")]
    return [(code, _path(node), text) for code, node, text in out.problems]


def check_line(obj) -> tuple[list[tuple[str, str | None, str]], object, bool]:
    """Problems of one parsed line, its explicit key (or None), and whether its request's contents
    and parts are lists as written (as_lists would change nothing)."""
    if not isinstance(obj, dict):
        return (
            [
                (
                    "not_object",
                    None,
                    f"the line is {_kind_name(obj)}; each line must be an object "
                    'like {"request": {"contents": [...]}}',
                )
            ],
            None,
            False,
        )
    problems: list = []
    for name in obj:
        if name not in ("request", "key"):
            if name in _ONLINE_SHAPE or name == "model":
                hint = (
                    'this looks like a bare request; wrap it as {"request": {"contents": [...], '
                    "...}}"
                    if "request" not in obj
                    else f"move '{name}' inside request"
                )
            elif name == "content":
                hint = (
                    "this looks like a text-embedding instance; send the file to an embedding "
                    "model (object "
                    "metadata model, or `dropbatch run --model text-embedding-005`)"
                )
            elif name == "custom_id":
                hint = (
                    "this looks like a Claude line; send the file to a Claude model (object "
                    "metadata model, "
                    "or `dropbatch run --model claude-...`)"
                )
            elif name == "messages":
                hint = (
                    'this looks like an OpenAI chat request; write {"request": {"contents": '
                    '[{"role": '
                    '"user", "parts": [{"text": "..."}]}]}}'
                )
            else:
                hint = 'a line holds only "request" and an optional "key"'
            problems.append(
                (
                    "schema",
                    _path((None, name)),
                    f"{shown(name)} is not allowed at the top of a line; {hint}",
                )
            )
    request, lists = obj.get("request"), False
    if request is None:
        if not problems:
            problems.append(
                (
                    "missing_request",
                    "request",
                    'the line has no "request"; write {"request": {"contents": [...]}}',
                )
            )
    else:
        found, lists = _request_problems(request)
        problems.extend(found)
    key = obj.get("key")
    if key is not None:
        problem = key_problem(key)
        if problem:
            problems.append(("invalid_key", "key", problem))
            key = None
    return problems, key, lists


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
