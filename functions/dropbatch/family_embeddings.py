"""The embeddings families (families.py): gemini-embedding requests and text-embedding instances,
checked, staged and read back."""

from __future__ import annotations

from . import checks, openai_batch
from .family_base import (
    failed_result,
    line_bytes,
    line_id,
    line_of_id,
    number_field,
    only_fields,
    status_error,
    user_key,
)
from .family_open import EMBEDDINGS_URL
from .keys import shown
from .outcome import get_field, result_object

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


# ---------------------------------------------------------------- embeddings


def _embedding_config(config, path: str, problems: list) -> None:
    if not isinstance(config, dict):
        problems.append(("schema", path, f"{path} must be an object"))
        return
    only_fields(
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
        number_field(config, name, path, problems, 1, 3072, whole=True)
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
        return problems, user_key(obj, "custom_id", problems), request
    if "request" not in obj:  # a bare instance (text-embedding), with an optional key
        key = user_key(obj, "key", problems)
        return problems, key, {k: v for k, v in obj.items() if k != "key"}
    only_fields(
        obj, {"key", "request"}, "", problems, 'a line holds "request" and an optional "key"'
    )
    return problems, user_key(obj, "key", problems), obj["request"]


def gemini_embedding_check(obj):
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
    only_fields(
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


def gemini_embedding_stage(request, line: int) -> bytes:
    return line_bytes({"key": line_id(line), "request": request})


def text_embedding_check(obj):
    problems, key, instance = _unwrap(obj, gemini=False)
    if instance is None:
        return problems, key, None
    path = "request" if "request" in obj else ""
    if not isinstance(instance, dict):
        return [("schema", path or None, 'an instance is an object: {"content": "..."}')], key, None
    only_fields(
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


def text_embedding_stage(instance, line: int) -> bytes:
    return line_bytes(instance)


def instance_of(obj: dict):
    return obj.get("instance", obj)


def embedding_line(out: dict):
    return line_of_id(out.get("key"))


def embedding_result(key, out, batch_id, job):
    """The vector from any shape the embeddings pages show or the SDKs type:
    `predictions[0].embeddings` (text-embedding batch output; also under `response`, the online
    predict shape), `response.embedding` / `response.embeddings[0]` (EmbedContentResponse);
    `statistics` with token_count and truncated (ContentEmbeddingStatistics)."""
    request = out.get("request", out.get("instance"))
    response = out.get("response") if isinstance(out.get("response"), dict) else None
    error = status_error(out)
    if error:
        return failed_result(
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
        return failed_result(
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
