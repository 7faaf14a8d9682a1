"""Request keys and batch ids: the rules that turn user strings into safe object names."""

from __future__ import annotations

import hashlib
import re

# The label dropbatch adds to each staged request (N = its line in the dropped file); Vertex echoes it back.
LINE_LABEL = "dropbatch-line"
KEY_RE = re.compile(r"[A-Za-z0-9._-]{1,128}\Z")
_SLUG_RE = re.compile(r"[^a-z0-9]+")
BATCH_ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,50}\Z")


SHOWN_CHARS = 40  # the most of a user's value a report quotes


def shown(value) -> str:
    """A user's value as a report may quote it: its repr, clipped past SHOWN_CHARS and marked as clipped.
    Messages and logs never quote user values at all; reports (report.json, `dropbatch validate`) do, clipped."""
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "a list"
    if isinstance(value, str):
        if len(value) <= SHOWN_CHARS:
            return repr(value)
        return f"{value[:SHOWN_CHARS]!r}... ({len(value):,} chars, clipped)"
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}... ({len(text):,} chars, clipped)"


def key_problem(key) -> str | None:
    """Why `key` cannot be a request key, or None when it can."""
    if not isinstance(key, str):
        return f"key must be a string, not {shown(key) if isinstance(key, (dict, list)) else type(key).__name__}; " \
               "write it in quotes, e.g. \"key\": \"row-1\""
    if key in (".", ".."):
        return f"key {key!r} is not allowed; use letters, digits, '.', '_' or '-'"
    if not KEY_RE.match(key):
        return (f"key {shown(key)} must be 1-128 characters of A-Z a-z 0-9 . _ - "
                f"(it becomes an object name: results/KEY.json)")
    return None


def line_key(line: int, width: int) -> str:
    """The key of a request without one: its 1-based line number, zero-padded to the width of the line count."""
    return str(line).zfill(width)


def key_width(total_lines: int) -> int:
    return len(str(max(total_lines, 1)))


def batch_id(bucket: str, name: str, generation: int | str) -> str:
    """Readable, path- and label-safe, the same for the same upload and new for a re-upload."""
    base = name.rsplit("/", 1)[-1]
    for ext in (".gz", ".jsonl", ".json"):
        if base.lower().endswith(ext):
            base = base[: -len(ext)]
    slug = _SLUG_RE.sub("-", base.lower()).strip("-")[:40].strip("-") or "batch"
    digest = hashlib.sha256(f"{bucket}/{name}#{generation}".encode()).hexdigest()[:10]
    return f"{slug}-{digest}"


def is_batch_id(value: str) -> bool:
    return bool(BATCH_ID_RE.match(value))
