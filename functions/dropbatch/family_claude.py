"""Claude on Vertex (families.py, anthropic): Messages requests checked and staged, results read
back."""

from __future__ import annotations

import base64
import binascii

from . import openai_batch
from .family_base import (
    custom_id_line,
    failed_result,
    line_bytes,
    line_id,
    number_field,
    only_fields,
    status_error,
    usage_fields,
)
from .keys import shown
from .outcome import result_object

EXAMPLE = (
    '{"custom_id": "k1", "request": {"messages": [{"role": "user", "content": '
    '"..."}], "anthropic_version": "vertex-2023-10-16", "max_tokens": 256}}'
)
ANTHROPIC_VERSION = "vertex-2023-10-16"


# ---------------------------------------------------------------- anthropic (Claude on Vertex)

_CLAUDE_FIELDS = {
    "messages",
    "anthropic_version",
    "max_tokens",
    "system",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "tools",
    "tool_choice",
    "metadata",
    "thinking",
}
_BLOCKS = {"text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking"}
_IMAGE_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}


def _claude_blocks(content, path: str, problems: list) -> None:
    if isinstance(content, str):
        if not content:
            problems.append(("empty_content", path, f"{path} is empty; give the message text"))
        return
    if not isinstance(content, list) or not content:
        problems.append(
            ("schema", path, f"{path} must be a string or a non-empty list of content blocks")
        )
        return
    for i, block in enumerate(content):
        where = f"{path}[{i}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind not in _BLOCKS:
            problems.append(
                (
                    "schema",
                    f"{where}.type",
                    f"{where}.type is {shown(kind)}; use one of " + ", ".join(sorted(_BLOCKS)),
                )
            )
        elif kind == "text" and not isinstance(block.get("text"), str):
            problems.append(("schema", f"{where}.text", f"{where}.text must be a string"))
        elif kind == "image":
            source = block.get("source") if isinstance(block.get("source"), dict) else {}
            if source.get("type") == "base64":
                if source.get("media_type") not in _IMAGE_TYPES:
                    problems.append(
                        (
                            "mime_type",
                            f"{where}.source.media_type",
                            f"{where}.source.media_type is "
                            f"{shown(source.get('media_type'))}; use "
                            + ", ".join(sorted(_IMAGE_TYPES)),
                        )
                    )
                try:
                    base64.b64decode(str(source.get("data") or ""), validate=True)
                except (binascii.Error, ValueError):
                    problems.append(
                        (
                            "invalid_base64",
                            f"{where}.source.data",
                            f"{where}.source.data is not valid base64",
                        )
                    )
            elif source.get("type") != "url":
                problems.append(
                    (
                        "schema",
                        f"{where}.source",
                        f'{where}.source is {{"type": "base64", '
                        '"media_type", "data"}} or {"type": "url", "url"}',
                    )
                )


OPENAI_LINE = (
    'this is an OpenAI Batch line; a Claude model reads {"custom_id": "...", "request": '
    '{"messages": [...], "anthropic_version": "vertex-2023-10-16", "max_tokens": N}} lines'
)


def anthropic_check(obj):
    if not isinstance(obj, dict):
        return [("not_object", None, "each line must be a JSON object")], None, None
    problems: list = []
    if openai_batch.is_openai_line(obj):
        return [("wrong_family", None, OPENAI_LINE)], None, None
    key = custom_id_line(
        obj,
        problems,
        {"custom_id", "request"},
        "a Claude line holds custom_id (its key) and request",
        "Claude ",
    )
    request = obj.get("request")
    if not isinstance(request, dict):
        problems.append(
            (
                "missing_request",
                "request",
                "request must be a Messages request object: "
                '{"messages": [...], "anthropic_version": "vertex-2023-10-16", "max_tokens": N}',
            )
        )
        return problems, key, None
    if "contents" in request and "messages" not in request:
        return (
            problems
            + [
                (
                    "wrong_family",
                    "request",
                    "request is a Gemini request; a Claude model reads "
                    "Messages requests: " + EXAMPLE,
                )
            ],
            key,
            None,
        )
    _anthropic_fields(request, problems)
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        problems.append(
            (
                "empty_messages",
                "request.messages",
                "request.messages must be a non-empty list of "
                '{"role": "user" | "assistant", "content": ...}',
            )
        )
        return problems, key, request
    _claude_messages(messages, problems)
    return problems, key, request


def _claude_messages(messages: list, problems: list) -> None:
    """Each message an object of role and content, user and assistant taking turns, user first."""
    before = None
    for i, message in enumerate(messages):
        where = f"request.messages[{i}]"
        if not isinstance(message, dict):
            problems.append(("schema", where, f"{where} must be an object"))
            continue
        only_fields(
            message, {"role", "content"}, where, problems, "a message holds role and content"
        )
        role = message.get("role")
        if role not in ("user", "assistant"):
            hint = "; put system prompts in request.system" if role == "system" else ""
            problems.append(
                (
                    "invalid_role",
                    f"{where}.role",
                    f"{where}.role is {shown(role)}; use 'user' or 'assistant'{hint}",
                )
            )
        elif role == before:
            problems.append(
                (
                    "role_order",
                    f"{where}.role",
                    f"{where}.role repeats {role!r}; user and assistant messages must alternate",
                )
            )
        elif before is None and role != "user":
            problems.append(("role_order", f"{where}.role", "the first message must be the user's"))
        before = role
        _claude_blocks(message.get("content"), f"{where}.content", problems)


def anthropic_stage(request, line: int) -> bytes:
    return line_bytes({"custom_id": line_id(line), "request": request})


def anthropic_result(key, out, batch_id, job):
    """A Messages response (`content` blocks, `stop_reason`, `usage.input_tokens`/`output_tokens`);
    an error as a `status` string, an `error` object or a response of `"type": "error"`."""
    request = out.get("request")
    response = out.get("response") if isinstance(out.get("response"), dict) else None
    error = status_error(out)
    if error is None and response is None:
        error = {
            "code": "NO_RESPONSE",
            "message": "the output line has neither a status nor a response",
        }
    elif error is None and response.get("type") == "error":
        inner = response.get("error") or {}
        error = {
            "code": inner.get("type") or "error",
            "message": str(inner.get("message") or "the request failed"),
        }
    if error:
        return failed_result(key, batch_id, job, request, response, error)
    texts = [
        b["text"]
        for b in response.get("content") or []
        if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
    ]
    reason = response.get("stop_reason")
    usage = response.get("usage") or {}
    fields = {
        "request": request,
        "response": response,
        "text": "".join(texts) if texts else None,
        "finish_reason": reason,
        "usage": usage_fields(usage.get("input_tokens"), usage.get("output_tokens")),
        "processed_time": out.get("processed_time"),
    }
    if reason == "refusal" or (not response.get("content") and reason == "max_tokens"):
        return result_object(
            key,
            "failed",
            batch_id,
            job,
            error={"code": reason, "message": f"Claude stopped with {reason} before any answer"},
            **fields,
        )
    return result_object(key, "succeeded", batch_id, job, **fields)


def _anthropic_fields(request: dict, problems: list) -> None:
    """The problems of a Messages request's fields beside its messages."""
    extra = [n for n in request if n not in _CLAUDE_FIELDS]
    for name in extra:
        hint = (
            "the job's model decides; remove it"
            if name == "model"
            else "batch requests are not streamed; remove it"
            if name == "stream"
            else "see the Messages API for the fields Claude reads"
        )
        problems.append(
            (
                "schema",
                f"request.{name}",
                f"{shown(name)} is not a Messages request field on Vertex AI; {hint}",
            )
        )
    version = request.get("anthropic_version")
    if version != ANTHROPIC_VERSION:
        problems.append(
            (
                "anthropic_version",
                "request.anthropic_version",
                "request.anthropic_version is "
                f"{'missing' if version is None else shown(version)}; Vertex AI needs "
                f'"{ANTHROPIC_VERSION}"',
            )
        )
    if request.get("max_tokens") is None:
        problems.append(
            (
                "max_tokens",
                "request.max_tokens",
                "request.max_tokens is missing; Claude needs the "
                'most tokens to write, e.g. "max_tokens": 1024',
            )
        )
    else:
        number_field(request, "max_tokens", "request", problems, 1, 128_000, whole=True)
    number_field(request, "temperature", "request", problems, 0, 1)
    number_field(request, "top_p", "request", problems, 0, 1)
    number_field(request, "top_k", "request", problems, 1, 1_000_000, whole=True)
    stops = request.get("stop_sequences")
    if stops is not None and not (
        isinstance(stops, list) and all(isinstance(s, str) for s in stops)
    ):
        problems.append(
            ("schema", "request.stop_sequences", "request.stop_sequences must be a list of strings")
        )
    system = request.get("system")
    if system is not None:
        _claude_blocks(system, "request.system", problems)
