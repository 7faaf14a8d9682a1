"""Model families: the model of a file decides how its lines are checked, staged, matched and read
back.

- **gemini**: GenerateContentRequest lines (checks.py; outcome.build_result), the format DESIGN.md
  gives.
- **embeddings**: `gemini-embedding-*` lines `{"key", "request": {"content": Content,
  "embed_content_config": {"task_type", "title", "output_dimensionality", "auto_truncate"}}}` and
  `text-embedding-*` / `text-multilingual-embedding-*` instances `{"content": "...", "task_type",
  "title"}` (bare, or wrapped as `{"key", "request": {...}}`), as
  cloud.google.com/vertex-ai/generative-ai/docs/embeddings/batch-prediction-genai-embeddings shows
  them; per job 1,000,000 rows and 1 GB (gemini-embedding) and 30,000 prompts (text-embedding: "Each
  request can include up to 30,000 prompts").
- **anthropic**: Claude on Vertex, `{"custom_id", "request": Messages request}` with
  `anthropic_version` (`vertex-2023-10-16`) and `max_tokens` (partner-models/claude/batch). Vertex
  publishes no per-job limit: Anthropic's own Message Batches limits (100,000 requests, 256 MB) are
  the modelled worst case.
- **open_models**: OpenAI-compatible open models (Llama, Qwen, DeepSeek, gpt-oss), `{"custom_id",
  "method": "POST", "url": "/v1/chat/completions", "body": Chat Completions request}`
  (partner-models/llama-batch: "must follow the OpenAI API schema"); no per-job limit is published,
  so OpenAI Batch's (50,000 requests, 200 MB a file) is the modelled worst case.

Each staged line carries its line number where the family lets it come back: Gemini's request labels
(keys.line_labels), the `key` of a gemini-embedding line and the `custom_id` of the other two
(`dropbatch-line-N`; the user's key or custom_id stays in the keys sidecar). text-embedding
instances carry nothing extra (Vertex echoes only `instance`): they are matched by fingerprint, as
any output whose marker did not come back. Results keep one shape (outcome.result_object): `text`
for generation, `embedding` (the vector) and `statistics` for embeddings, and usage mapped into
Gemini's token fields, so counts, errors, retries, messages and the results table work the same for
every family.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from collections.abc import Callable

import orjson

from . import checks, keys, openai_batch
from .keys import shown
from .outcome import build_result, get_field, parse_status, result_object

GB, MB = 1 << 30, 1 << 20
LINE_ID = "dropbatch-line-"
_LINE_ID = re.compile(r"dropbatch-line-(\d{1,12})\Z")
ANTHROPIC_VERSION = "vertex-2023-10-16"
EMBEDDINGS_URL = "/v1/embeddings"
EMBEDDING_TASKS = frozenset(
    {
        "RETRIEVAL_QUERY",
        "RETRIEVAL_DOCUMENT",
        "SEMANTIC_SIMILARITY",
        "CLASSIFICATION",
        "CLUSTERING",
        "QUESTION_ANSWERING",
        "FACT_VERIFICATION",
        "CODE_RETRIEVAL_QUERY",
    }
)
# Field names of the families' own formats: a report field path made only of these may go into a
# message.
FIELD_NAMES = frozenset(
    {
        "custom_id",
        "method",
        "url",
        "body",
        "messages",
        "role",
        "content",
        "type",
        "text",
        "source",
        "media_type",
        "data",
        "anthropic_version",
        "max_tokens",
        "max_completion_tokens",
        "system",
        "temperature",
        "top_p",
        "top_k",
        "stop",
        "stop_sequences",
        "tools",
        "tool_choice",
        "metadata",
        "thinking",
        "embed_content_config",
        "embedContentConfig",
        "task_type",
        "title",
        "output_dimensionality",
        "auto_truncate",
        "image_url",
        "n",
        "seed",
        "response_format",
        "instance",
    }
)


def line_id(line: int) -> str:
    return f"{LINE_ID}{line}"


def line_of_id(value) -> int | None:
    match = _LINE_ID.match(value) if isinstance(value, str) else None
    return int(match.group(1)) if match else None


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    max_requests: int  # per job
    max_bytes: int
    check: Callable  # parsed line -> (problems, explicit key or None, payload: what is staged)
    stage: Callable  # (payload, line) -> the staged JSONL line
    payload: Callable  # a staged or output line -> the request in it (fingerprints)
    marked_line: Callable  # an output line -> the line number it carries, or None
    result: Callable  # (key, output line, batch id, job) -> result object
    example: str  # one line of the format, for messages
    # A table as input: (columns that must be there, columns read when there, the field a key column
    # fills), as each family's batch page describes its BigQuery input.
    table: tuple = (("request",), (), "key")
    # What a result object takes beyond its request: an embedding's vector, twice (`embedding`, and
    # `response` as Vertex returned it), at about 12 bytes a value; results.jsonl buckets are cut by
    # it (split.Index).
    result_bytes: int = 0

    def job_limits(self, config) -> tuple[int, int]:
        """(requests, bytes) a job may take: the family's, lowered by
        DROPBATCH_MAX_JOB_REQUESTS/_BYTES."""
        return (
            min(self.max_requests, config.max_job_requests or self.max_requests),
            min(self.max_bytes, config.max_job_bytes or self.max_bytes),
        )


def _name(model: str) -> tuple[str, str]:
    """(publisher, model id) of `claude-x`, `meta/llama-x`, `publishers/P/models/M` or a full
    resource name."""
    if "/models/" in model:
        head, _, name = model.rpartition("/models/")
        return head.rsplit("/", 1)[-1], name
    if "/" in model:
        publisher, _, name = model.partition("/")
        return publisher, name
    if model.startswith("claude-"):
        return "anthropic", model
    if model.startswith("llama"):
        return "meta", model
    return "google", model


def resource_name(model: str, project: str, location: str) -> str:
    """The model's resource name, from a model as users write it (gemini-2.5-flash,
    claude-sonnet-4@20250514, meta/llama-3.3-70b-instruct-maas, publishers/P/models/M); a full
    resource name is kept as it is."""
    if model.startswith("projects/"):
        return model
    publisher, name = _name(model)
    return f"projects/{project}/locations/{location}/publishers/{publisher}/models/{name}"


def family_of(model: str) -> Family:
    publisher, name = _name(model)
    if publisher == "anthropic":
        return ANTHROPIC
    if publisher != "google":
        return OPEN_MODELS
    if name.startswith("gemini-embedding"):
        return GEMINI_EMBEDDING
    if name.startswith(("text-embedding", "text-multilingual-embedding", "textembedding")):
        return TEXT_EMBEDDING
    return GEMINI


# ---------------------------------------------------------------- shared pieces


def _key(obj: dict, name: str, problems: list):
    key = obj.get(name)
    problem = keys.key_problem(key) if key is not None else None
    if problem:
        problems.append(("invalid_key", name, problem))
        return None
    return key


def _only(obj: dict, allowed, path: str, problems: list, hint: str) -> None:
    for name in obj:
        if name not in allowed:
            where = f"{path}.{name}" if path else name
            problems.append(
                (
                    "schema",
                    where,
                    f"{shown(name)} is not allowed {('in ' + path) if path else 'here'}; {hint}",
                )
            )


def _number(
    obj: dict, name: str, path: str, problems: list, lo: float, hi: float, whole: bool = False
) -> None:
    value = obj.get(name)
    if value is None:
        return
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and (not whole or float(value).is_integer())
    )
    if not ok or not lo <= value <= hi:
        kind = "a whole number" if whole else "a number"
        problems.append(
            (
                "schema",
                f"{path}.{name}",
                f"{path}.{name} is {shown(value)}; it must be {kind} from {lo:g} to {hi:g}",
            )
        )


def _line_bytes(obj: dict) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)


def _failed(key, batch_id, job, request, response, error, **fields) -> dict:
    return result_object(
        key, "failed", batch_id, job, request=request, response=response, error=error, **fields
    )


def _status_error(out: dict) -> dict | None:
    """The error of an output line from its `status` string or an `error` object, in any shape
    seen."""
    status = out.get("status")
    if isinstance(status, str) and status:
        return parse_status(status)
    error = out.get("error")
    if isinstance(error, dict) and error:
        return {
            "code": error.get("code") or error.get("type") or "ERROR",
            "message": str(error.get("message") or "the request failed"),
        }
    return None


# ---------------------------------------------------------------- gemini generation


def _gemini_check(obj):
    """What is staged is the line's own request object when its contents and parts are lists as
    written (the Stager may then stage the line from its bytes), else a copy with the one-object
    forms made lists."""
    problems, key, lists = checks.check_line(obj)
    request = obj.get("request") if isinstance(obj, dict) else None
    return problems, key, request if lists or problems else checks.as_lists(request)


def _gemini_stage(request: dict, line: int) -> bytes:
    request = checks.as_lists(request)
    request["labels"] = {
        **(request.get("labels") or {}),
        **keys.line_labels(line, keys.label_digits(line)),
    }
    return _line_bytes({"request": request})


def _gemini_line(out: dict):
    request = out.get("request")
    return keys.line_from_labels(request.get("labels")) if isinstance(request, dict) else None


def _request_of(obj: dict):
    return obj.get("request")


# ---------------------------------------------------------------- embeddings


def _embedding_config(config, path: str, problems: list) -> None:
    if not isinstance(config, dict):
        problems.append(("schema", path, f"{path} must be an object"))
        return
    _only(
        config,
        {
            "task_type",
            "taskType",
            "title",
            "output_dimensionality",
            "outputDimensionality",
            "auto_truncate",
            "autoTruncate",
        },
        path,
        problems,
        "embed_content_config holds task_type, title, output_dimensionality and auto_truncate",
    )
    task = get_field(config, "taskType", "task_type")
    if task is not None and task not in EMBEDDING_TASKS:
        problems.append(
            (
                "schema",
                f"{path}.task_type",
                f"{path}.task_type is {shown(task)}; use one of "
                + ", ".join(sorted(EMBEDDING_TASKS)),
            )
        )
    title = config.get("title")
    if title is not None and not isinstance(title, str):
        problems.append(("schema", f"{path}.title", f"{path}.title must be a string"))
    for name in ("output_dimensionality", "outputDimensionality"):
        _number(config, name, path, problems, 1, 3072, whole=True)
    truncate = get_field(config, "autoTruncate", "auto_truncate")
    if truncate is not None and not isinstance(truncate, bool):
        problems.append(
            ("schema", f"{path}.auto_truncate", f"{path}.auto_truncate must be true or false")
        )


def _unwrap(obj, gemini: bool) -> tuple[list, object, object]:
    """(problems, key, the request) of a line that is `{"key", "request": {...}}`, a bare instance,
    or an OpenAI Batch `/v1/embeddings` line (its `input` text the content, `dimensions` the output
    dimensionality)."""
    if not isinstance(obj, dict):
        return [("not_object", None, "each line must be a JSON object")], None, None
    problems: list = []
    if openai_batch.is_openai_line(obj):
        body = obj.get("body") if isinstance(obj.get("body"), dict) else {}
        text, dimensions = body.get("input"), body.get("dimensions")
        if (
            obj.get("url") != EMBEDDINGS_URL
            or not isinstance(text, str)
            or set(body) - {"input", "model", "dimensions", "user"}
        ):
            return (
                [
                    (
                        "openai_unsupported",
                        "url" if obj.get("url") != EMBEDDINGS_URL else "body",
                        f"an embedding model reads OpenAI Batch {EMBEDDINGS_URL} lines whose body "
                        f"is "
                        '{"input": "one text", "dimensions": N}',
                    )
                ],
                None,
                None,
            )
        request = {"content": {"parts": [{"text": text}]}} if gemini else {"content": text}
        if dimensions is not None and gemini:
            request["embed_content_config"] = {"output_dimensionality": dimensions}
        elif dimensions is not None:
            problems.append(
                (
                    "openai_unsupported",
                    "body.dimensions",
                    "a text-embedding model has no per-request dimensions; remove body.dimensions",
                )
            )
        return problems, _key(obj, "custom_id", problems), request
    if "request" not in obj:  # a bare instance (text-embedding), with an optional key
        key = _key(obj, "key", problems)
        return problems, key, {k: v for k, v in obj.items() if k != "key"}
    _only(obj, {"key", "request"}, "", problems, 'a line holds "request" and an optional "key"')
    return problems, _key(obj, "key", problems), obj["request"]


def _gemini_embedding_check(obj):
    problems, key, request = _unwrap(obj, gemini=True)
    if request is None:
        return problems, key, None
    if isinstance(obj, dict) and not openai_batch.is_openai_line(obj) and "request" not in obj:
        return (
            [
                (
                    "missing_request",
                    "request",
                    'a gemini-embedding line is {"key": "...", "request": '
                    '{"content": {"parts": [{"text": "..."}]}}}',
                )
            ],
            key,
            None,
        )
    if not isinstance(request, dict):
        return problems + [("schema", "request", "request must be an object")], key, None
    _only(
        request,
        {"content", "embed_content_config", "embedContentConfig"},
        "request",
        problems,
        "an embedding request holds content and embed_content_config",
    )
    content = request.get("content")
    if content is None:
        problems.append(
            (
                "missing_content",
                "request.content",
                'request.content is missing; give {"parts": [{"text": "..."}]}',
            )
        )
    elif isinstance(content, str):
        problems.append(
            (
                "schema",
                "request.content",
                'request.content is a string; write it as {"parts": [{"text": "..."}]}',
            )
        )
    else:
        problems.extend(checks.check_message(content, "Content", "request.content"))
    config = get_field(request, "embedContentConfig", "embed_content_config")
    if config is not None:
        _embedding_config(config, "request.embed_content_config", problems)
    return problems, key, request


def _gemini_embedding_stage(request, line: int) -> bytes:
    return _line_bytes({"key": line_id(line), "request": request})


def _text_embedding_check(obj):
    problems, key, instance = _unwrap(obj, gemini=False)
    if instance is None:
        return problems, key, None
    path = "request" if "request" in obj else ""
    if not isinstance(instance, dict):
        return [("schema", path or None, 'an instance is an object: {"content": "..."}')], key, None
    _only(
        instance,
        {"content", "task_type", "title"},
        path,
        problems,
        "a text-embedding instance holds content, task_type and title",
    )
    content = instance.get("content")
    where = f"{path}.content" if path else "content"
    if not isinstance(content, str) or not content.strip():
        problems.append(
            ("missing_content", where, f"{where} must be the text to embed, a non-empty string")
        )
    task = instance.get("task_type")
    if task is not None and task not in EMBEDDING_TASKS:
        problems.append(
            (
                "schema",
                f"{path}.task_type" if path else "task_type",
                f"task_type is {shown(task)}; use one of " + ", ".join(sorted(EMBEDDING_TASKS)),
            )
        )
    if instance.get("title") is not None and not isinstance(instance["title"], str):
        problems.append(("schema", f"{path}.title" if path else "title", "title must be a string"))
    return problems, key, instance


def _text_embedding_stage(instance, line: int) -> bytes:
    return _line_bytes(instance)


def _instance_of(obj: dict):
    return obj.get("instance", obj)


def _embedding_line(out: dict):
    return line_of_id(out.get("key"))


def _embedding_result(key, out, batch_id, job):
    """The vector from any shape the embeddings pages show or the SDKs type:
    `predictions[0].embeddings` (text-embedding batch output; also under `response`, the online
    predict shape), `response.embedding` / `response.embeddings[0]` (EmbedContentResponse);
    `statistics` with token_count and truncated (ContentEmbeddingStatistics)."""
    request = out.get("request", out.get("instance"))
    response = out.get("response") if isinstance(out.get("response"), dict) else None
    error = _status_error(out)
    if error:
        return _failed(
            key, batch_id, job, request, response, error, embedding=None, statistics=None
        )
    predictions = out.get("predictions") if response is None else response.get("predictions")
    if isinstance(predictions, list) and predictions and isinstance(predictions[0], dict):
        response = response or {"predictions": predictions}
        found = predictions[0].get("embeddings")
    else:
        response = response or {}
        many = response.get("embeddings")
        found = response.get("embedding") or (many[0] if isinstance(many, list) and many else None)
    values = found.get("values") if isinstance(found, dict) else None
    if not isinstance(values, list) or not values:
        return _failed(
            key,
            batch_id,
            job,
            request,
            response or None,
            {"code": "NO_EMBEDDING", "message": "the output line has no embedding values"},
            embedding=None,
            statistics=None,
        )
    stats = found.get("statistics") or {}
    tokens = get_field(stats, "tokenCount", "token_count")
    usage = get_field(response, "usageMetadata", "usage_metadata")
    if usage is None and isinstance(tokens, (int, float)):
        usage = {"promptTokenCount": int(tokens), "totalTokenCount": int(tokens)}
    statistics = {
        "token_count": int(tokens) if isinstance(tokens, (int, float)) else None,
        "truncated": stats.get("truncated"),
    }
    return result_object(
        key,
        "succeeded",
        batch_id,
        job,
        request=request,
        response=response,
        usage=usage,
        embedding=values,
        statistics=statistics,
        processed_time=out.get("processed_time") or out.get("processedTime"),
    )


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


def _anthropic_check(obj):
    if not isinstance(obj, dict):
        return [("not_object", None, "each line must be a JSON object")], None, None
    problems: list = []
    if openai_batch.is_openai_line(obj):
        return (
            [
                (
                    "wrong_family",
                    None,
                    'this is an OpenAI Batch line; a Claude model reads {"custom_id": '
                    '"...", "request": {"messages": [...], "anthropic_version": '
                    '"vertex-2023-10-16", '
                    '"max_tokens": N}} lines',
                )
            ],
            None,
            None,
        )
    _only(
        obj,
        {"custom_id", "request"},
        "",
        problems,
        "a Claude line holds custom_id (its key) and request",
    )
    if obj.get("custom_id") is None:
        problems.append(
            (
                "missing_key",
                "custom_id",
                "custom_id is missing; each Claude request needs a "
                "custom_id (1-128 characters of A-Z a-z 0-9 . _ -), unique in the file",
            )
        )
    key = _key(obj, "custom_id", problems)
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
                    "Messages requests: " + ANTHROPIC.example,
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
    before = None
    for i, message in enumerate(messages):
        where = f"request.messages[{i}]"
        if not isinstance(message, dict):
            problems.append(("schema", where, f"{where} must be an object"))
            continue
        _only(message, {"role", "content"}, where, problems, "a message holds role and content")
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
    return problems, key, request


def _anthropic_stage(request, line: int) -> bytes:
    return _line_bytes({"custom_id": line_id(line), "request": request})


def _custom_line(out: dict):
    return line_of_id(out.get("custom_id"))


def _usage(prompt, completion) -> dict | None:
    if not isinstance(prompt, int) and not isinstance(completion, int):
        return None
    prompt, completion = prompt or 0, completion or 0
    return {
        "promptTokenCount": prompt,
        "candidatesTokenCount": completion,
        "totalTokenCount": prompt + completion,
    }


def _anthropic_result(key, out, batch_id, job):
    """A Messages response (`content` blocks, `stop_reason`, `usage.input_tokens`/`output_tokens`);
    an error as a `status` string, an `error` object or a response of `"type": "error"`."""
    request = out.get("request")
    response = out.get("response") if isinstance(out.get("response"), dict) else None
    error = _status_error(out)
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
        return _failed(key, batch_id, job, request, response, error)
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
        "usage": _usage(usage.get("input_tokens"), usage.get("output_tokens")),
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


# ---------------------------------------------------------------- OpenAI-compatible open models

_OPEN_ROLES = {"system", "developer", "user", "assistant", "tool"}


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
        _number(request, "max_tokens", "request", problems, 1, 128_000, whole=True)
    _number(request, "temperature", "request", problems, 0, 1)
    _number(request, "top_p", "request", problems, 0, 1)
    _number(request, "top_k", "request", problems, 1, 1_000_000, whole=True)
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


def _open_check(obj):
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
    _only(
        obj,
        {"custom_id", "method", "url", "body"},
        "",
        problems,
        "an OpenAI Batch line holds custom_id, method, url and body",
    )
    if obj.get("custom_id") is None:
        problems.append(
            (
                "missing_key",
                "custom_id",
                "custom_id is missing; each request needs a custom_id "
                "(1-128 characters of A-Z a-z 0-9 . _ -), unique in the file",
            )
        )
    key = _key(obj, "custom_id", problems)
    if obj.get("method", "POST") != "POST":
        problems.append(("schema", "method", 'method must be "POST"'))
    if obj.get("url", openai_batch.CHAT_URL) != openai_batch.CHAT_URL:
        problems.append(
            ("schema", "url", f'url must be "{openai_batch.CHAT_URL}" for a chat model')
        )
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
    if body.get("stream"):
        problems.append(
            ("schema", "body.stream", "batch requests are not streamed; remove body.stream")
        )
    for name in ("max_tokens", "max_completion_tokens"):
        _number(body, name, "body", problems, 1, 10_000_000, whole=True)
    _number(body, "temperature", "body", problems, 0, 2)
    _number(body, "top_p", "body", problems, 0, 1)
    _number(body, "n", "body", problems, 1, 128, whole=True)
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


def _open_stage(body, line: int) -> bytes:
    return _line_bytes(
        {"custom_id": line_id(line), "method": "POST", "url": openai_batch.CHAT_URL, "body": body}
    )


def _body_of(obj: dict):
    return obj.get("body")


def _open_result(key, out, batch_id, job):
    """A chat.completion as the `response` (Vertex: "response(JSON)"), or wrapped as OpenAI Batch
    writes it (`response.status_code`, `response.body`); errors as `error`, a `status` string or a
    status code >= 400."""
    request = out.get("body")
    response = out.get("response") if isinstance(out.get("response"), dict) else None
    error = _status_error(out)
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
        return _failed(key, batch_id, job, request, response, error)
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
        "usage": _usage(usage.get("prompt_tokens"), usage.get("completion_tokens")),
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


GEMINI = Family(
    "gemini",
    200_000,
    1 * GB,
    _gemini_check,
    _gemini_stage,
    _request_of,
    _gemini_line,
    build_result,
    '{"key": "k1", "request": {"contents": [{"role": "user", "parts": [{"text": "..."}]}]}}',
)
GEMINI_EMBEDDING = Family(
    "embeddings",
    1_000_000,
    1 * GB,
    _gemini_embedding_check,
    _gemini_embedding_stage,
    _request_of,
    _embedding_line,
    _embedding_result,
    '{"key": "k1", "request": {"content": {"parts": [{"text": "..."}]}, '
    '"embed_content_config": {"task_type": "RETRIEVAL_DOCUMENT"}}}',
    result_bytes=2 * 3072 * 12,
)
TEXT_EMBEDDING = Family(
    "embeddings",
    30_000,
    1 * GB,
    _text_embedding_check,
    _text_embedding_stage,
    _instance_of,
    lambda out: None,
    _embedding_result,
    '{"content": "...", "task_type": "RETRIEVAL_DOCUMENT"}',
    (("content",), ("task_type", "title"), "key"),
    result_bytes=2 * 768 * 12,
)
ANTHROPIC = Family(
    "anthropic",
    100_000,
    256 * MB,
    _anthropic_check,
    _anthropic_stage,
    _request_of,
    _custom_line,
    _anthropic_result,
    '{"custom_id": "k1", "request": {"messages": [{"role": "user", "content": '
    '"..."}], "anthropic_version": "vertex-2023-10-16", "max_tokens": 256}}',
    (("request",), (), "custom_id"),
)
OPEN_MODELS = Family(
    "open_models",
    50_000,
    200 * MB,
    _open_check,
    _open_stage,
    _body_of,
    _custom_line,
    _open_result,
    '{"custom_id": "k1", "method": "POST", "url": "/v1/chat/completions", '
    '"body": {"messages": [{"role": "user", "content": "..."}], "max_tokens": 256}}',
    (("body",), ("method", "url"), "custom_id"),
)
