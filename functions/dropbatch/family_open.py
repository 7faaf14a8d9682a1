"""OpenAI-compatible open models (families.py, open_models): Chat Completions and embeddings bodies
checked and staged, results read back."""

from __future__ import annotations

from . import openai_batch
from .family_base import (
    custom_id_line,
    failed_result,
    line_bytes,
    line_id,
    number_field,
    status_error,
    usage_fields,
)
from .keys import shown
from .outcome import result_object

EMBEDDINGS_URL = "/v1/embeddings"


# ---------------------------------------------------------------- OpenAI-compatible open models

_OPEN_ROLES = {"system", "developer", "user", "assistant", "tool"}


def open_check(obj):
    if not isinstance(obj, dict):
        return [("not_object", None, "each line must be a JSON object")], None, None
    problems: list = []
    if "request" in obj and "body" not in obj:
        return (
            [
                (
                    "wrong_family",
                    None,
                    'an open model reads OpenAI Batch lines: {"custom_id": "...", '
                    '"method": "POST", "url": "/v1/chat/completions", "body": {"messages": [...]}}',
                )
            ],
            None,
            None,
        )
    key = _line_fields(obj, problems)
    body = obj.get("body")
    if not isinstance(body, dict):
        problems.append(
            (
                "missing_request",
                "body",
                "body must be a Chat Completions request: "
                '{"messages": [{"role": "user", "content": "..."}]}',
            )
        )
        return problems, key, None
    _body_fields(body, problems)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        problems.append(
            (
                "empty_messages",
                "body.messages",
                'body.messages must be a non-empty list of {"role", "content"}',
            )
        )
        return problems, key, body
    _open_messages(messages, problems)
    return problems, key, body


def _line_fields(obj: dict, problems: list):
    """An OpenAI Batch line's own fields (custom_id, method, url, body); its custom_id."""
    key = custom_id_line(
        obj,
        problems,
        {"custom_id", "method", "url", "body"},
        "an OpenAI Batch line holds custom_id, method, url and body",
    )
    if obj.get("method", "POST") != "POST":
        problems.append(("schema", "method", 'method must be "POST"'))
    if obj.get("url", openai_batch.CHAT_URL) != openai_batch.CHAT_URL:
        problems.append(
            ("schema", "url", f'url must be "{openai_batch.CHAT_URL}" for a chat model')
        )
    return key


def _body_fields(body: dict, problems: list) -> None:
    """The Chat Completions fields a batch request may not hold or must hold in range."""
    if body.get("stream"):
        problems.append(
            ("schema", "body.stream", "batch requests are not streamed; remove body.stream")
        )
    for name in ("max_tokens", "max_completion_tokens"):
        number_field(body, name, "body", problems, 1, 10_000_000, whole=True)
    number_field(body, "temperature", "body", problems, 0, 2)
    number_field(body, "top_p", "body", problems, 0, 1)
    number_field(body, "n", "body", problems, 1, 128, whole=True)


def _open_messages(messages: list, problems: list) -> None:
    """The problems of a Chat Completions request's messages."""
    for i, message in enumerate(messages):
        where = f"body.messages[{i}]"
        role = message.get("role") if isinstance(message, dict) else None
        if role not in _OPEN_ROLES:
            problems.append(
                (
                    "invalid_role",
                    f"{where}.role",
                    f"{where}.role is {shown(role)}; use system, user, assistant or tool",
                )
            )
            continue
        content = message.get("content")
        if content is None and not (role == "assistant" and message.get("tool_calls")):
            problems.append(("empty_content", f"{where}.content", f"{where}.content is missing"))
        elif content is not None and not isinstance(content, (str, list)):
            problems.append(
                (
                    "schema",
                    f"{where}.content",
                    f"{where}.content must be a string or a list of parts",
                )
            )
        elif isinstance(content, list):
            for n, part in enumerate(content):
                if not (isinstance(part, dict) and part.get("type") in ("text", "image_url")):
                    problems.append(
                        (
                            "schema",
                            f"{where}.content[{n}]",
                            f"{where}.content[{n}] must be a text or image_url part",
                        )
                    )


def open_stage(body, line: int) -> bytes:
    return line_bytes(
        {"custom_id": line_id(line), "method": "POST", "url": openai_batch.CHAT_URL, "body": body}
    )


def body_of(obj: dict):
    return obj.get("body")


def open_result(key, out, batch_id, job):
    """A chat.completion as the `response` (Vertex: "response(JSON)"), or wrapped as OpenAI Batch
    writes it (`response.status_code`, `response.body`); errors as `error`, a `status` string or a
    status code >= 400."""
    request = out.get("body")
    response = out.get("response") if isinstance(out.get("response"), dict) else None
    error = status_error(out)
    if error is None and response is not None and "body" in response and "status_code" in response:
        code = response.get("status_code")
        response = response.get("body") if isinstance(response.get("body"), dict) else None
        if isinstance(code, int) and code >= 400:
            inner = (response or {}).get("error") or {}
            error = {"code": code, "message": str(inner.get("message") or f"HTTP {code}")}
    if error is None and response is None:
        error = {
            "code": "NO_RESPONSE",
            "message": "the output line has neither an error nor a response",
        }
    elif error is None and isinstance(response.get("error"), dict):
        error = {
            "code": response["error"].get("code") or "error",
            "message": str(response["error"].get("message") or "the request failed"),
        }
    if error:
        return failed_result(key, batch_id, job, request, response, error)
    choices = response.get("choices") or []
    first = choices[0] if choices and isinstance(choices[0], dict) else {}
    message = first.get("message") or {}
    text = message.get("content") if isinstance(message.get("content"), str) else None
    usage = response.get("usage") or {}
    fields = {
        "request": request,
        "response": response,
        "text": text,
        "finish_reason": first.get("finish_reason"),
        "usage": usage_fields(usage.get("prompt_tokens"), usage.get("completion_tokens")),
        "processed_time": out.get("processed_time"),
    }
    if not choices:
        return result_object(
            key,
            "failed",
            batch_id,
            job,
            error={"code": "NO_CHOICES", "message": "the response has no choices"},
            **fields,
        )
    return result_object(key, "succeeded", batch_id, job, **fields)
