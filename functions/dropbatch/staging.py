"""A file's valid lines written as the staged parts its jobs read (the submit function's second
half, while the file is read): chunk objects uploaded by a small pool, composed into a part once
complete."""

from __future__ import annotations

import itertools
import operator
import time

import orjson

from . import batch, families, keys, layout, ordered, reuse
from .documents import Ledger, Part
from .store import ObjectWriter, Store

CHUNK_BYTES = 16 << 20  # a staged chunk object
# chunks uploading at once while the file is read on: at most this many chunks in memory
UPLOADS_IN_FLIGHT = 2


class Stager:
    """Staged parts, written while the file is read (stage): {"request": ...} lines with the line
    labels, and beside each part its keys sidecar ([line, explicit key or null, staged bytes]).
    Consecutive lines that are staged as written (Validator.feed's as_is) are kept as they were read
    and labelled a run at a time; any other line is re-serialised by its family. A part is written
    as chunk objects of about CHUNK_BYTES, uploaded by a small pool while reading goes on (a
    checkpoint waits for them), and composed into input/part-NNNNN.jsonl once complete.

    With DROPBATCH_REUSE=on every line is staged one at a time: each keys row carries the request's
    fingerprint, and a request the reuse index has an answer to goes in the part's reused sidecar
    instead ([line, key, staged bytes, batch_id, key answered under, fingerprint, staged request]),
    not in what Vertex is sent (reuse.py)."""

    def __init__(self, store: Store, doc: Ledger, state: dict | None = None):
        import concurrent.futures
        import threading

        self.store, self.batch_id = store, doc.batch_id
        self.chunks: dict[str, int] = (state or {}).get("chunks", {})  # part -> chunks written
        self.part: int | None = None
        # the open chunk's staged lines, joined once when it is handed off
        self.data: list[bytes] = []
        # consecutive lines staged from their own bytes, lines run_first ... run_end - 1
        self.run: list[bytes] = []
        self.run_first = self.run_end = 0
        self.size = 0
        self.keys = bytearray()
        self.model = ""  # the file's model, set once the file is open
        self.lookup = reuse.Lookup(store) if reuse.enabled(store.config) else None
        self.reused = bytearray()  # the open chunk's reused sidecar rows
        # part -> requests answered from earlier batches
        self.reused_counts: dict[str, int] = (state or {}).get("reused", {})
        self.pool = concurrent.futures.ThreadPoolExecutor(
            UPLOADS_IN_FLIGHT, thread_name_prefix="stage"
        )
        self.slots = threading.BoundedSemaphore(UPLOADS_IN_FLIGHT)
        self.pending: list = []
        self.family = families.GEMINI  # the file's model family, set once the file is open
        self.writer: ObjectWriter | None = None  # made on first use
        self.lock = threading.Lock()

    def _name(self, part: int, chunk: int | None = None) -> str:
        base = self.store.path(self.batch_id, layout.staged(batch.new_part(part, 0, 0, 0, 0, None)))
        return base if chunk is None else f"{base}.c{chunk:05d}"

    def stage(self, lines, validator, deadline: float) -> int | None:
        """Validate `lines` (a Reader's (line, bytes)) and stage each valid one while the file has
        no error; the line it stopped at when the clock passed `deadline`, else None at the end. A
        line that goes on with the open run of lines staged as written costs an append and nothing
        more: no call, no other step."""
        feed, report, run, clock = validator.feed, validator.report, self.run, time.monotonic
        for lineno, raw in lines:
            fed = feed(lineno, raw)
            if fed is not None and not report.error_count:
                if (
                    fed[2]
                    and lineno == self.run_end
                    and validator.job_index == self.part
                    and self.lookup is None
                ):
                    run.append(raw)
                    self.run_end = lineno + 1
                    self.size += len(raw)
                    if self.size >= CHUNK_BYTES:
                        self._flush()
                else:
                    self.add(lineno, fed, validator.job_index, raw)
            if clock() > deadline:
                return lineno
        return None

    def add(self, line: int, fed: tuple, part: int, raw: bytes) -> None:
        """Stage one valid line into `part`; `fed` is what Validator.feed said of it: (key, request,
        as_is)."""
        key, request, as_is = fed
        if part != self.part:
            self._flush()
            self.part = part
        self._close_run()
        if as_is and self.lookup is None:  # a run starts
            self.run_first, self.run_end = line, line + 1
            self.run.append(raw)
            self.size += len(raw)
        else:  # re-serialised as the family stages it (Gemini: labels merged, parts made lists)
            # with reuse on, fingerprinted first: staging adds the line's labels to the request
            fp = reuse.fingerprint(self.model, request) if self.lookup is not None else None
            staged = self.family.stage(request, line)
            if fp is None or not self._reused(line, key, staged, fp):
                self.data.append(staged)
                self.size += len(staged)
                row = [line, key, len(staged), *([fp] if fp else [])]
                self.keys += orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)
        if self.size >= CHUNK_BYTES:
            self._flush()

    def _reused(self, line: int, key: str | None, staged: bytes, fp: str) -> bool:
        """Put the line in the reused sidecar when an earlier batch answered the same request."""
        earlier = self.lookup.find(fp)
        if earlier is None or earlier[0] == self.batch_id:
            return False
        row = [line, key, len(staged), *earlier, fp, orjson.Fragment(staged.rstrip(b"\n"))]
        self.reused += orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)
        part = str(self.part)
        self.reused_counts[part] = self.reused_counts.get(part, 0) + 1
        return True

    def _close_run(self) -> None:
        """Stage the open run of lines that are exactly {"request": {...}} from their own bytes, all
        at once (no Python step per line): each line up to its request's closing brace, then its
        labels and the closing braces."""
        if not self.run:
            return
        first, n = self.run_first, len(self.run)
        # each without "}}\n", as views of the lines read: no copy until the chunk is joined
        bodies = list(map(operator.getitem, map(memoryview, self.run), itertools.repeat(slice(-3))))
        self.run.clear()
        tails, line = [], first
        while len(tails) < n:  # the line labels, a block of 36 lines at a time
            block, at = divmod(line, 36)
            tails += keys.line_labels_block(block, b',"labels":', b"}}\n")[at : at + n - len(tails)]
            line = first + len(tails)
        self.data.append(b"".join(itertools.chain.from_iterable(zip(bodies, tails))))
        sizes = map(operator.add, map(len, bodies), map(len, tails))
        # [[line,null,size],...]
        rows = orjson.dumps(list(zip(range(first, first + n), itertools.repeat(None), sizes)))
        # a row a line: no "],[" is inside a row
        self.keys += rows[1:-1].replace(b"],[", b"]\n[") + b"\n"
        self.run_end = 0

    def _flush(self) -> None:
        """Hand the open chunk to the upload pool (waiting while UPLOADS_IN_FLIGHT are on their
        way)."""
        self._close_run()
        if self.part is None or not (self.data or self.reused):
            return
        chunk = self.chunks.get(str(self.part), 0)
        self.chunks[str(self.part)] = chunk + 1
        # a slot is taken before the chunk is joined and given back once its bytes are dropped, so
        # at most UPLOADS_IN_FLIGHT joined chunks exist besides the open one
        self.slots.acquire()
        bodies = [b"".join(self.data), bytes(self.keys), bytes(self.reused)]
        self.data.clear()
        self.size = 0
        self.keys.clear()
        self.reused.clear()
        self.pending.append(self.pool.submit(self._send, self._name(self.part, chunk), bodies))

    def _writer(self) -> ObjectWriter:
        if self.writer is None:  # made on first use, by the pool's threads too
            with self.lock:
                self.writer = self.writer or ObjectWriter(self.store.bucket.name, UPLOADS_IN_FLIGHT)
        return self.writer

    def _send(self, name: str, bodies: list[bytes]) -> None:
        """Upload a chunk and its sidecar, then give its slot back once its bytes are dropped (the
        pool's work item keeps its arguments until the next one starts: the emptied list)."""
        try:
            self._upload(name, *bodies)
        finally:
            bodies.clear()
            self.slots.release()

    def _suffixes(self) -> tuple[str, ...]:
        return layout.STAGED + ((layout.REUSED,) if self.lookup else ())

    def _upload(self, name: str, data: bytes, sidecar: bytes, reused: bytes) -> None:
        for suffix, body in zip(self._suffixes(), (data, sidecar, reused)):
            self._writer().write(name + suffix, body, "application/jsonl")

    def _wait(self) -> None:
        self._flush()
        for future in self.pending:
            future.result()  # an upload that failed fails the step (the platform retries it)
        self.pending.clear()
        self.part = None

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        if self.writer is not None:
            self.writer.close()

    def checkpoint(self) -> dict:
        self._wait()
        return {"chunks": self.chunks, "reused": self.reused_counts}

    def finish(self, jobs: list[dict]) -> list[Part]:
        """Compose each part from its chunks; the ledger's parts, one per planned job."""
        self._wait()
        parts = []
        for i, job in enumerate(jobs):
            chunks = [self._name(i, c) for c in range(self.chunks.get(str(i), 0))]
            for suffix in self._suffixes():
                ordered.compose(
                    self.store.bucket, [c + suffix for c in chunks], self._name(i) + suffix
                )
            self._delete(chunks)
            reused = self.reused_counts.get(str(i), 0)
            part = batch.new_part(
                i,
                0,
                job["first_line"],
                job["last_line"],
                job["requests"] - reused,
                self.store.uri(self._name(i) + ".jsonl"),
            )
            parts.append(part.set(reused=reused))
        return parts

    def abandon(self) -> None:
        """The file is invalid: its staged chunks go (best effort; lifecycle rules catch the
        rest)."""
        for future in self.pending:
            future.exception()
        self.pending.clear()
        self._delete([self._name(int(p), c) for p, n in self.chunks.items() for c in range(n)])

    def _delete(self, chunks: list[str]) -> None:
        for chunk in chunks:
            for suffix in self._suffixes():
                self._writer().delete(chunk + suffix)
