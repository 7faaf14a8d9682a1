"""results.jsonl: the result of every request in the dropped file's line order, built within bounds.

A part's lines are cut into buckets of consecutive lines (at most DROPBATCH_RESULTS_BUCKET_LINES
lines and about BUCKET_BYTES of staged input each, counting what a family's result adds to its
request: families.Family.result_bytes). While the part is split, each result goes, with its line
number, into its bucket's buffer; a buffer past SEGMENT_BYTES, and every buffer at a checkpoint, is
written as a segment object. When the outputs are all read, each bucket's segments are read back
(one bucket in memory at a time), deduplicated by line (a re-run writes the same bytes again,
perhaps under another segment name), completed with the requests that never came back, and written
as one ordered object: a line per request, nothing else. The batch's results.jsonl is the
composition of every part's ordered buckets in line order, with the lines a retry round answered
again replaced (`compose_results`). Compose takes up to 32 sources a call and composite objects
compose again (https://cloud.google.com/storage/docs/composite-objects), so a file of any size is a
few calls.

    batches/BATCH_ID/ordered/rR-pPPPPP/seg/bBBBBB-sSSSSS.jsonl   "LINE result" lines, as matched
    batches/BATCH_ID/ordered/rR-pPPPPP/bBBBBB.jsonl              a bucket's results, in line order
    batches/BATCH_ID/results.jsonl                               the whole batch, in line order
"""

from __future__ import annotations

import bisect
import uuid

import orjson

from . import layout, outcome
from .documents import Part, SplitDone

# staged input per bucket: what one bucket's results take in memory, roughly
BUCKET_BYTES = 16_000_000
SEGMENT_BYTES = 4_000_000  # a bucket's buffer is written out past this
BUFFERED_BYTES = 32_000_000  # all buffers of a part together
COMPOSE_MAX = 32


class Buckets:
    """Cuts a part's lines, fed in order with their staged size, into buckets; `starts`: each one's
    first line."""

    def __init__(self, max_lines: int = 5_000):
        self.max_lines = max_lines
        self.starts: list[int] = []
        self.lines = self.bytes = 0

    def add(self, line: int, nbytes: int) -> None:
        if not self.starts or self.lines >= self.max_lines or self.bytes + nbytes > BUCKET_BYTES:
            self.starts.append(line)
            self.lines = self.bytes = 0
        self.lines += 1
        self.bytes += nbytes


def missing_result(key: str, batch_id: str | None, job: str | None) -> bytes:
    """The results.jsonl line of a request no output line answered."""
    return orjson.dumps(outcome.missing_result(key, batch_id, job))


class Collector:
    """Results of one part, bucketed by line range on their way to ordered bucket objects."""

    def __init__(self, bucket, prefix: str, starts: list[int]):
        self.bucket, self.prefix, self.starts = bucket, prefix, starts
        self.buffers: dict[int, bytearray] = {}
        self.buffered = 0
        # this task's segments; earlier tasks' stay and are read by order()
        self.writer = uuid.uuid4().hex[:12]
        self.segments: dict[int, int] = {}  # bucket -> segments this task wrote

    def bucket_of(self, line: int) -> int:
        return bisect.bisect_right(self.starts, line) - 1

    def add(self, line: int, data: bytes) -> None:
        b = self.bucket_of(line)
        buf = self.buffers.setdefault(b, bytearray())
        before = len(buf)
        buf += b"%d " % line
        buf += data
        buf += b"\n"
        self.buffered += len(buf) - before
        if len(buf) > SEGMENT_BYTES:
            self._write(b)
        elif self.buffered > BUFFERED_BYTES:
            self.flush()

    def _write(self, b: int) -> None:
        buf = self.buffers.pop(b)
        n = self.segments.get(b, 0)
        self.bucket.blob(
            self.prefix + layout.ordered_segment(b, self.writer, n)
        ).upload_from_string(bytes(buf), content_type="application/jsonl")
        self.segments[b] = n + 1
        self.buffered -= len(buf)

    def flush(self) -> None:
        """Write every buffer out (before a checkpoint)."""
        for b in sorted(self.buffers):
            self._write(b)

    def order(self, lines, key_of, missing, first_bucket: int = 0, stop=None) -> int | None:
        """Write each bucket's ordered object, from `first_bucket` on. `lines` are the part's
        request lines in order; `missing(line)` is the line of a request with no result. Returns the
        next bucket to do when `stop()` says time is up, else None."""
        self.flush()
        present = list(lines)
        for b in range(first_bucket, len(self.starts)):
            # at least one bucket a task: progress
            if b > first_bucket and stop is not None and stop():
                return b
            lo = bisect.bisect_left(present, self.starts[b])
            hi = (
                bisect.bisect_left(present, self.starts[b + 1])
                if b + 1 < len(self.starts)
                else len(present)
            )
            got: dict[int, bytes] = {}
            for blob in self.bucket.client.list_blobs(
                self.bucket, prefix=self.prefix + layout.ordered_segments(b)
            ):
                for raw in blob.download_as_bytes().splitlines():
                    line, _, data = raw.partition(b" ")
                    got.setdefault(int(line), data)
            body = bytearray()
            for line in present[lo:hi]:
                body += got.get(line) or missing(key_of(line))
                body += b"\n"
            self.bucket.blob(self.prefix + layout.ordered_bucket(b)).upload_from_string(
                bytes(body), content_type="application/jsonl"
            )
        return None


def result_key(raw: bytes) -> str:
    """The key of a result line: results are written with "key" first (split.build_result)."""
    if raw.startswith(b'{"key":"'):
        return raw[8 : raw.index(b'"', 8)].decode()
    return orjson.loads(raw)["key"]


# ---------------------------------------------------------------- the batch's results.jsonl


def bucket_path(prefix: str, part: Part, b: int) -> str:
    return prefix + layout.ordered(part) + layout.ordered_bucket(b)


class _Later:
    """(line, result) of one retry round in line order, read one ordered bucket at a time."""

    def __init__(
        self, bucket, prefix: str, parts: list[Part], dones: dict[str, SplitDone], name_of
    ):
        self.items = self._items(bucket, prefix, parts, dones, name_of)
        self.head = next(self.items, None)

    @staticmethod
    def _items(bucket, prefix, parts, dones, name_of):
        for part in parts:
            done = dones[name_of(part)]
            lines, starts = done.lines, done.buckets
            for b, first in enumerate(starts):
                lo = bisect.bisect_left(lines, first)
                hi = bisect.bisect_left(lines, starts[b + 1]) if b + 1 < len(starts) else len(lines)
                body = bucket.blob(bucket_path(prefix, part, b)).download_as_bytes().splitlines()
                yield from zip(lines[lo:hi], body)

    def take_until(self, last: int):
        while self.head is not None and self.head[0] <= last:
            yield self.head
            self.head = next(self.items, None)


def compose_results(
    bucket, prefix: str, parts: list[Part], dones: dict[str, SplitDone], name_of
) -> str:
    """Write PREFIX/results.jsonl: round 0's ordered buckets in line order, each line a later round
    answered again replaced by its last answer, as batch.merge_rounds counts it (only buckets with
    such lines are rewritten)."""
    rounds = sorted({p.round for p in parts} - {0})
    later = [
        _Later(
            bucket,
            prefix,
            sorted((p for p in parts if p.round == r), key=lambda p: p.index),
            dones,
            name_of,
        )
        for r in rounds
    ]
    sources = []
    for part in sorted((p for p in parts if p.round == 0), key=lambda p: p.index):
        starts = dones[name_of(part)].buckets
        for b in range(len(starts)):
            last = starts[b + 1] - 1 if b + 1 < len(starts) else part.last_line
            name = bucket_path(prefix, part, b)
            again = {}
            # in round order: the last answer wins; a retry with no output changes nothing
            for stream in later:
                again.update(
                    (result_key(data), data)
                    for _, data in stream.take_until(last)
                    if orjson.loads(data)["status"] != "missing"
                )
            if again:
                body = bucket.blob(name).download_as_bytes().splitlines()
                name = f"{prefix}{layout.ORDERED_FINAL}{name_of(part)}-b{b:05d}.jsonl"
                bucket.blob(name).upload_from_string(
                    b"".join(again.get(result_key(raw), raw) + b"\n" for raw in body),
                    content_type="application/jsonl",
                )
            sources.append(name)
    target = f"{prefix}{layout.RESULTS_FILE}"
    compose(bucket, sources, target)
    return target


def compose(bucket, names: list[str], target: str) -> None:
    """Concatenate objects into `target`, 32 at a time (the composite so far is the first source of
    the next). Past 32 sources the composite grows under a name of this call's own and becomes
    `target` in one last compose, so callers that run at once (two finishers, a submission taken
    over) each write the whole target, never one call's first step under another's later ones."""
    dest = bucket.blob(target)
    dest.content_type = "application/jsonl"
    if not names:
        dest.upload_from_string(b"", content_type="application/jsonl")
        return
    if len(names) <= COMPOSE_MAX:
        dest.compose([bucket.blob(n) for n in names])
        return
    building = bucket.blob(f"{target}.compose-{uuid.uuid4().hex[:12]}")
    building.content_type = "application/jsonl"
    for done in range(0, len(names), COMPOSE_MAX - 1):
        building.compose(
            ([building] if done else [])
            + [bucket.blob(n) for n in names[done : done + COMPOSE_MAX - 1]]
        )
    dest.compose([building])
    building.delete()
