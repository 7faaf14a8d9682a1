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
every family."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

from . import checks, family_claude, keys
from .constants import GB, MB
from .family_base import custom_line, line_bytes
from .family_claude import anthropic_check, anthropic_result, anthropic_stage
from .family_embeddings import (
    embedding_line,
    embedding_result,
    gemini_embedding_check,
    gemini_embedding_stage,
    instance_of,
    text_embedding_check,
    text_embedding_stage,
)
from .family_open import body_of, open_check, open_result, open_stage
from .outcome import build_result

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


class TableShape(NamedTuple):
    required: tuple  # the columns that must be there
    optional: tuple  # the columns read when they are there
    key_field: str  # the field a key column fills (key, or custom_id)


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
    # A table as input, as each family's batch page describes its BigQuery input
    table: TableShape = TableShape(required=("request",), optional=(), key_field="key")
    # What a result object takes beyond its request: an embedding's vector, twice (`embedding`, and
    # `response` as Vertex returned it), at about 12 bytes a value; results.jsonl buckets are cut by
    # it (matching.Index).
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
    return line_bytes({"request": request})


def _gemini_line(out: dict):
    request = out.get("request")
    return keys.line_from_labels(request.get("labels")) if isinstance(request, dict) else None


def _request_of(obj: dict):
    return obj.get("request")


GEMINI = Family(
    name="gemini",
    max_requests=200_000,
    max_bytes=1 * GB,
    check=_gemini_check,
    stage=_gemini_stage,
    payload=_request_of,
    marked_line=_gemini_line,
    result=build_result,
    example='{"key": "k1", "request": {"contents": [{"role": "user", "parts": [{"text": "..."}]}]}'
    "}",
)
GEMINI_EMBEDDING = Family(
    name="embeddings",
    max_requests=1_000_000,
    max_bytes=1 * GB,
    check=gemini_embedding_check,
    stage=gemini_embedding_stage,
    payload=_request_of,
    marked_line=embedding_line,
    result=embedding_result,
    example='{"key": "k1", "request": {"content": {"parts": [{"text": "..."}]}, '
    '"embed_content_config": {"task_type": "RETRIEVAL_DOCUMENT"}}}',
    result_bytes=2 * 3072 * 12,
)
TEXT_EMBEDDING = Family(
    name="embeddings",
    max_requests=30_000,
    max_bytes=1 * GB,
    check=text_embedding_check,
    stage=text_embedding_stage,
    payload=instance_of,
    marked_line=lambda out: None,
    result=embedding_result,
    example='{"content": "...", "task_type": "RETRIEVAL_DOCUMENT"}',
    table=TableShape(required=("content",), optional=("task_type", "title"), key_field="key"),
    result_bytes=2 * 768 * 12,
)
ANTHROPIC = Family(
    name="anthropic",
    max_requests=100_000,
    max_bytes=256 * MB,
    check=anthropic_check,
    stage=anthropic_stage,
    payload=_request_of,
    marked_line=custom_line,
    result=anthropic_result,
    example=family_claude.EXAMPLE,
    table=TableShape(required=("request",), optional=(), key_field="custom_id"),
)
OPEN_MODELS = Family(
    name="open_models",
    max_requests=50_000,
    max_bytes=200 * MB,
    check=open_check,
    stage=open_stage,
    payload=body_of,
    marked_line=custom_line,
    result=open_result,
    example='{"custom_id": "k1", "method": "POST", "url": "/v1/chat/completions", '
    '"body": {"messages": [{"role": "user", "content": "..."}], "max_tokens": 256}}',
    table=TableShape(required=("body",), optional=("method", "url"), key_field="custom_id"),
)
