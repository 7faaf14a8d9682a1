"""The Vertex emulator's model families beyond Gemini generation: each family's input and output
lines, judged here on their own (never with dropbatch's checks, so that a dropbatch bug shows up as
a disagreement).

Sources, per family:
- text embeddings (`text-embedding-*`, `text-multilingual-embedding-*`):
  embeddings/batch-prediction-genai-embeddings: input instances `{"content": "..."}` (with
  `task_type`, `title`), output lines `{"instance", "predictions": [{"embeddings": {"statistics":
  {"token_count", "truncated"}, "values"}}], "status": ""}`; 768 dimensions (the models' documented
  size).
- Gemini embeddings (`gemini-embedding-*`): the same page's "updated schema": input `{"key",
  "request": {"content": {"parts"}, "embed_content_config": {"output_dimensionality", "title",
  "task_type"}}}`; the page shows no output line, so the output is modelled on Gemini batch's (`key`
  and `request` echoed, `status`) with the EmbedContentResponse vector (`response.embedding.values`,
  ContentEmbeddingStatistics beside it); 3,072 dimensions unless `output_dimensionality` says fewer
  (gemini-embedding-001's documented default).
- Claude (`publishers/anthropic/models/claude-*`): partner-models/claude/batch: input `{"custom_id",
  "request": Messages request with anthropic_version vertex-2023-10-16}`; the output reserves
  `response` (JSON) and `status`, so an output line is the input plus those two, the response a
  Messages response (`content` blocks, `stop_reason`, `usage.input_tokens`/`output_tokens`).
- open models (`publishers/meta|qwen|deepseek-ai|openai/models/*`): partner-models/llama-batch:
  input in the OpenAI Batch shape `{"custom_id", "method", "url", "body"}`; the output reserves
  `response` (JSON) and `id`, so a line is the input plus `id` and `response`, a chat.completion. A
  failed line: not documented; modelled as `response: null` and an `error` object `{"code",
  "message"}`.
A line of the wrong shape for its model fails on its own (code 400), as a bad Gemini request does.
"""

from __future__ import annotations

import hashlib
import math
import random
import re

import orjson

_EMBEDDING_DIMENSIONS = {"text": 768, "gemini": 3072}
MODEL = re.compile(
    r"(projects/[^/]+/locations/[^/]+/)?publishers/(google/models/(gemini-[0-9]|gemini-embedding-|"
    r"text-embedding-|text-multilingual-embedding-)|anthropic/models/claude-|"
    r"(meta|qwen|deepseek-ai|openai|mistralai)/models/)[\w.@-]*\Z"
)


def family(model: str) -> str:
    publisher, _, name = model.partition("publishers/")[2].partition("/models/")
    if publisher == "anthropic":
        return "anthropic"
    if publisher != "google":
        return "open"
    if name.startswith("gemini-embedding"):
        return "gemini_embedding"
    if name.startswith(("text-embedding", "text-multilingual-embedding")):
        return "text_embedding"
    return "gemini"


def _bad(message: str) -> str:
    return (
        "Bad Request: "
        + orjson.dumps(
            {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}
        ).decode()
    )


def vector(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector for `text` (the same text, the same vector, in every run)."""
    rng = random.Random(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big"))
    values = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 7) for v in values]


def tokens(text: str) -> int:
    """The emulated token count of a text: about 4 characters a token."""
    return max(1, (len(text) + 3) // 4)


def _message_text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            b.get("text", "")
            for b in content
            if isinstance(b, dict) and isinstance(b.get("text"), str)
        )
    return ""


def predict(kind: str, raw: bytes, answer, fault: tuple[int, str] | None) -> tuple[bytes, bool]:
    """(the output line, succeeded) for one input line of family `kind`; `answer(prompt)` gives the
    model's text; `fault`: (HTTP code, status text) when the emulator's faults decided this line
    fails."""
    try:
        line = orjson.loads(raw)
        if not isinstance(line, dict):
            raise ValueError
    except (orjson.JSONDecodeError, ValueError):
        return orjson.dumps({"status": _bad("Invalid JSON payload received.")}) + b"\n", False
    out, problem = {
        "text_embedding": _text_embedding,
        "gemini_embedding": _gemini_embedding,
        "anthropic": _anthropic,
        "open": _open,
    }[kind](line, answer, fault)
    return orjson.dumps(out) + b"\n", problem is None and fault is None


def _text_embedding(line: dict, answer, fault):
    content = line.get("content")
    problem = (
        None
        if isinstance(content, str) and content
        else "Invalid instance: `content` must be a non-empty string."
    )
    if problem or fault:
        return {
            "instance": line,
            "predictions": [],
            "status": _bad(problem) if problem else fault[1],
        }, problem
    return {
        "instance": line,
        "predictions": [
            {
                "embeddings": {
                    "statistics": {"token_count": tokens(content), "truncated": False},
                    "values": vector(content, _EMBEDDING_DIMENSIONS["text"]),
                }
            }
        ],
        "status": "",
    }, None


def _gemini_embedding(line: dict, answer, fault):
    request = line.get("request")
    out = {k: v for k, v in line.items() if k in ("key", "request")}
    parts = (
        ((request or {}).get("content") or {}).get("parts")
        if isinstance(request, dict) and isinstance(request.get("content"), dict)
        else None
    )
    texts = [p.get("text") for p in parts or [] if isinstance(p, dict)]
    config = (
        (request or {}).get("embed_content_config")
        or (request or {}).get("embedContentConfig")
        or {}
    )
    size = (
        config.get("output_dimensionality")
        or config.get("outputDimensionality")
        or _EMBEDDING_DIMENSIONS["gemini"]
    )
    problem = None
    if not texts or not all(isinstance(t, str) for t in texts):
        problem = "Invalid request: `request.content.parts` must hold text parts."
    elif not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 3072:
        problem = "Invalid request: output_dimensionality must be from 1 to 3072."
    if problem or fault:
        return {**out, "status": _bad(problem) if problem else fault[1]}, problem
    text = "\n".join(texts)
    return {
        **out,
        "response": {
            "embedding": {
                "values": vector(text, size),
                "statistics": {"token_count": tokens(text), "truncated": False},
            }
        },
        "status": "",
    }, None


def _anthropic(line: dict, answer, fault):
    request = line.get("request") if isinstance(line.get("request"), dict) else {}
    messages = request.get("messages")
    problem = None
    if request.get("anthropic_version") != "vertex-2023-10-16":
        problem = "anthropic_version: vertex-2023-10-16 is required"
    elif not isinstance(request.get("max_tokens"), int) or request["max_tokens"] < 1:
        problem = "max_tokens: Field required"
    elif not isinstance(messages, list) or not messages:
        problem = "messages: at least one message is required"
    if problem or fault:
        return {**line, "status": _bad(problem) if problem else fault[1]}, problem
    prompt = "\n".join(_message_text(m.get("content")) for m in messages if isinstance(m, dict))
    text = answer(prompt)
    digest = hashlib.sha256(orjson.dumps(line)).hexdigest()
    return {
        **line,
        "response": {
            "id": f"msg_vrtx_{digest[:24]}",
            "type": "message",
            "role": "assistant",
            "model": "claude",
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": tokens(prompt), "output_tokens": tokens(text)},
        },
        "status": "",
    }, None


def _open(line: dict, answer, fault):
    body = line.get("body") if isinstance(line.get("body"), dict) else {}
    messages = body.get("messages")
    digest = hashlib.sha256(orjson.dumps(line)).hexdigest()
    problem = None
    if line.get("url") != "/v1/chat/completions" or line.get("method", "POST") != "POST":
        problem = "url must be /v1/chat/completions with method POST"
    elif not isinstance(messages, list) or not messages:
        problem = "body.messages is required"
    out = {**line, "id": f"batch_req_{digest[:24]}"}
    if problem or fault:
        return {
            **out,
            "response": None,
            "error": {"code": 400, "message": problem}
            if problem
            else {"code": fault[0], "message": fault[1]},
        }, problem
    prompt = "\n".join(_message_text(m.get("content")) for m in messages if isinstance(m, dict))
    text = answer(prompt)
    prompt_tokens, completion = tokens(prompt), tokens(text)
    return {
        **out,
        "response": {
            "id": f"chatcmpl-{digest[:24]}",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion,
                "total_tokens": prompt_tokens + completion,
            },
        },
    }, None
