"""Reading batch files: bounded, gzip-aware lines. validate, submit and split all read through here.

Every read has a bound: a line longer than its limit is skipped without being held, a file (or what
a gzip member expands to) longer than its limit stops the read, and the caller hears of both.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import zlib
from collections.abc import Iterator
from typing import IO

from .config import Config

GZIP_MAGIC = b"\x1f\x8b"
BOM = b"\xef\xbb\xbf"
READ_CHUNK = 1 << 20


class _Limited(io.RawIOBase):
    """Counts bytes read through it and stops the read past a limit (gzip bombs, oversized
    files)."""

    def __init__(self, raw: IO[bytes], limit: int, count: int = 0):
        self.raw, self.limit, self.count, self.exceeded = raw, limit, count, False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.count > self.limit:
            self.exceeded = True
            return 0
        # straight into the reader's buffer: no bytes made and copied again
        n = self.raw.readinto(buffer)
        self.count += n
        return n


def bounded_lines(stream: IO[bytes], limit: int) -> Iterator[tuple[bytes | None, int]]:
    """(line, bytes read) for each line; None for a line over `limit`, skipped without holding
    it."""
    while True:
        raw = stream.readline(limit + 1)
        if not raw:
            return
        if len(raw) > limit and not raw.endswith(b"\n"):
            size = len(raw)
            while True:
                more = stream.readline(READ_CHUNK)
                size += len(more)
                if not more or more.endswith(b"\n"):
                    break
            yield None, size
        else:
            yield raw, len(raw)


def open_source(path: str | os.PathLike) -> IO[bytes]:
    try:
        return open(path, "rb")
    except IsADirectoryError:
        raise FileNotFoundError(f"{path} is a directory; give a .jsonl or .jsonl.gz file") from None


@dataclasses.dataclass
class Reader:
    """Lines of a (possibly gzipped) JSONL stream with limits; reports file-level problems."""

    stream: IO[bytes]
    name: str
    config: Config
    report: object  # validate.Report: add(), bytes, lines
    start_line: int = 0  # resuming: lines already read
    # resuming a gzip file: decompressed bytes already read (a plain file is seeked by the caller)
    skip: int = 0
    compressed: bool | None = None  # known when resuming (the stream then starts mid-file)

    def continuation_state(self) -> dict:
        """What a continuation needs besides the report to go on reading (submit's checkpoint)."""
        return {"compressed": self.compressed}

    def lines(self) -> Iterator[tuple[int, bytes | None]]:
        """(line number, raw bytes) for every line; raw is None for a line over max_line_bytes."""
        cfg, report = self.config, self.report
        head = self.stream.read(2)
        compressed = head == GZIP_MAGIC if self.compressed is None else self.compressed
        self.compressed = compressed
        if self.name.lower().endswith(".gz") and not compressed and head and not self.start_line:
            report.add(
                None,
                "not_gzip",
                None,
                f"{self.name} is named .gz but is not gzip data; "
                "compress it with gzip or drop the .gz from the name",
                cfg.max_errors,
            )
            return
        outer = inner = _Limited(
            _Chain(head, self.stream), cfg.max_file_bytes, 0 if compressed else report.bytes
        )
        if compressed:
            inner = _Limited(
                gzip.GzipFile(fileobj=io.BufferedReader(outer, READ_CHUNK)), cfg.max_file_bytes
            )
        stream = io.BufferedReader(inner, READ_CHUNK)
        lineno = self.start_line
        try:
            left = self.skip
            # a gzip stream cannot seek: decompress up to where the last call stopped
            while left > 0:
                left -= len(stream.read(min(left, READ_CHUNK))) or left
            for raw, size in bounded_lines(stream, cfg.max_line_bytes):
                lineno += 1
                report.bytes += size
                if lineno == 1 and raw and raw.startswith(BOM):
                    raw = raw[3:]
                yield lineno, raw
        except (OSError, EOFError, zlib.error) as exc:
            report.add(
                lineno + 1,
                "read_error",
                None,
                f"the file could not be read past line {lineno}: {exc}",
                cfg.max_errors,
            )
        finally:
            report.lines = lineno
        if outer.exceeded or inner.exceeded:
            what = "decompressed " if inner is not outer and inner.exceeded else ""
            report.add(
                None,
                "file_too_large",
                None,
                f"the {what}file is larger than {cfg.max_file_bytes:,} bytes; "
                "split it into several files",
                cfg.max_errors,
            )


class _Chain(io.RawIOBase):
    """The two bytes peeked for the gzip check, then the rest of the stream."""

    def __init__(self, head: bytes, rest: IO[bytes]):
        self.head, self.rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.head:
            n = len(self.head)
            buffer[:n] = self.head
            self.head = b""
            return n
        return self.rest.readinto(buffer) or 0


class Prefetch(io.RawIOBase):
    """Reads a stream ahead in a thread (at most `depth` chunks of `size` bytes), so that waiting
    for the network overlaps with the work on what was already read. Close it to stop the thread."""

    def __init__(self, stream: IO[bytes], size: int = 8 << 20, depth: int = 1):
        import queue
        import threading

        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.stopped = threading.Event()
        self.buffer = b""
        self.thread = threading.Thread(target=self._fill, args=(stream, size), daemon=True)
        self.thread.start()

    def _fill(self, stream, size: int) -> None:
        try:
            while not self.stopped.is_set():
                chunk = stream.read(size)
                self._put(chunk)
                if not chunk:
                    return
        except BaseException as exc:  # handed to the reader, which raises it
            self._put(exc)

    def _put(self, item) -> None:
        import queue

        while not self.stopped.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self.buffer:
            item = self.queue.get()
            if isinstance(item, BaseException):
                raise item
            if not item:
                self._put(item)  # end of stream stays the end
                return 0
            self.buffer = memoryview(item)  # handed out in slices: no copy of what is left
        n = min(len(buffer), len(self.buffer))
        buffer[:n] = self.buffer[:n]
        self.buffer = self.buffer[n:]
        return n

    def close(self) -> None:
        self.stopped.set()
        super().close()
