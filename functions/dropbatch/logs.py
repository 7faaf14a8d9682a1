"""Structured JSON log lines in the shape Cloud Logging reads from stdout.

Besides `severity`, `message` and `time`, each line carries Cloud Logging's special fields
(https://cloud.google.com/logging/docs/structured-logging, "Special JSON fields in messages") so
that it joins the platform's own logs: `logging.googleapis.com/labels` with the batch and execution
ids (the execution id is the platform's Function-Execution-Id, ledger.execution_id), and, inside a
request that carries a trace (`traceparent`, or Google's `X-Cloud-Trace-Context`),
`logging.googleapis.com/trace` and `.../spanId`, which group the lines under that request in the
Logs Explorer.
"""

from __future__ import annotations

import contextvars
import os
import re
import sys
import time

import orjson

_context: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    "dropbatch_log_context", default=None
)


def bind(**fields) -> contextvars.Token:
    """Attach fields (batch_id, execution_id, job) to every line logged in this context."""
    return _context.set(
        {**(_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}}
    )


def reset(token: contextvars.Token) -> None:
    _context.reset(token)


LABELS = ("batch_id", "execution_id")
_W3C = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
_GOOGLE = re.compile(r"^([0-9a-f]{32})(?:/(\d+))?")


def trace_fields(headers, project: str) -> dict:
    """Cloud Logging's trace fields for a request's headers: W3C `traceparent`, else
    `X-Cloud-Trace-Context` (TRACE_ID/SPAN_ID;o=1, its span id decimal); nothing when neither is
    there or well formed."""
    w3c = _W3C.match(headers.get("traceparent") or "")
    google = _GOOGLE.match(headers.get("X-Cloud-Trace-Context") or "")
    trace, span = (
        (w3c.group(1), w3c.group(2))
        if w3c
        else (google.group(1), google.group(2))
        if google
        else (None, None)
    )
    if not trace or not project:
        return {}
    fields = {"logging.googleapis.com/trace": f"projects/{project}/traces/{trace}"}
    if span:
        fields["logging.googleapis.com/spanId"] = (
            span if w3c else f"{int(span) & (1 << 64) - 1:016x}"
        )
    return fields


def _request_fields() -> dict:
    flask = sys.modules.get("flask")  # functions-framework imported it: a request may be under way
    if flask is None or not flask.has_request_context():
        return {}
    return trace_fields(
        flask.request.headers,
        os.environ.get("DROPBATCH_PROJECT") or os.environ.get("GOOGLE_CLOUD_PROJECT") or "",
    )


def log(severity: str, message: str, **fields) -> None:
    entry = {
        "severity": severity,
        "message": message,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    entry.update(_context.get() or {})
    entry.update({k: v for k, v in fields.items() if v is not None})
    labels = {k: str(entry[k]) for k in LABELS if k in entry}
    if labels:
        entry["logging.googleapis.com/labels"] = labels
    entry.update(_request_fields())
    sys.stdout.buffer.write(orjson.dumps(entry, default=str) + b"\n")
    sys.stdout.flush()


def info(message: str, **fields) -> None:
    log("INFO", message, **fields)


def warning(message: str, **fields) -> None:
    log("WARNING", message, **fields)


def error(message: str, **fields) -> None:
    log("ERROR", message, **fields)
