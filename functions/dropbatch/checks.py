"""One request against the real GenerateContentRequest schema, and what the schema cannot say.

The schema walk is compiled from gemini_schema.json (derived from aiplatform_v1's descriptors) and
accepts what protobuf's json_format.ParseDict accepts, plus the lenient forms the API and its docs
use (`parts` or `contents` as one object instead of a list). On top it checks what the schema
cannot say: contents and parts present, roles, one payload per part, gs:// URIs, mime types,
base64, keys. Problems are (code, field path, message); messages never quote more than a clipped
value (`shown`)."""

from __future__ import annotations

import functools
import re

from .keys import key_problem, shown
from .schema import ROOT, load_schema
from .schema_walk import Line, compile_schema, kind_name, path_of, walk_message

_ONLINE_SHAPE = (
    "contents",
    "systemInstruction",
    "system_instruction",
    "generationConfig",
    "generation_config",
)


_compiled: dict | None = None


def _root() -> dict:
    """The compiled schema's request message (compiled on first use), each message with its content
    checks as its hook."""
    global _compiled
    if _compiled is None:
        from .content_checks import HOOKS

        compiled = compile_schema(load_schema())
        for name, hook in HOOKS.items():
            compiled[name].hook = hook
        _compiled = compiled
    return _compiled[ROOT]


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
    return frozenset({"request", "key"} | {name for table in _compiled.values() for name in table})


def check_request(request) -> list[tuple[str, str, str]]:
    """Problems of one request as (code, field path, message); empty when the request is good."""
    return _request_problems(request)[0]


def _request_problems(request) -> tuple[list[tuple[str, str, str]], bool]:
    """(problems, whether contents and every parts are lists as written: no one-object form to make
    a list)."""
    out = Line()
    try:
        walk_message(request, _root(), (None, "request"), out, 1)
    except RecursionError:
        return [("schema", "request", "request is nested too deeply")], False
    return [(code, path_of(node), message) for code, node, message in out.problems], not out.single


def check_message(value, message: str, path: str) -> list[tuple[str, str, str]]:
    """Problems of `value` as the aiplatform.v1 message `message` (for example "Content"), with
    paths under `path`: the same schema walk and checks as a request's."""
    _root()
    out = Line()
    try:
        walk_message(
            value, _compiled[f"google.cloud.aiplatform.v1.{message}"], (None, path), out, 1
        )
    except RecursionError:
        return [("schema", path, f"{path} is nested too deeply")]
    return [(code, path_of(node), text) for code, node, text in out.problems]


def _top_field_hint(obj: dict, name: str) -> str:
    """What to do about a field at the top of a line that is neither request nor key: most are
    another shape (a bare request, another family's line, an OpenAI request)."""
    if name in _ONLINE_SHAPE or name == "model":
        return (
            'this looks like a bare request; wrap it as {"request": {"contents": [...], ...}}'
            if "request" not in obj
            else f"move '{name}' inside request"
        )
    if name == "content":
        return (
            "this looks like a text-embedding instance; send the file to an embedding "
            "model (object "
            "metadata model, or `dropbatch run --model text-embedding-005`)"
        )
    if name == "custom_id":
        return (
            "this looks like a Claude line; send the file to a Claude model (object "
            "metadata model, "
            "or `dropbatch run --model claude-...`)"
        )
    if name == "messages":
        return (
            'this looks like an OpenAI chat request; write {"request": {"contents": '
            '[{"role": '
            '"user", "parts": [{"text": "..."}]}]}}'
        )
    return 'a line holds only "request" and an optional "key"'


def check_line(obj) -> tuple[list[tuple[str, str | None, str]], object, bool]:
    """Problems of one parsed line, its explicit key (or None), and whether its request's contents
    and parts are lists as written (as_lists would change nothing)."""
    if not isinstance(obj, dict):
        return (
            [
                (
                    "not_object",
                    None,
                    f"the line is {kind_name(obj)}; each line must be an object "
                    'like {"request": {"contents": [...]}}',
                )
            ],
            None,
            False,
        )
    problems: list = []
    for name in obj:
        if name not in ("request", "key"):
            hint = _top_field_hint(obj, name)
            problems.append(
                (
                    "schema",
                    path_of((None, name)),
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
