"""One Vertex output line -> one result object: the per-line `status` in every shape seen, parsed
into an HTTP code and a google.rpc status name and classified (retryable or not), blocked prompts,
empty finishes, the text. tests/data/vertex-output-lines.jsonl holds each shape with where it was
seen."""

from __future__ import annotations

import re

import orjson

from .keys import line_from_labels, without_line_labels

RETRYABLE_CODES = {408, 429, 500, 502, 503, 504}
RETRYABLE_STATUS = {"RESOURCE_EXHAUSTED", "INTERNAL", "UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED"}

# google.rpc.Code names by HTTP code, and by their own number (googleapis google/rpc/code.proto).
STATUS_BY_HTTP = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
HTTP_BY_STATUS = {v: k for k, v in STATUS_BY_HTTP.items()} | {
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "ALREADY_EXISTS": 409,
    "UNKNOWN": 500,
    "DATA_LOSS": 500,
}
STATUS_BY_GRPC = {
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
}
# Plain-text statuses carry neither: the words say what happened ("Internal error occurred.").
_WORDS = (
    ("resource exhausted", "RESOURCE_EXHAUSTED"),
    ("quota", "RESOURCE_EXHAUSTED"),
    ("rate limit", "RESOURCE_EXHAUSTED"),
    ("too many requests", "RESOURCE_EXHAUSTED"),
    ("internal error", "INTERNAL"),
    ("unavailable", "UNAVAILABLE"),
    ("overloaded", "UNAVAILABLE"),
    ("deadline exceeded", "DEADLINE_EXCEEDED"),
    ("timed out", "DEADLINE_EXCEEDED"),
    ("invalid argument", "INVALID_ARGUMENT"),
    ("bad request", "INVALID_ARGUMENT"),
    ("permission denied", "PERMISSION_DENIED"),
)
_STATUS_NAME = re.compile(r"\b(" + "|".join(sorted(HTTP_BY_STATUS)) + r")\b")


def parse_status(status: str) -> dict:
    """A per-line Vertex `status` string as {"code": HTTP code, "status": google.rpc.Code name,
    "message"}, in every shape seen: "Bad Request: {json}", "RESOURCE_EXHAUSTED error occurred:
    {json}", a bare JSON error object, "RESOURCE_EXHAUSTED: ...", "429 Too Many Requests", "Internal
    error occurred." (tests/data has each, with where it was seen). Whatever part is missing is
    filled in from the other."""
    code = name = None
    message = status
    start = status.find("{")
    if start >= 0:
        try:
            body = orjson.loads(status[start:])
            err = body.get("error", body) if isinstance(body, dict) else {}
            if isinstance(err, dict) and ("code" in err or "message" in err or "status" in err):
                code, name = err.get("code"), err.get("status")
                message = err.get("message") or status
        except orjson.JSONDecodeError:
            pass
    if isinstance(code, str) and code.strip().isdigit():
        code = int(code)
    # a google.rpc.Code number
    if isinstance(code, int) and not isinstance(code, bool) and 0 < code < 100:
        name, code = name or STATUS_BY_GRPC.get(code), None
    if not isinstance(code, int) or isinstance(code, bool):
        found = re.search(r"\b([45]\d\d)\b", status)
        code = int(found.group(1)) if found else None
    if not isinstance(name, str) or name not in HTTP_BY_STATUS:
        found = _STATUS_NAME.search(status)
        name = found.group(1) if found else STATUS_BY_HTTP.get(code)
        if name is None:
            lowered = status.lower()
            name = next((n for words, n in _WORDS if words in lowered), None)
    if code is None and name is not None:
        code = HTTP_BY_STATUS.get(name)
    return {"code": code, "message": message, "status": name}


def is_retryable(error: dict | None) -> bool:
    """Worth another round: rate limits, server errors, deadlines, the Vertex service agent being
    provisioned; not bad requests, permissions or safety blocks."""
    if not error:
        return False
    message = str(error.get("message") or "").lower()
    return (
        error.get("code") in RETRYABLE_CODES
        or error.get("status") in RETRYABLE_STATUS
        or ("service agent" in message and "provision" in message)
    )


def get_field(obj: dict, camel: str, snake: str):
    """A field Vertex may write in camelCase or snake_case."""
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def _clean_request(request):
    if not isinstance(request, dict):
        return request
    labels = request.get("labels")
    if isinstance(labels, dict) and line_from_labels(labels) is not None:
        request = dict(request)
        rest = without_line_labels(labels)
        if rest:
            request["labels"] = rest
        else:
            del request["labels"]
    return request


def build_result(key: str, out: dict, batch_id: str | None, job: str | None) -> dict:
    status = out.get("status") or ""
    response = out.get("response") if isinstance(out.get("response"), dict) else None
    candidates = (response or {}).get("candidates") or []
    first = candidates[0] if candidates and isinstance(candidates[0], dict) else {}
    content = first.get("content") or {}
    answer = [p for p in content.get("parts") or [] if isinstance(p, dict) and not p.get("thought")]
    texts = [p["text"] for p in answer if isinstance(p.get("text"), str)]
    finish = get_field(first, "finishReason", "finish_reason")
    feedback = get_field(response or {}, "promptFeedback", "prompt_feedback") or {}
    block = get_field(feedback, "blockReason", "block_reason")
    error = None
    if status:
        error = parse_status(status)
    elif response is None:
        error = {
            "code": "NO_RESPONSE",
            "message": "the output line has neither a status nor a response",
        }
    elif block:
        message = (
            get_field(feedback, "blockReasonMessage", "block_reason_message")
            or f"the prompt was blocked ({block})"
        )
        error = {"code": block, "message": message}
    elif not candidates:
        error = {"code": "NO_CANDIDATES", "message": "the response has no candidates"}
    elif not answer and finish not in (None, "STOP", "FINISH_REASON_UNSPECIFIED"):
        # MAX_TOKENS spent on thinking, SAFETY, RECITATION...: a candidate with nothing in it is no
        # answer
        error = {
            "code": finish,
            "message": f"the first candidate ended with {finish} before any answer",
        }
    return result_object(
        key,
        "failed" if error else "succeeded",
        batch_id,
        job,
        request=_clean_request(out.get("request")),
        response=response,
        text="".join(texts) if texts else None,
        finish_reason=finish,
        usage=get_field(response or {}, "usageMetadata", "usage_metadata"),
        error=error,
        processed_time=out.get("processed_time") or out.get("processedTime"),
    )


def result_object(
    key: str,
    status: str,
    batch_id: str | None,
    job: str | None,
    *,
    request=None,
    response=None,
    text=None,
    finish_reason=None,
    usage=None,
    error=None,
    processed_time=None,
    **family,
) -> dict:
    """The one builder of a result object (DESIGN.md "Result object", docs/contracts.md), in its
    field order; `family`: a model family's own fields after `text` (embeddings: `embedding`,
    `statistics`)."""
    return {
        "key": key,
        "status": status,
        "request": request,
        "response": response,
        "text": text,
        **family,
        "finish_reason": finish_reason,
        "usage": usage,
        "error": error,
        "processed_time": processed_time,
        "batch_id": batch_id,
        "job": job,
    }


def missing_result(key: str, batch_id: str | None, job: str | None) -> dict:
    """The result of a request no output line answered (errors.jsonl lists it as `missing`)."""
    return result_object(
        key,
        "missing",
        batch_id,
        job,
        error={"code": "MISSING", "message": "Vertex AI wrote no output line for this request"},
    )
