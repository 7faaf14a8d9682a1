"""How an output line finds its request (split.py): the index of a part's staged lines by the line
marker each carries and by a fingerprint of the request, and the matcher that turns each output
line into a result or an error."""

from __future__ import annotations

import base64
import hashlib
import struct
import zlib

import orjson

from . import families, ordered
from .batch import USAGE_NAMES
from .keys import line_key
from .outcome import get_field, is_retryable
from .schema import snake_case

# ---------------------------------------------------------------- fingerprints


_F32 = struct.Struct("<f")


def canonical(value, key: str | None = None):
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            k = snake_case(k)
            if k == "labels" and key is None:
                continue
            v = canonical(v, k)
            if v is None or v == {} or v == []:
                continue
            if k in ("parts", "contents") and isinstance(v, dict):
                v = [v]
            out[k] = v
        return out
    if isinstance(value, list):
        return [canonical(v, key) for v in value]
    if isinstance(value, float):
        value = _float32(value)
        return int(value) if value.is_integer() else value
    return value


def _float32(value: float) -> float:
    """A number at float32 precision: Vertex echoes float fields (temperature, topP: `float` in
    google/cloud/aiplatform/v1/content.proto) re-serialized, so 0.1 may come back as
    0.10000000149011612."""
    try:
        return _F32.unpack(_F32.pack(value))[0]
    except (OverflowError, struct.error):  # beyond float32: a double field, compared as it is
        return value


def fingerprint(request) -> int:
    data = orjson.dumps(canonical(request), option=orjson.OPT_SORT_KEYS)
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


# ---------------------------------------------------------------- the input index


class Index:
    """Lines and keys of the requests one job was given; fingerprints built only if an output lacks
    its label."""

    def __init__(
        self,
        first_line: int,
        last_line: int,
        width: int,
        explicit: dict[int, str],
        present: bytearray,
        requests_factory,
        starts: list[int] | None = None,
    ):
        self.first, self.last, self.width = first_line, last_line, width
        # first line of each results.jsonl bucket (ordered.Buckets)
        self.starts = starts or [first_line]
        self.explicit = explicit  # line -> key, only where the key is not the line number
        self.present = present  # per line from first: 1 where a request stands
        self._factory = requests_factory  # () -> iterable of (line, request)
        self._fingerprints: dict[int, list[int] | int] | None = None
        # with reuse on (reuse.py): line -> the request's reuse fingerprint, and the lines answered
        # by earlier batches, as (line, batch_id, key answered under)
        self.reuse_fingerprints: dict[int, str] = {}
        self.reused: list[tuple[int, str, str]] = []

    @classmethod
    def from_keys(
        cls, entries, width: int, requests_factory, bucket_lines: int = 5_000, result_bytes: int = 0
    ) -> Index:
        """From [line, key] or [line, key, staged bytes] entries (a keys sidecar), in line order;
        `result_bytes`: what a result takes beyond its staged request (the model family's), so that
        a bucket's results fit ordered.BUCKET_BYTES however small the requests are."""
        explicit: dict[int, str] = {}
        lines = []
        buckets = ordered.Buckets(bucket_lines)
        fingerprints, reused = {}, []
        for entry in entries:
            line, key = entry[0], entry[1]
            lines.append(line)
            if len(entry) > 4:  # a reused sidecar row
                fingerprints[line] = entry[5]
                reused.append((line, entry[3], entry[4]))
            elif len(entry) > 3:
                fingerprints[line] = entry[3]
            buckets.add(line, (entry[2] if len(entry) > 2 else 0) + result_bytes)
            if key is not None and key != line_key(line, width):  # null: the line-number key
                explicit[line] = key
        first, last = (min(lines), max(lines)) if lines else (1, 0)
        present = bytearray(last - first + 1)
        for line in lines:
            present[line - first] = 1
        index = cls(first, last, width, explicit, present, requests_factory, buckets.starts)
        index.reuse_fingerprints, index.reused = fingerprints, reused
        return index

    @property
    def total(self) -> int:
        return sum(self.present)

    def key(self, line: int) -> str:
        return self.explicit.get(line) or line_key(line, self.width)

    def has(self, line: int) -> bool:
        return self.first <= line <= self.last and self.present[line - self.first] == 1

    def lines(self):
        return (self.first + i for i, flag in enumerate(self.present) if flag)

    def by_fingerprint(self, request, seen: bytearray) -> tuple[int | None, bool]:
        """(line, known): the first unseen line with this request; known is True when the request
        exists at all."""
        if self._fingerprints is None:
            self._fingerprints = {}
            for line, req in self._factory():
                fp = fingerprint(req)
                have = self._fingerprints.get(fp)
                if have is None:
                    self._fingerprints[fp] = line
                elif isinstance(have, int):
                    self._fingerprints[fp] = [1, have, line]  # [next place to look, lines...]
                else:
                    have.append(line)
        fp = fingerprint(request)
        have = self._fingerprints.get(fp)
        if have is None:
            return None, False
        if isinstance(have, int):
            return (None, True) if seen[have - self.first] else (have, True)
        # Identical requests (one prompt sampled under many keys): lines are handed out in order and
        # the place to look moves forward, so n copies cost O(n) in all, not O(n^2).
        while have[0] < len(have):
            line = have[have[0]]
            if not seen[line - self.first]:
                return line, True
            have[0] += 1
        return None, True


USAGE_FIELDS = tuple(
    (name, camel, snake_case(camel))
    for name, camel in zip(
        USAGE_NAMES,
        ("promptTokenCount", "candidatesTokenCount", "thoughtsTokenCount", "totalTokenCount"),
    )
)


class Matcher:
    """The state of one split: which lines have their result, counts, token usage, failures."""

    def __init__(
        self,
        index: Index,
        batch_id: str | None,
        job: str | None,
        state: dict | None = None,
        family: families.Family = families.GEMINI,
    ):
        self.index, self.batch_id, self.job, self.family = index, batch_id, job, family
        state = state or {}
        self.seen = (
            bytearray(zlib.decompress(base64.b64decode(state["seen"])))
            if state.get("seen")
            else bytearray(len(index.present))
        )
        self.counts = state.get("counts") or {
            "succeeded": 0,
            "failed": 0,
            "duplicate_outputs": 0,
            "unmatched_outputs": 0,
        }
        self.usage = {name: 0 for name, *_ in USAGE_FIELDS} | (state.get("usage") or {})
        # what the answers reused from earlier batches used (not paid again)
        self.reused_usage = {name: 0 for name, *_ in USAGE_FIELDS} | (
            state.get("reused_usage") or {}
        )
        self.failures = state.get("failures") or []  # errors.jsonl lines for failed requests

    def state(self) -> dict:
        return {
            "seen": base64.b64encode(zlib.compress(bytes(self.seen))).decode(),
            "counts": self.counts,
            "usage": self.usage,
            "reused_usage": self.reused_usage,
            "failures": self.failures,
        }

    def match(self, raw: bytes, replay: bool = False) -> tuple[int, str, bytes] | None:
        """(line, key, result object) for one output line, or None (a duplicate, unmatched or
        unreadable line). `replay`: the line is being read again (a file's new generation, up to
        where its last one was read), so a request already seen is not counted as a duplicate."""
        try:
            out = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.counts["unmatched_outputs"] += 1
            return None
        if not isinstance(out, dict):
            self.counts["unmatched_outputs"] += 1
            return None
        # the line the staged request carried, when it came back
        line = self.family.marked_line(out)
        known = line is not None and self.index.has(line)
        if not known:
            line = None
            request = self.family.payload(out)
            if isinstance(request, dict):
                line, known = self.index.by_fingerprint(request, self.seen)
        if line is None:
            self.counts["duplicate_outputs" if known else "unmatched_outputs"] += 1
            return None
        slot = line - self.index.first
        if self.seen[slot]:
            self.counts["duplicate_outputs"] += not replay
            return None
        self.seen[slot] = 1
        key = self.index.key(line)
        result = self.family.result(key, out, self.batch_id, self.job)
        self.counts[result["status"]] += 1
        _add_usage(self.usage, result)
        if result["error"]:
            self.failures.append(
                {
                    "key": key,
                    "line": line,
                    "status": "failed",
                    "error": result["error"],
                    "retryable": is_retryable(result["error"]),
                }
            )
        return line, key, orjson.dumps(result)

    def reuse(self, line: int, data: bytes | None, answered_by: str) -> bytes | None:
        """The result of a line an earlier batch answered (reuse.py), from that batch's result
        object: its key and batch become this one's, `reused_from` names the batch that asked
        Vertex. None, and the line stays unanswered, when that object is gone or not a succeeded
        result."""
        try:
            result = orjson.loads(data) if data is not None else None
        except orjson.JSONDecodeError:
            result = None
        slot = line - self.index.first
        if not isinstance(result, dict) or result.get("status") != "succeeded" or self.seen[slot]:
            return None
        self.seen[slot] = 1
        result.update(
            key=self.index.key(line),
            batch_id=self.batch_id,
            reused_from=result.get("reused_from") or answered_by,
        )
        self.counts["succeeded"] += 1
        self.counts["reused"] = self.counts.get("reused", 0) + 1
        _add_usage(self.reused_usage, result)
        return orjson.dumps(result)

    def missing(self, retryable: bool = True):
        """errors.jsonl entries of the requests no output line answered, in line order (a
        generator)."""
        return (
            {
                "key": self.index.key(line),
                "line": line,
                "status": "missing",
                "error": None,
                "retryable": retryable,
            }
            for line in self.index.lines()
            if not self.seen[line - self.index.first]
        )


def _add_usage(usage: dict, result: dict) -> None:
    for name, camel, snake in USAGE_FIELDS:
        value = get_field(result.get("usage") or {}, camel, snake)
        if isinstance(value, int):
            usage[name] += value
