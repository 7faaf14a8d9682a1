"""Vertex output -> one result object per request key, errors.jsonl, manifest.json. One core, two
front ends.

Matching never trusts output order: first the line labels echoed back inside the request, then a
canonical fingerprint of the request (nulls and empties dropped, camelCase and snake_case folded,
key order ignored; labels ignored). Identical requests take outputs in line order, one each. Files
are read in name order, lines in file order, and the first output of a request wins, so a re-run
writes the same bytes."""

from __future__ import annotations

import concurrent.futures
import heapq
import os
import threading
import time
from pathlib import Path

import msgspec
import orjson

from . import families, layout, logs, notify, ordered, reuse, split_outputs
from .batch import build_manifest, ended_for_good
from .documents import Ledger, Part, SplitDone, SplitTask
from .keys import key_width
from .lineio import bounded_lines
from .matching import Index, Matcher
from .store import open_lines

# ---------------------------------------------------------------- where results go


class LocalSink:
    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)

    def put(self, name: str, data: bytes) -> None:
        tmp = self.dir / f".{name}.tmp"
        tmp.write_bytes(data)
        tmp.replace(self.dir / name)

    def flush(self) -> None:
        pass


class GcsSink:
    """Result objects uploaded concurrently: a bounded pool of workers sharing one google-auth
    AuthorizedHttp over a urllib3 pool of kept-alive connections, at most `workers * 4` results in
    flight, retried as the storage client retries (408, 429, 5xx, connection errors:
    google.cloud.storage.retry.DEFAULT_RETRY).

    A result is one media upload of a few KB through the public JSON API: the storage client's
    per-blob machinery, or a requests Session, costs several times the CPU of the request itself
    (docs/benchmarks.md, split). Writes are idempotent (a re-run writes the same bytes). Close it
    (or use it as a context manager).
    """

    def __init__(self, bucket_name: str, prefix: str, workers: int = 32):
        import urllib.parse

        from .store import gcs_http

        self.url = f"/upload/storage/v1/b/{urllib.parse.quote(bucket_name, safe='')}/o"
        self.prefix = prefix
        # one pool of kept-alive connections to the one host results go to
        self.http = gcs_http(workers)
        self.pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="results")
        self.slots = threading.BoundedSemaphore(workers * 4)
        self.pending: set = set()
        self.error: BaseException | None = None
        self.retries = 0
        from google.cloud.storage.retry import DEFAULT_RETRY

        self._send = DEFAULT_RETRY.with_timeout(300).with_delay(0.2, 10, 2)(
            self._post, on_error=self._count
        )

    def _count(self, exc) -> None:
        self.retries += 1

    def _post(self, name: str, data: bytes) -> None:
        import urllib.parse

        from .store import http_error

        url = f"{self.url}?uploadType=media&name={urllib.parse.quote(self.prefix + name, safe='')}"
        response = self.http.request(
            "POST",
            url,
            body=data,
            headers={"Content-Type": "application/json"},
            timeout=120.0,
            retries=False,
        )  # api_core retries, not urllib3
        if response.status >= 300:
            raise http_error(response.status, response.data, f"writing {name}")

    def _upload(self, name: str, data: bytes) -> None:
        from google.api_core import exceptions

        from .store import gcs_error

        try:
            self._send(name, data)
        except (exceptions.GoogleAPICallError, exceptions.RetryError) as exc:
            self.error = gcs_error(exc, f"Cloud Storage, writing {name}")
        except BaseException as exc:
            self.error = exc
        finally:
            self.slots.release()

    def put(self, name: str, data: bytes) -> None:
        if self.error:
            raise self.error
        self.slots.acquire()
        future = self.pool.submit(self._upload, name, data)
        self.pending.add(future)
        future.add_done_callback(self.pending.discard)

    def flush(self) -> None:
        concurrent.futures.wait(list(self.pending))
        if self.error:
            raise self.error

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.http.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# ---------------------------------------------------------------- one part of a batch, in the cloud


def load_index(store, doc: Ledger, part: Part, family: families.Family) -> Index:
    name = store.path(doc.batch_id, layout.staged(part))
    width = key_width(doc.lines)

    def rows(suffix):
        with open_lines(store.bucket.blob(name + suffix)) as f:
            for raw in f:
                yield orjson.loads(raw)

    def requests():  # the staged lines, in the order of their keys sidecar
        with open_lines(store.bucket.blob(name + ".jsonl")) as f:
            for raw, entry in zip(f, rows(".keys.jsonl")):
                yield entry[0], family.payload(orjson.loads(raw))

    entries = rows(".keys.jsonl")
    if part.reused:  # and the lines answered by earlier batches, in line order with them
        entries = heapq.merge(entries, rows(layout.REUSED), key=lambda row: row[0])
    return Index.from_keys(
        entries, width, requests, store.config.results_bucket_lines, family.result_bytes
    )


def split_part(store, doc: Ledger, part: Part, task: SplitTask) -> bool:
    """Match one job's outputs to its requests, write the results and the part's ordered buckets;
    True when the part is split, False when it stopped first (docs/contracts.md): at
    DROPBATCH_SPLIT_BUDGET_S, checkpointed and continued in a new task; or, for a `partial` task
    while the job runs, at the end of what the job has written so far, checkpointed for the next
    task. The budget counts from when the task holds its part (index loaded, files listed). Outputs
    are read, then buckets ordered; both checkpoint, with each output file's generation and offset
    read up to: a new file, or a new generation (what was matched is not counted twice), is read
    from its start, and a partial task stops before a last line the job is still writing."""
    config, batch_id = store.config, doc.batch_id
    done_path = store.path(batch_id, layout.split_done(part))
    ckpt_path = store.path(batch_id, layout.split_checkpoint(part))
    if store.read_json(done_path)[0] is not None:
        return True
    started, partial = time.monotonic(), task.partial
    checkpoint = store.read_json(ckpt_path)[0] or {}
    if "files" not in checkpoint:  # none yet (a checkpoint always records its files)
        checkpoint = {}
    index, matcher = _matcher(store, doc, part, checkpoint.get("state"))
    collector = ordered.Collector(
        store.bucket, store.path(batch_id, layout.ordered(part)), index.starts
    )
    files = split_outputs.output_files(store, doc, part)
    positions: dict = checkpoint.get("files") or {}  # output file -> [generation, offset read]
    # from here: every task gets its budget of work
    deadline = time.monotonic() + config.split_budget_s

    def save(**where) -> None:
        sink.flush()
        collector.flush()
        store.write_json(ckpt_path, {**where, "files": positions, "state": matcher.state()})

    def stop(**where) -> bool:
        if time.monotonic() <= deadline:
            return False
        save(**where)
        if not partial:  # a partial task's next increment is the sweep's to send
            notify.send_split_task(config, msgspec.structs.replace(task, continuation=True))
        logs.info("split checkpointed; continuing in a new task", part=part.index, partial=partial)
        return True

    with GcsSink(store.bucket.name, store.path(batch_id, ""), config.workers) as sink:
        if _reuse_results(store, (index, matcher), sink, collector, stop):
            return False  # the lines earlier batches answered (reuse.py) come first
        for blob in files:
            if _match_file(blob, positions, matcher, sink, collector, partial, config, stop):
                return False
        if partial:
            save()
            logs.info(
                "results written so far", part=part.index, counts=matcher.counts, files=len(files)
            )
            return False
        sink.flush()
        logs.info("results written", part=part.index, retries=sink.retries)
        left = _order(collector, index, doc, part, (checkpoint.get("order_from", 0), deadline))
        if left is not None and stop(order_from=left):
            return False
    _write_done(store, doc, part, (index, matcher), files, started)
    return True


# earlier results read at once (then the budget is looked at)
REUSE_CHUNK = 512


def _reuse_results(store, matched: tuple, sink, collector, stop) -> bool:
    """The results of the part's lines answered by earlier batches (reuse.py), copied from their
    result objects before any output is read; True when `stop` said to stop (it checkpointed). A
    line whose earlier result cannot be read stays unanswered: `missing`, and retried."""
    index, matcher = matched
    todo = [r for r in index.reused if not matcher.seen[r[0] - index.first]]
    if not todo:
        return False
    from google.api_core.exceptions import NotFound

    def earlier(row):
        try:
            return store.bucket.blob(store.path(row[1], layout.result(row[2]))).download_as_bytes()
        except NotFound:
            return None

    lost = 0
    with concurrent.futures.ThreadPoolExecutor(store.config.workers) as pool:
        for at in range(0, len(todo), REUSE_CHUNK):
            chunk = todo[at : at + REUSE_CHUNK]
            for (line, batch_id, _), data in zip(chunk, pool.map(earlier, chunk)):
                raw = matcher.reuse(line, data, batch_id)
                if raw is None:
                    lost += 1
                    continue
                sink.put(layout.result(index.key(line)), raw)
                collector.add(line, raw)
            if stop():
                return True
    logs.info("earlier results reused", event="results_reused", requests=len(todo) - lost)
    if lost:
        logs.warning(
            "earlier results could not be read; their requests are missing and retried",
            event="reuse_lost",
            requests=lost,
        )
    return False


def _order(collector, index: Index, doc: Ledger, part: Part, span: tuple) -> int | None:
    """The part's results in line order (ordered buckets, a missing result for each request without
    one) from bucket span[0]; the bucket to go on from when the clock passed span[1]."""
    first_bucket, deadline = span
    return collector.order(
        index.lines(),
        index.key,
        lambda key: ordered.missing_result(key, doc.batch_id, part.job),
        first_bucket=first_bucket,
        stop=lambda: time.monotonic() > deadline,
    )


def _matcher(store, doc: Ledger, part: Part, state: dict | None) -> tuple[Index, Matcher]:
    """The part's index of staged lines and a matcher over it, from a checkpoint's `state`."""
    family = families.family_of(doc.model)
    index = load_index(store, doc, part, family)
    return index, Matcher(index, doc.batch_id, part.job, state, family)


def _write_done(
    store, doc: Ledger, part: Part, matched: tuple, files: list, started: float
) -> None:
    """The part's errors (the matcher's failures and the requests without an output, in line
    order: one part's, within the per-job limits) and its done document, which the finishing steps
    add up."""
    batch_id, (index, matcher) = doc.batch_id, matched
    done_path = store.path(batch_id, layout.split_done(part))
    missing = list(matcher.missing(retryable=not ended_for_good(part)))
    errors = sorted(matcher.failures + missing, key=lambda e: e["line"])
    if index.reuse_fingerprints and reuse.enabled(store.config):
        failed = {e["line"] for e in matcher.failures}
        reuse.record(
            store,
            batch_id,
            (
                (fp, index.key(line))
                for line, fp in index.reuse_fingerprints.items()
                if matcher.seen[line - index.first] and line not in failed
            ),
        )
    store.bucket.blob(store.path(batch_id, layout.split_errors(part))).upload_from_string(
        b"".join(orjson.dumps(e) + b"\n" for e in errors), content_type="application/jsonl"
    )
    store.create_json(
        done_path,
        SplitDone(
            part=part.index,
            round=part.round,
            job=part.job,
            requests=index.total,
            counts={**matcher.counts, "missing": len(missing)},
            usage=matcher.usage,
            error_count=len(errors),
            files=[f.name for f in files],
            seconds=round(time.monotonic() - started, 3),
            buckets=index.starts,
            lines=list(index.lines()) if part.round else None,
            reused_usage=matcher.reused_usage if index.reused else None,
        ),
    )
    logs.info("part split", part=part.index, counts=matcher.counts, missing=len(missing))


def _match_file(
    blob, positions: dict, matcher, sink, collector, partial: bool, config, stop
) -> bool:
    """Match one output file's lines from where the part's checkpoint read it up to (`positions`:
    file -> [generation, offset]); True when `stop` said to stop (it checkpointed)."""
    generation, read_to = positions.get(blob.name, (None, 0))
    replay_to = read_to if generation not in (None, blob.generation) else 0
    offset = read_to if generation == blob.generation else 0
    if offset >= (blob.size or 0) and generation == blob.generation:
        return False
    with open_lines(blob, offset) as stream:
        for raw, size in bounded_lines(stream, 2 * config.max_line_bytes):
            if partial and raw is not None and not raw.endswith(b"\n"):
                # half-written: the job completes it in a later generation of the file
                break
            offset += size
            if raw is None:
                # over the size limit: counted, not read
                matcher.counts["unmatched_outputs"] += 1
            elif raw.strip():
                hit = matcher.match(raw, replay=offset <= replay_to)
                if hit:
                    sink.put(layout.result(hit[1]), hit[2])
                    collector.add(hit[0], hit[2])
            positions[blob.name] = [blob.generation, offset]
            if stop():
                return True
    positions[blob.name] = [blob.generation, offset]
    return False


# ---------------------------------------------------------------- the local front end: dropbatch
# split


def prediction_files(paths) -> list[Path]:
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*.jsonl") if f.is_file())
        elif p.is_file():
            files.append(p)
        else:
            from .errors import UsageError

            raise UsageError(f"{p}: no such file or directory")
    return files


def write_ordered(out: Path, index: Index, matcher: Matcher) -> None:
    """DIR/results.jsonl: DIR/KEY.json of each request in input order, a `missing` line where none
    came back."""
    tmp = out / ".results.jsonl.tmp"
    with open(tmp, "wb") as f:
        for line in index.lines():
            key = index.key(line)
            f.write(
                (out / f"{key}.json").read_bytes()
                if matcher.seen[line - index.first]
                else ordered.missing_result(key, None, None)
            )
            f.write(b"\n")
    tmp.replace(out / layout.RESULTS_FILE)


def split_local(
    input_path: str,
    prediction_paths: list[str],
    out_dir: str,
    config,
    progress=None,
    model: str | None = None,
) -> dict:
    """`dropbatch split`: match a job's output files to the input file they came from (for `model`'s
    family)."""
    from .validate import iter_requests, validate_path

    family = families.family_of(model or config.model)
    report = validate_path(input_path, config, model=model)
    if not report.valid:
        from .errors import InvalidInput

        first = report.errors[0]
        raise InvalidInput(
            f"{input_path} is not a valid batch file ({report.error_count} errors; line "
            f"{first['line']}: {first['message']}); run `dropbatch validate {input_path}`"
        )
    files = prediction_files(prediction_paths)
    width = key_width(report.lines)

    def records():
        with open(input_path, "rb") as f:
            yield from iter_requests(f, input_path, config, report.lines, family)

    index = Index.from_keys(
        ((line, key) for line, key, _ in records()),
        width,
        lambda: ((line, req) for line, _, req in records()),
    )
    matcher = Matcher(index, None, None, family=family)
    sink = LocalSink(out_dir)
    started = time.monotonic()
    for path in files:
        _match_local(path, matcher, sink, config.max_line_bytes, progress)
    write_ordered(Path(out_dir), index, matcher)
    missing = _write_local_errors(Path(out_dir), matcher)
    counts = {"total": index.total, **matcher.counts, "missing": missing}
    counts = {k: counts[k] for k in LOCAL_COUNTS}
    manifest = build_manifest(
        None,
        counts,
        matcher.usage,
        [],
        os.path.abspath(input_path),
        os.path.abspath(out_dir),
        predictions=[str(f) for f in files],
        timings={"split_seconds": round(time.monotonic() - started, 3)},
    )
    sink.put(layout.MANIFEST, orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return manifest


LOCAL_COUNTS = ("total", "succeeded", "failed", "missing", "duplicate_outputs", "unmatched_outputs")


def _match_local(path, matcher: Matcher, sink: LocalSink, max_line_bytes: int, progress) -> None:
    """One local prediction file's lines through the matcher, each result into the sink."""
    with open(path, "rb") as f:
        for raw, size in bounded_lines(f, 2 * max_line_bytes):
            if raw is None:
                matcher.counts["unmatched_outputs"] += 1
            elif raw.strip():
                hit = matcher.match(raw)
                if hit:
                    sink.put(f"{hit[1]}.json", hit[2])
            if progress:
                progress(size)


def _write_local_errors(out: Path, matcher: Matcher) -> int:
    """OUT/errors.jsonl in line order, streamed (a mostly-missing million-request split must not
    hold its errors); how many requests had no output."""
    missing = 0
    tmp = out / ".errors.jsonl.tmp"
    with open(tmp, "wb") as f:
        for e in heapq.merge(
            sorted(matcher.failures, key=lambda e: e["line"]),
            matcher.missing(),
            key=lambda e: e["line"],
        ):
            missing += e["status"] == "missing"
            f.write(orjson.dumps(e) + b"\n")
    tmp.replace(out / layout.ERRORS)
    return missing
