"""Structured JSON log lines in the shape Cloud Logging reads from stdout."""

from __future__ import annotations

import contextvars
import sys
import time

import orjson

_context: contextvars.ContextVar[dict | None] = contextvars.ContextVar("dropbatch_log_context", default=None)


def bind(**fields) -> contextvars.Token:
    """Attach fields (batch_id, execution_id, job) to every line logged in this context."""
    return _context.set({**(_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}})


def reset(token: contextvars.Token) -> None:
    _context.reset(token)


def log(severity: str, message: str, **fields) -> None:
    entry = {"severity": severity, "message": message, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    entry.update(_context.get() or {})
    entry.update({k: v for k, v in fields.items() if v is not None})
    sys.stdout.buffer.write(orjson.dumps(entry, default=str) + b"\n")
    sys.stdout.flush()


def info(message: str, **fields) -> None:
    log("INFO", message, **fields)


def warning(message: str, **fields) -> None:
    log("WARNING", message, **fields)


def error(message: str, **fields) -> None:
    log("ERROR", message, **fields)
