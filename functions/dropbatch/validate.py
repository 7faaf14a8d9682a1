"""A whole batch file: streaming validation (every problem, by line), the job plan, and the second pass.

Each line goes through checks.check_line; lines are read through lineio (bounded, gzip-aware). A file
past the per-job limits is not an error: the plan splits it into several jobs by line ranges.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import IO, Iterator

import orjson

from .checks import check_line, safe_field
from .config import Config
from .keys import key_width, line_key, shown
from .lineio import Reader, open_source


@dataclasses.dataclass
class Report:
    source: str
    requests: int = 0
    lines: int = 0
    blank_lines: int = 0
    bytes: int = 0
    errors: list = dataclasses.field(default_factory=list)
    error_count: int = 0
    truncated: bool = False
    jobs: list = dataclasses.field(default_factory=list)

    @property
    def valid(self) -> bool:
        return self.error_count == 0

    def add(self, line: int | None, code: str, field: str | None, message: str, limit: int) -> None:
        self.error_count += 1
        if len(self.errors) < limit:
            self.errors.append({"line": line, "code": code, "field": field, "message": message})
        else:
            self.truncated = True

    def summary(self) -> str:
        """One line for a message or a log: counts, the first error's line, code and schema field path; never
        the file's own text (the report, which clips what it quotes, has the rest)."""
        text = f"{self.error_count:,} error(s) in {self.requests:,} requests"
        if self.errors:
            first = self.errors[0]
            if first["line"] is None:  # file-level messages are dropbatch's own words: no user text in them
                text += f"; {first['code']}: {first['message']}"
            else:
                field = safe_field(first["field"])
                text += f"; first: line {first['line']}: {first['code']}" + (f" at {field}" if field else "")
        return text + "; report.json lists every error by line"

    def to_dict(self) -> dict:
        return {"valid": self.valid, "source": self.source, "requests": self.requests, "errors": self.errors,
                "truncated": self.truncated, "error_count": self.error_count, "lines": self.lines,
                "blank_lines": self.blank_lines, "bytes": self.bytes, "jobs": self.jobs}



def _key_hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


def validate_stream(stream: IO[bytes], name: str, config: Config, source: str | None = None) -> Report:
    """Validate a whole file, streaming; the report lists every problem by line."""
    report = Report(source=source or name)
    limit = config.max_errors
    seen_keys: dict[int, int] = {}  # key hash -> first line
    digit_keys: list[tuple[str, int]] = []  # explicit keys that look like line numbers
    keyless = bytearray()  # per line: 1 when the line is a request without an explicit key
    part_bytes = part_requests = 0
    part_first = None
    loads = orjson.loads
    reader = Reader(stream, name, config, report)
    for lineno, raw in reader.lines():
        if len(keyless) < lineno:
            keyless.extend(b"\0" * (lineno - len(keyless)))
        if raw is None:
            report.add(lineno, "line_too_long", None, f"the line is longer than {config.max_line_bytes:,} bytes; "
                       "put large media in Cloud Storage and refer to it with fileData", limit)
            report.requests += 1
            continue
        if not raw.strip():
            report.blank_lines += 1
            continue
        report.requests += 1
        try:
            obj = loads(raw)
        except orjson.JSONDecodeError as exc:
            report.add(lineno, "invalid_json", None, _json_message(str(exc)), limit)
            continue
        problems, key = check_line(obj)
        for code, field, message in problems:
            report.add(lineno, code, field, message, limit)
        if key is None:
            keyless[lineno - 1] = 1
        else:
            h = _key_hash(key)
            first = seen_keys.get(h)
            if first is not None:
                report.add(lineno, "duplicate_key", "key", f"key {shown(key)} is already used on line {first}; "
                           "keys must be unique in a file", limit)
            else:
                seen_keys[h] = lineno
            if key.isdigit():
                digit_keys.append((key, lineno))
        size = len(raw)
        if part_requests and (part_requests >= config.max_job_requests
                              or part_bytes + size > config.max_job_bytes):
            report.jobs.append({"first_line": part_first, "last_line": lineno - 1,
                                "requests": part_requests, "bytes": part_bytes})
            part_bytes = part_requests = 0
        if not part_requests:
            part_first = lineno
        part_requests += 1
        part_bytes += size
    if part_requests:
        report.jobs.append({"first_line": part_first, "last_line": report.lines,
                            "requests": part_requests, "bytes": part_bytes})
    width = key_width(report.lines)
    for key, lineno in digit_keys:
        other = int(key)
        if len(key) == width and 1 <= other <= report.lines and keyless[other - 1]:
            report.add(lineno, "key_collision", "key", f"key {shown(key)} is also the key of line {other}, which has "
                       f"no key of its own; give line {other} a key or choose another", limit)
    if report.requests == 0 and not report.error_count:
        report.add(None, "empty_file", None, "the file has no requests; each line must be "
                   "{\"request\": {...}}", limit)
    if report.requests > config.max_file_requests:
        report.add(None, "too_many_requests", None, f"the file has {report.requests:,} requests; the limit is "
                   f"{config.max_file_requests:,} a file: split it into several files", limit)
    report.errors.sort(key=lambda e: (e["line"] is not None, e["line"] or 0))
    return report


def _json_message(detail: str) -> str:
    if "UTF-8" in detail:
        return f"the line is not valid UTF-8 ({detail}); save the file as UTF-8"
    if "NaN" in detail or "Infinity" in detail:
        return f"the line is not valid JSON ({detail}); NaN and Infinity are not JSON numbers"
    return f"the line is not valid JSON ({detail}); each line must be one complete JSON object"


def validate_path(path: str | os.PathLike, config: Config) -> Report:
    with open_source(path) as stream:
        return validate_stream(stream, os.fspath(path), config)


def iter_requests(stream: IO[bytes], name: str, config: Config, total_lines: int) -> Iterator[tuple[int, str, dict]]:
    """(line, key, request) of a file already found valid: the second pass, for staging and splitting."""
    width = key_width(total_lines)
    report = Report(source=name)
    for lineno, raw in Reader(stream, name, config, report).lines():
        if raw is None or not raw.strip():
            continue
        obj = orjson.loads(raw)
        key = obj.get("key")
        yield lineno, key if key is not None else line_key(lineno, width), obj["request"]
