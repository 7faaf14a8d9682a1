"""Request keys and batch ids: the rules that turn user strings into safe object names."""

from __future__ import annotations

import hashlib
import re

# Each staged request carries its line in the dropped file as labels, which Vertex echoes back.
# Google asks for few values per label key (at most 1,000 distinct values per key, no per-call
# unique values: cloud.google.com/vertex-ai/generative-ai/docs/multimodal/add-labels-to-api-calls),
# so the line number is written in base 36, one digit per key: dropbatch_l0 (units), dropbatch_l1
# (36s), ...; each key has at most 36 values and 4 keys cover 1.6 million lines. Keys hold no `-`,
# so they work in list filters too.
LINE_LABEL_PREFIX = "dropbatch_l"
LEGACY_LINE_LABEL = "dropbatch-line"  # what earlier versions staged: still read, never written
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def label_digits(lines: int) -> int:
    """How many digit labels a file of `lines` lines needs."""
    digits = 1
    while 36**digits <= lines:
        digits += 1
    return digits


_LABEL_KEYS = tuple(f"{LINE_LABEL_PREFIX}{i}" for i in range(16))


def line_labels(line: int, digits: int) -> dict:
    """{"dropbatch_l0": units, "dropbatch_l1": 36s, ...}: `digits` labels (called once per staged
    request)."""
    labels = {}
    for key in _LABEL_KEYS[:digits]:
        line, digit = divmod(line, 36)
        labels[key] = _B36[digit]
    return labels


_B36_BYTES = tuple(c.encode() for c in _B36)
# ',"dropbatch_lI":"D"' for each label key I above the units and each digit D: a block's labels are
# joined from these
_DIGIT_LABELS = tuple(
    tuple(b',"%s":"%s"' % (key.encode(), digit) for digit in _B36_BYTES) for key in _LABEL_KEYS
)


def line_labels_block(block: int, before: bytes = b"", after: bytes = b"") -> list[bytes]:
    """before + orjson.dumps(line_labels(line, label_digits(line))) + after for each of the 36 lines
    block*36 ... block*36+35, made at once without a dict or a serialiser: they share every digit
    but the units, and their number of digits (a power of 36 starts a block). The Stager makes one
    block every 36 staged requests."""
    high, i, rest = [], 1, block
    while rest:  # the digits above the units: as many as label_digits(block * 36) counts
        rest, digit = divmod(rest, 36)
        high.append(_DIGIT_LABELS[i][digit])
        i += 1
    start, end = before + b'{"dropbatch_l0":"', b'"' + b"".join(high) + b"}" + after
    # no NUL in JSON text
    return (start + (end + b"\0" + start).join(_B36_BYTES) + end).split(b"\0")


def line_from_labels(labels) -> int | None:
    """The line a request's echoed labels carry, or None."""
    if not isinstance(labels, dict):
        return None
    line, found = 0, False
    for key, value in labels.items():
        if (
            isinstance(key, str)
            and key.startswith(LINE_LABEL_PREFIX)
            and key[len(LINE_LABEL_PREFIX) :].isdigit()
        ):
            if not isinstance(value, str) or len(value) != 1 or value not in _B36:
                return None
            line += _B36.index(value) * 36 ** int(key[len(LINE_LABEL_PREFIX) :])
            found = True
    if found:
        return line
    legacy = str(labels.get(LEGACY_LINE_LABEL, ""))
    return int(legacy) if legacy.isdigit() else None


def without_line_labels(labels: dict) -> dict:
    return {
        k: v
        for k, v in labels.items()
        if not (k.startswith(LINE_LABEL_PREFIX) or k == LEGACY_LINE_LABEL)
    }


KEY_RE = re.compile(r"[A-Za-z0-9._-]{1,128}\Z")
_SLUG_RE = re.compile(r"[^a-z0-9]+")
BATCH_ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,50}\Z")


SHOWN_CHARS = 40  # the most of a user's value a report quotes


def shown(value) -> str:
    """A user's value as a report may quote it: its repr, clipped past SHOWN_CHARS and marked as
    clipped. Messages and logs never quote user values at all; reports (report.json, `dropbatch
    validate`) do, clipped."""
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "a list"
    if isinstance(value, str):
        if len(value) <= SHOWN_CHARS:
            return repr(value)
        return f"{value[:SHOWN_CHARS]!r}... ({len(value):,} chars, clipped)"
    text = repr(value)
    return (
        text
        if len(text) <= SHOWN_CHARS
        else f"{text[:SHOWN_CHARS]}... ({len(text):,} chars, clipped)"
    )


def key_problem(key) -> str | None:
    """Why `key` cannot be a request key, or None when it can."""
    if not isinstance(key, str):
        return (
            f"key must be a string, not "
            f"{shown(key) if isinstance(key, (dict, list)) else type(key).__name__}; "
            'write it in quotes, e.g. "key": "row-1"'
        )
    if key in (".", ".."):
        return f"key {key!r} is not allowed; use letters, digits, '.', '_' or '-'"
    if not KEY_RE.match(key):
        return (
            f"key {shown(key)} must be 1-128 characters of A-Z a-z 0-9 . _ - "
            f"(it becomes an object name: results/KEY.json)"
        )
    return None


def line_key(line: int, width: int) -> str:
    """The key of a request without one: its 1-based line number, zero-padded to the width of the
    line count."""
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
