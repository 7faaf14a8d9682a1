"""A whole batch file: streaming validation (every problem, by line), the job plan, and the second
pass.

Each line goes through checks.check_line; lines are read through lineio (bounded, gzip-aware). A
file past the per-job limits is not an error: the plan splits it into several jobs by line ranges.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import zlib
from collections.abc import Iterator
from typing import IO

import orjson

from . import cost, families, openai_batch
from .checks import safe_field
from .config import Config
from .keys import key_width, line_key, shown
from .lineio import Reader, open_source

# a sampled line is at most this long (the sample is kept in the submission checkpoint)
SAMPLE_LINE_BYTES = 65_536


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
    # line formats seen: "gemini", "openai", ...
    formats: list = dataclasses.field(default_factory=list)
    family: str | None = None  # the model family the file was checked for (families.py)
    # what the cost bound is made of (cost.bound): the valid requests' bytes and output limits
    request_bytes: int = 0
    output_tokens: int = 0
    cost_bound: dict | None = None  # cost.bound for the file's model, once it is known

    @property
    def valid(self) -> bool:
        return self.error_count == 0

    def add(
        self,
        line: int | None,
        code: str,
        field: str | None,
        message: str,
        limit: int,
        key: str | None = None,
    ) -> None:
        self.error_count += 1
        if len(self.errors) < limit:
            self.errors.append(
                {
                    "line": line,
                    "code": code,
                    "field": field,
                    "message": message,
                    **({"key": key} if key is not None else {}),
                }
            )
        else:
            self.truncated = True

    def summary(self) -> str:
        """One line for a message or a log: counts, the first error's line, code and schema field
        path; never the file's own text (the report, which clips what it quotes, has the rest)."""
        text = f"{self.error_count:,} error(s) in {self.requests:,} requests"
        if self.errors:
            first = self.errors[0]
            # file-level messages are dropbatch's own words: no user text in them
            if first["line"] is None:
                text += f"; {first['code']}: {first['message']}"
            else:
                field = safe_field(first["field"], families.FIELD_NAMES)
                text += f"; first: line {first['line']}: {first['code']}" + (
                    f" at {field}" if field else ""
                )
        return text + "; report.json lists every error by line"

    def to_dict(self) -> dict:
        return {
            "valid": self.valid,
            "source": self.source,
            "requests": self.requests,
            "errors": self.errors,
            "truncated": self.truncated,
            "error_count": self.error_count,
            "lines": self.lines,
            "blank_lines": self.blank_lines,
            "bytes": self.bytes,
            "jobs": self.jobs,
            "format": "+".join(self.formats) or None,
            "family": self.family,
            "cost_bound": self.cost_bound,
        }


def _key_hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


class Validator:
    """Validating one file, line by line: keys seen, the job plan, the report so far. Its state can
    be saved and restored, so that a submission can stop before its time budget and continue in
    another call."""

    def __init__(
        self, config: Config, source: str, state: dict | None = None, model: str | None = None
    ):
        self.config = config
        self.report = Report(source=source)
        self.family = families.family_of(model or config.model)
        self.seen_keys: dict[int, int] = {}  # key hash -> first line
        self.digit_keys: list[tuple[str, int]] = []  # explicit keys that look like line numbers
        self.keyless = bytearray()  # per line: 1 when the line is a request without an explicit key
        self.part = {"first": None, "requests": 0, "bytes": 0}
        self.job_index = 0  # the job the last request fed belongs to
        # [line bytes, request JSON] of the file's first Gemini requests: what countTokens counts
        # (admit.count_tokens); lines over SAMPLE_LINE_BYTES are left to the estimate
        self.sample: list[list] = []
        if state:
            self._restore(state)
        self.report.family = self.family.name

    def feed(self, lineno: int, raw: bytes | None) -> tuple[str | None, dict, bool] | None:
        """Check one line; (explicit key or None, what is staged, as_is) when it is a request with
        no problem. as_is: staging adds only the line labels, at the end of the request: the line is
        exactly {"request": {...}}\n, with no labels and no one-object form for a list (its own
        request is what is staged)."""
        report, config, limit = self.report, self.config, self.config.max_errors
        if len(self.keyless) < lineno:
            self.keyless.extend(b"\0" * (lineno - len(self.keyless)))
        if raw is None:
            report.add(
                lineno,
                "line_too_long",
                None,
                f"the line is longer than {config.max_line_bytes:,} bytes; "
                "put large media in Cloud Storage and refer to it with fileData",
                limit,
            )
            report.requests += 1
            return None
        if not raw.strip():
            report.blank_lines += 1
            return None
        report.requests += 1
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            report.add(lineno, "invalid_json", None, _json_message(str(exc)), limit)
            return None
        problems, key, payload, kind = parse_line(obj, self.family)
        if kind not in report.formats:
            report.formats.append(kind)
        for code, field, message in problems:
            report.add(lineno, code, field, message, limit, key)
        if key is None:
            self.keyless[lineno - 1] = 1
        elif self._duplicate(lineno, key):
            problems = True
        self._plan(lineno, len(raw))
        if problems:
            return None
        report.request_bytes += len(raw)
        report.output_tokens += cost.output_bound(self.family.name, payload)
        if (
            self.family is families.GEMINI
            and len(self.sample) < self.config.count_tokens_sample
            and len(raw) <= SAMPLE_LINE_BYTES
        ):
            self.sample.append([len(raw), orjson.dumps(payload).decode()])
        return (
            key,
            payload,
            (
                kind == "gemini"
                and len(obj) == 1
                and payload is obj["request"]
                and "labels" not in payload
                and raw[-3:] == b"}}\n"
            ),
        )

    def _duplicate(self, lineno: int, key: str) -> bool:
        """Record an explicit key; whether an earlier line has it (an error of this line)."""
        h = _key_hash(key)
        first = self.seen_keys.get(h)
        if key.isdigit():
            self.digit_keys.append((key, lineno))
        if first is None:
            self.seen_keys[h] = lineno
            return False
        self.report.add(
            lineno,
            "duplicate_key",
            "key",
            f"key {shown(key)} is already used on line {first}; keys must be unique in a file",
            self.config.max_errors,
            key,
        )
        return True

    def _plan(self, lineno: int, size: int) -> None:
        """Cut the file into jobs within the per-job limits, by line ranges (report.jobs)."""
        part = self.part
        most_requests, most_bytes = self.family.job_limits(self.config)
        if part["requests"] and (
            part["requests"] >= most_requests or part["bytes"] + size > most_bytes
        ):
            self.report.jobs.append(
                {
                    "first_line": part["first"],
                    "last_line": lineno - 1,
                    "requests": part["requests"],
                    "bytes": part["bytes"],
                }
            )
            self.job_index = len(self.report.jobs)
            part.update(first=None, requests=0, bytes=0)
        if not part["requests"]:
            part["first"] = lineno
        part["requests"] += 1
        part["bytes"] += size

    def finish(self) -> Report:
        report, config, limit = self.report, self.config, self.config.max_errors
        part = self.part
        if part["requests"]:
            report.jobs.append(
                {
                    "first_line": part["first"],
                    "last_line": report.lines,
                    "requests": part["requests"],
                    "bytes": part["bytes"],
                }
            )
        width = key_width(report.lines)
        for key, lineno in self.digit_keys:
            other = int(key)
            if len(key) == width and 1 <= other <= report.lines and self.keyless[other - 1]:
                report.add(
                    lineno,
                    "key_collision",
                    "key",
                    f"key {shown(key)} is also the key of line {other}, which "
                    f"has no key of its own; give line {other} a key or choose another",
                    limit,
                )
        if report.requests == 0 and not report.error_count:
            report.add(
                None,
                "empty_file",
                None,
                "the file has no requests; each line must be like " + self.family.example,
                limit,
            )
        if report.requests > config.max_file_requests:
            report.add(
                None,
                "too_many_requests",
                None,
                f"the file has {report.requests:,} requests; the limit is "
                f"{config.max_file_requests:,} a file: split it into several files",
                limit,
            )
        if len(report.jobs) > config.max_file_jobs:
            report.add(
                None,
                "too_many_jobs",
                None,
                f"the file needs {len(report.jobs):,} jobs for this model "
                f"(at most {self.family.job_limits(config)[0]:,} requests a job); the limit is "
                f"{config.max_file_jobs} a file: split it into several files",
                limit,
            )
        report.errors.sort(key=lambda e: (e["line"] is not None, e["line"] or 0))
        return report

    def state(self) -> dict:
        """Everything needed to go on from here, as JSON (key hashes and the keyless map packed,
        compressed)."""
        hashes = b"".join(
            h.to_bytes(8, "little") + line.to_bytes(8, "little")
            for h, line in self.seen_keys.items()
        )
        return {
            "report": dataclasses.asdict(self.report),
            "digit_keys": self.digit_keys,
            "part": self.part,
            "seen_keys": base64.b64encode(zlib.compress(hashes)).decode(),
            "keyless": base64.b64encode(zlib.compress(bytes(self.keyless))).decode(),
            "sample": self.sample,
        }

    def _restore(self, state: dict) -> None:
        self.report = Report(**state["report"])
        self.digit_keys = [tuple(k) for k in state["digit_keys"]]
        self.part = state["part"]
        self.job_index = len(self.report.jobs)
        packed = zlib.decompress(base64.b64decode(state["seen_keys"]))
        self.seen_keys = {
            int.from_bytes(packed[i : i + 8], "little"): int.from_bytes(
                packed[i + 8 : i + 16], "little"
            )
            for i in range(0, len(packed), 16)
        }
        self.keyless = bytearray(zlib.decompress(base64.b64decode(state["keyless"])))
        self.sample = state.get("sample") or []


def parse_line(obj, family: families.Family) -> tuple[list, str | None, object, str]:
    """(problems, explicit key, what is staged, the line's format) of one parsed line for a model
    family. An OpenAI Batch line sent to a Gemini model is checked as the Gemini line it converts
    to."""
    if family is families.GEMINI and openai_batch.is_openai_line(obj):
        obj, problems = openai_batch.convert(obj)
        found, key, payload = family.check(obj)
        # the Gemini checks judge only a line that converted
        return problems or found, key, payload, "openai"
    problems, key, payload = family.check(obj)
    kind = (
        "openai"
        if openai_batch.is_openai_line(obj)
        else {"open_models": "openai"}.get(family.name, family.name)
    )
    return problems, key, payload, kind


def validate_stream(
    stream: IO[bytes],
    name: str,
    config: Config,
    source: str | None = None,
    model: str | None = None,
) -> Report:
    """Validate a whole file, streaming, for the family of `model` (the default model when None);
    the report lists every problem by line."""
    validator = Validator(config, source or name, model=model)
    for lineno, raw in Reader(stream, name, config, validator.report).lines():
        validator.feed(lineno, raw)
    return validator.finish()


def _json_message(detail: str) -> str:
    if "UTF-8" in detail:
        return f"the line is not valid UTF-8 ({detail}); save the file as UTF-8"
    if "NaN" in detail or "Infinity" in detail:
        return f"the line is not valid JSON ({detail}); NaN and Infinity are not JSON numbers"
    return f"the line is not valid JSON ({detail}); each line must be one complete JSON object"


def price(report: Report, model: str, config: Config) -> Report:
    """Put the file's cost bound in its report (cost.bound at the model's batch price)."""
    report.cost_bound = cost.bound(
        model, report.request_bytes, report.output_tokens, cost.prices(config.prices)
    )
    return report


def validate_path(path: str | os.PathLike, config: Config, model: str | None = None) -> Report:
    with open_source(path) as stream:
        report = validate_stream(stream, os.fspath(path), config, model=model)
    return price(report, model or config.model, config)


def iter_requests(
    stream: IO[bytes],
    name: str,
    config: Config,
    total_lines: int,
    family: families.Family = families.GEMINI,
) -> Iterator[tuple[int, str, object]]:
    """(line, key, what is staged) of a file already found valid: the second pass, for splitting."""
    width = key_width(total_lines)
    report = Report(source=name)
    for lineno, raw in Reader(stream, name, config, report).lines():
        if raw is None or not raw.strip():
            continue
        _, key, payload, _ = parse_line(orjson.loads(raw), family)
        yield lineno, key if key is not None else line_key(lineno, width), payload
