"""OpenAI Batch API lines, converted one by one into dropbatch lines for a Gemini model
(docs/contracts.md, "OpenAI Batch files").

An OpenAI Batch input line is `{"custom_id", "method": "POST", "url": "/v1/chat/completions",
"body": {...}}` (platform.openai.com/docs/guides/batch; the body is a Chat Completions request). It
becomes `{"key": custom_id, "request": GenerateContentRequest}`: system and developer messages go to
`systemInstruction`, user and assistant messages to `contents` (roles user and model), text parts to
text, `image_url` parts that are `gs://` URIs to fileData and `data:` URLs to inlineData; the
sampling fields to `generationConfig`; `response_format` to `responseMimeType` (and a JSON schema to
`responseJsonSchema`); function tools to `functionDeclarations` (their JSON-schema parameters to
`parametersJsonSchema`). What has no Gemini equivalent is a problem on that line, with its field
path and what to do; nothing is dropped silently.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import mimetypes

import orjson

from .keys import shown

CHAT_URL = "/v1/chat/completions"
SAMPLING = {
    "temperature": "temperature",
    "top_p": "topP",
    "n": "candidateCount",
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
}
# the file's model decides; the rest is OpenAI bookkeeping
IGNORED = {"model", "user", "store", "metadata"}
ROLES = {"user": "user", "assistant": "model"}


def is_openai_line(obj) -> bool:
    return isinstance(obj, dict) and "custom_id" in obj and "body" in obj


def convert(obj: dict) -> tuple[dict, list[tuple[str, str | None, str]]]:
    """(the dropbatch line, problems as (code, field path, message)): the line can be sent only
    without problems; it is built either way, so that its key is checked (unique, well formed) like
    any other."""
    problems: list = []

    def bad(field, message):
        problems.append(("openai_unsupported", field, message))

    for name in obj:
        if name not in ("custom_id", "method", "url", "body"):
            bad(
                name,
                f"an OpenAI Batch line holds custom_id, method, url and body; remove {shown(name)}",
            )
    if obj.get("method", "POST") != "POST":
        bad("method", 'OpenAI Batch requests are POST; write "method": "POST"')
    url = obj.get("url")
    if url != CHAT_URL:
        bad(
            "url",
            f"a Gemini generation model answers {CHAT_URL} lines; embeddings lines need an "
            f"embedding model "
            "and a file of their own",
        )
    body = obj.get("body")
    if not isinstance(body, dict):
        bad("body", "body must be a Chat Completions request object")
        body = {}
    request: dict = {}
    contents, system = _messages(body.get("messages"), bad)
    if contents:
        request["contents"] = contents
    if system:
        request["systemInstruction"] = {"parts": system}
    config = _generation_config(body, bad)
    if config:
        request["generationConfig"] = config
    if body.get("tools") is not None:
        declarations = _declarations(body["tools"], bad)
        if declarations:
            request["tools"] = [{"functionDeclarations": declarations}]
    _unconverted(body, bad)
    key = obj.get("custom_id")
    return ({"request": request} if key is None else {"key": key, "request": request}), problems


def _messages(messages, bad) -> tuple[list, list]:
    """(Gemini contents, system instruction parts) of a Chat Completions request's messages."""
    contents: list = []
    system: list = []
    if not isinstance(messages, list) or not messages:
        bad("body.messages", "body.messages must be a non-empty list of messages")
        messages = []
    for i, message in enumerate(messages):
        path = f"body.messages[{i}]"
        if not isinstance(message, dict):
            bad(path, "each message is an object with role and content")
            continue
        role = message.get("role")
        parts = _parts(message.get("content"), f"{path}.content", bad)
        if role in ("system", "developer"):
            system.extend(p for p in parts if "text" in p)
            if any("text" not in p for p in parts):
                bad(f"{path}.content", "a system message holds text only")
        elif role in ROLES:
            if message.get("tool_calls") or message.get("function_call"):
                bad(
                    f"{path}.tool_calls",
                    "earlier tool calls in the conversation are not converted; send the "
                    "conversation as text or as a Gemini request",
                )
            if parts:
                contents.append({"role": ROLES[role], "parts": parts})
        else:
            bad(
                f"{path}.role",
                "roles are system, developer, user and assistant (tool messages are not converted)",
            )
    return contents, system


def _unconverted(body: dict, bad) -> None:
    """A problem for each field of the body that has no Gemini equivalent."""
    for name in body:
        if name not in {
            "messages",
            "max_tokens",
            "max_completion_tokens",
            "stop",
            "response_format",
            "tools",
            "tool_choice",
            *SAMPLING,
            *IGNORED,
        }:
            bad(
                f"body.{name}",
                f"{shown(name)} has no Gemini equivalent dropbatch converts; remove it",
            )


def _generation_config(body: dict, bad) -> dict:
    config: dict = {}
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if limit is not None:
        config["maxOutputTokens"] = limit
    for name, gemini in SAMPLING.items():
        if name in body:
            config[gemini] = body[name]
    if "stop" in body:
        stop = body["stop"]
        config["stopSequences"] = [stop] if isinstance(stop, str) else stop
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        if fmt["type"] == "json_schema":
            schema = (fmt.get("json_schema") or {}).get("schema")
            if not isinstance(schema, dict):
                bad(
                    "body.response_format.json_schema.schema",
                    "a json_schema response format needs its schema",
                )
            else:
                config["responseJsonSchema"] = schema
    elif fmt is not None and (not isinstance(fmt, dict) or fmt.get("type") != "text"):
        bad("body.response_format", "response_format is text, json_object or json_schema")
    return config


def _declarations(tools, bad) -> list[dict]:
    declarations = []
    for i, tool in enumerate(tools if isinstance(tools, list) else [None]):
        function = (
            tool.get("function")
            if isinstance(tool, dict) and tool.get("type") == "function"
            else None
        )
        if not isinstance(function, dict) or not function.get("name"):
            bad(
                f"body.tools[{i}]",
                'only function tools convert: {"type": "function", "function": '
                '{"name", "description", "parameters"}}',
            )
            continue
        declaration = {"name": function["name"]}
        if function.get("description"):
            declaration["description"] = function["description"]
        if function.get("parameters") is not None:
            declaration["parametersJsonSchema"] = function["parameters"]
        declarations.append(declaration)
    return declarations


def _parts(content, path: str, bad) -> list[dict]:
    if isinstance(content, str):
        return [{"text": content}]
    if not isinstance(content, list):
        bad(path, "content is a string or a list of parts")
        return []
    parts = []
    for i, part in enumerate(content):
        where = f"{path}[{i}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append({"text": part["text"]})
        elif kind == "image_url":
            url = (
                (part.get("image_url") or {}).get("url")
                if isinstance(part.get("image_url"), dict)
                else None
            )
            converted = _media(url)
            if converted is None:
                bad(
                    f"{where}.image_url.url",
                    "images convert from gs:// URIs and data: URLs; copy the image to "
                    "Cloud Storage and give its gs:// URI",
                )
            else:
                parts.append(converted)
        else:
            bad(where, "parts convert from text and image_url")
    return parts


def _media(url) -> dict | None:
    if not isinstance(url, str):
        return None
    if url.startswith("gs://"):
        mime = mimetypes.guess_type(url)[0]
        return {"fileData": {"fileUri": url, "mimeType": mime or "image/jpeg"}}
    if url.startswith("data:") and ";base64," in url:
        mime, _, data = url[5:].partition(";base64,")
        return {"inlineData": {"mimeType": mime or "image/jpeg", "data": data}}
    return None


# ---------------------------------------------------------------- results as an OpenAI Batch output
# file

FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
}
# google.rpc.Code -> HTTP status
HTTP_OF_RPC = {3: 400, 5: 404, 7: 403, 8: 429, 13: 500, 14: 503, 4: 504}


def output_line(result: dict) -> dict:
    """A results.jsonl line as an OpenAI Batch output line: `id`, `custom_id`, `response`
    (`status_code`, `request_id`, `body`: a chat.completion) and `error`. A failed request answers
    with its HTTP status and an error body; a request Vertex never answered (`missing`) has no
    response and the error `{"code": "batch_expired"}`, as OpenAI writes a request its batch did not
    reach."""
    key = result["key"]
    rid = "batch_req_" + hashlib.sha256(f"{result.get('batch_id')}/{key}".encode()).hexdigest()[:24]
    if result["status"] == "missing":
        return {
            "id": rid,
            "custom_id": key,
            "response": None,
            "error": {
                "code": "batch_expired",
                "message": "the batch ended before this request was answered",
            },
        }
    response = result.get("response") or {}
    if result["status"] != "succeeded":
        error = result.get("error") or {}
        code = error.get("code")
        status = HTTP_OF_RPC.get(code, code if isinstance(code, int) and 400 <= code < 600 else 500)
        return {
            "id": rid,
            "custom_id": key,
            "error": None,
            "response": {
                "status_code": status,
                "request_id": response.get("responseId") or rid,
                "body": {
                    "error": {
                        "message": error.get("message") or "the request failed",
                        "type": "api_error",
                        "code": result.get("finish_reason") or code,
                    }
                },
            },
        }
    body = (
        _completion(result, response)
        if "embedding" not in result
        else {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": result["embedding"]}],
            "model": response.get("modelVersion"),
            "usage": {
                "prompt_tokens": (result.get("usage") or {}).get("promptTokenCount") or 0,
                "total_tokens": (result.get("usage") or {}).get("totalTokenCount") or 0,
            },
        }
    )
    body["id"] = body.get("id") or rid
    return {
        "id": rid,
        "custom_id": key,
        "response": {"status_code": 200, "request_id": body["id"], "body": body},
        "error": None,
    }


CLAUDE_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
}


def _completion(result: dict, response: dict) -> dict:
    """The chat.completion of a succeeded result: an open model's response is one already; a Claude
    answer becomes one choice; Gemini's candidates become choices (thought parts left out, function
    calls as tool_calls)."""
    if isinstance(response.get("choices"), list):
        return dict(response)
    usage = result.get("usage") or {}
    if response.get("type") == "message":
        choices = [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.get("text")},
                "finish_reason": CLAUDE_FINISH.get(response.get("stop_reason"), "stop"),
                "logprobs": None,
            }
        ]
    else:
        choices = []
        for i, candidate in enumerate(response.get("candidates") or []):
            parts = (candidate.get("content") or {}).get("parts") or []
            text = "".join(p.get("text", "") for p in parts if not p.get("thought"))
            calls = [
                {
                    "id": f"call_{i}_{n}",
                    "type": "function",
                    "function": {
                        "name": p["functionCall"].get("name"),
                        "arguments": orjson.dumps(p["functionCall"].get("args") or {}).decode(),
                    },
                }
                for n, p in enumerate(parts)
                if isinstance(p.get("functionCall"), dict)
            ]
            message = {
                "role": "assistant",
                "content": text or None,
                **({"tool_calls": calls} if calls else {}),
            }
            reason = "tool_calls" if calls else FINISH.get(candidate.get("finishReason"), "stop")
            choices.append(
                {"index": i, "message": message, "finish_reason": reason, "logprobs": None}
            )
    prompt = usage.get("promptTokenCount") or 0
    completion = (usage.get("candidatesTokenCount") or 0) + (usage.get("thoughtsTokenCount") or 0)
    return {
        "id": response.get("responseId") or response.get("id"),
        "object": "chat.completion",
        "created": _epoch(result.get("processed_time")),
        "model": response.get("modelVersion") or response.get("model"),
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": usage.get("totalTokenCount") or prompt + completion,
            "completion_tokens_details": {"reasoning_tokens": usage.get("thoughtsTokenCount") or 0},
        },
    }


def _epoch(stamp) -> int:
    try:
        return int(dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0
