"""Vertex output -> one result object per request key, errors.jsonl, manifest.json. One core, two front ends.

Matching never trusts output order: first the `dropbatch-line` label echoed back inside the request, then a
canonical fingerprint of the request (nulls and empties dropped, camelCase and snake_case folded, key order
ignored; labels ignored). Identical requests take outputs in line order, one each. Files are read in name
order, lines in file order, and the first output of a request wins, so a re-run writes the same bytes.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import heapq
import os
import re
import threading
import time
import zlib
from pathlib import Path

import orjson

from . import logs
from .events import age_s
from .keys import is_batch_id, key_width, line_key
from .ledger import now
from .validate import bounded_lines

LINE_LABEL = "dropbatch-line"
RETRYABLE_CODES = {408, 429, 500, 502, 503, 504}
RETRYABLE_STATUS = {"RESOURCE_EXHAUSTED", "INTERNAL", "UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED"}
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
_snake_cache: dict[str, str] = {}


# ---------------------------------------------------------------- fingerprints

def _snake(name: str) -> str:
    out = _snake_cache.get(name)
    if out is None:
        out = _snake_cache[name] = _CAMEL.sub("_", name).lower()
    return out


def canonical(value, key: str | None = None):
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            k = _snake(k)
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
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def fingerprint(request) -> int:
    data = orjson.dumps(canonical(request), option=orjson.OPT_SORT_KEYS)
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


# ---------------------------------------------------------------- the input index

class Index:
    """Lines and keys of the requests one job was given; fingerprints built only if an output lacks its label."""

    def __init__(self, first_line: int, last_line: int, width: int, explicit: dict[int, str], present: bytearray,
                 requests_factory):
        self.first, self.last, self.width = first_line, last_line, width
        self.explicit = explicit  # line -> key, only where the key is not the line number
        self.present = present  # per line from first: 1 where a request stands
        self._factory = requests_factory  # () -> iterable of (line, request)
        self._fingerprints: dict[int, list[int] | int] | None = None

    @classmethod
    def from_keys(cls, pairs, width: int, requests_factory) -> "Index":
        explicit: dict[int, str] = {}
        lines = []
        for line, key in pairs:
            lines.append(line)
            if key != line_key(line, width):
                explicit[line] = key
        first, last = (min(lines), max(lines)) if lines else (1, 0)
        present = bytearray(last - first + 1)
        for line in lines:
            present[line - first] = 1
        return cls(first, last, width, explicit, present, requests_factory)

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
        """(line, known): the first unseen line with this request; known is True when the request exists at all."""
        if self._fingerprints is None:
            self._fingerprints = {}
            for line, req in self._factory():
                fp = fingerprint(req)
                have = self._fingerprints.get(fp)
                if have is None:
                    self._fingerprints[fp] = line
                elif isinstance(have, int):
                    self._fingerprints[fp] = [have, line]
                else:
                    have.append(line)
        have = self._fingerprints.get(fingerprint(request))
        if have is None:
            return None, False
        for line in (have,) if isinstance(have, int) else have:
            if not seen[line - self.first]:
                return line, True
        return None, True


# ---------------------------------------------------------------- one output line -> one result

def parse_status(status: str) -> dict:
    """Vertex's `status` string, often "Bad Request: {json error}", as {"code", "message", "status"}."""
    start = status.find("{")
    if start >= 0:
        try:
            body = orjson.loads(status[start:])
            err = body.get("error", body) if isinstance(body, dict) else {}
            if isinstance(err, dict) and ("code" in err or "message" in err):
                return {"code": err.get("code"), "message": err.get("message") or status,
                        "status": err.get("status")}
        except orjson.JSONDecodeError:
            pass
    match = re.search(r"\b(4\d\d|5\d\d)\b", status)
    return {"code": int(match.group(1)) if match else None, "message": status, "status": None}


def is_retryable(error: dict | None) -> bool:
    """Worth another round: rate limits, server errors, deadlines, the Vertex service agent being provisioned."""
    if not error:
        return False
    message = str(error.get("message") or "").lower()
    return (error.get("code") in RETRYABLE_CODES or error.get("status") in RETRYABLE_STATUS
            or ("service agent" in message and "provision" in message))


def _get(obj: dict, camel: str, snake: str):
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def _clean_request(request):
    if not isinstance(request, dict):
        return request
    labels = request.get("labels")
    if isinstance(labels, dict) and LINE_LABEL in labels:
        request = dict(request)
        rest = {k: v for k, v in labels.items() if k != LINE_LABEL}
        if rest:
            request["labels"] = rest
        else:
            del request["labels"]
    return request


def build_result(key: str, out: dict, batch_id: str | None, job: str | None) -> dict:
    status = out.get("status") or ""
    response = out.get("response") if isinstance(out.get("response"), dict) else None
    candidates = (response or {}).get("candidates") or []
    first = candidates[0] if candidates and isinstance(candidates[0], dict) else {}
    content = first.get("content") or {}
    texts = [p["text"] for p in content.get("parts") or [] if isinstance(p, dict) and isinstance(p.get("text"), str)
             and not p.get("thought")]
    feedback = _get(response or {}, "promptFeedback", "prompt_feedback") or {}
    block = _get(feedback, "blockReason", "block_reason")
    error = None
    if status:
        error = parse_status(status)
    elif response is None:
        error = {"code": "NO_RESPONSE", "message": "the output line has neither a status nor a response"}
    elif block:
        message = _get(feedback, "blockReasonMessage", "block_reason_message") or f"the prompt was blocked ({block})"
        error = {"code": block, "message": message}
    elif not candidates:
        error = {"code": "NO_CANDIDATES", "message": "the response has no candidates"}
    return {
        "key": key, "status": "failed" if error else "succeeded", "request": _clean_request(out.get("request")),
        "response": response, "text": "".join(texts) if texts else None,
        "finish_reason": _get(first, "finishReason", "finish_reason"),
        "usage": _get(response or {}, "usageMetadata", "usage_metadata"), "error": error,
        "processed_time": out.get("processed_time") or out.get("processedTime"), "batch_id": batch_id, "job": job,
    }


USAGE_FIELDS = (("prompt_tokens", "promptTokenCount", "prompt_token_count"),
                ("candidates_tokens", "candidatesTokenCount", "candidates_token_count"),
                ("total_tokens", "totalTokenCount", "total_token_count"))


class Matcher:
    """The state of one split: which lines have their result, counts, token usage, failures."""

    def __init__(self, index: Index, batch_id: str | None, job: str | None, state: dict | None = None):
        self.index, self.batch_id, self.job = index, batch_id, job
        state = state or {}
        self.seen = bytearray(zlib.decompress(base64.b64decode(state["seen"]))) if state.get("seen") else \
            bytearray(len(index.present))
        self.counts = state.get("counts") or {"succeeded": 0, "failed": 0, "duplicate_outputs": 0,
                                               "unmatched_outputs": 0}
        self.usage = state.get("usage") or {name: 0 for name, *_ in USAGE_FIELDS}
        self.failures = state.get("failures") or []  # errors.jsonl lines for failed requests

    def state(self) -> dict:
        return {"seen": base64.b64encode(zlib.compress(bytes(self.seen))).decode(), "counts": self.counts,
                "usage": self.usage, "failures": self.failures}

    def match(self, raw: bytes) -> tuple[str, bytes] | None:
        """The result object for one output line, or None (a duplicate, an unmatched or unreadable line)."""
        try:
            out = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.counts["unmatched_outputs"] += 1
            return None
        request = out.get("request") if isinstance(out, dict) else None
        line = None
        known = False
        labels = request.get("labels") if isinstance(request, dict) else None
        if isinstance(labels, dict) and str(labels.get(LINE_LABEL, "")).isdigit():
            line = int(labels[LINE_LABEL])
            known = self.index.has(line)
            if not known:
                line = None
        if line is None and not known and isinstance(request, dict):
            line, known = self.index.by_fingerprint(request, self.seen)
        if line is None:
            self.counts["duplicate_outputs" if known else "unmatched_outputs"] += 1
            return None
        slot = line - self.index.first
        if self.seen[slot]:
            self.counts["duplicate_outputs"] += 1
            return None
        self.seen[slot] = 1
        key = self.index.key(line)
        result = build_result(key, out, self.batch_id, self.job)
        self.counts[result["status"]] += 1
        for name, camel, snake in USAGE_FIELDS:
            value = _get(result["usage"] or {}, camel, snake)
            if isinstance(value, int):
                self.usage[name] += value
        if result["error"]:
            self.failures.append({"key": key, "line": line, "status": "failed", "error": result["error"],
                                  "retryable": is_retryable(result["error"])})
        return key, orjson.dumps(result)

    def missing(self):
        """errors.jsonl entries of the requests no output line answered, in line order (a generator)."""
        return ({"key": self.index.key(line), "line": line, "status": "missing", "error": None, "retryable": True}
                for line in self.index.lines() if not self.seen[line - self.index.first])


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
    """Concurrent media uploads, one kept-alive connection per worker; at most `workers * 4` results in flight.

    A result upload is one plain JSON-API request. The client library's per-call machinery costs several
    times the CPU of the request itself, and these writes are idempotent (the same bytes on a re-run), so
    they go straight over HTTP and are retried on 408, 429, 5xx and connection errors.
    """

    def __init__(self, bucket, prefix: str, workers: int = 32):
        import urllib.parse

        client = bucket.client
        base = urllib.parse.urlsplit(client._connection.API_BASE_URL)
        self.https, self.host = base.scheme == "https", base.netloc
        self.path = f"/upload/storage/v1/b/{urllib.parse.quote(bucket.name, safe='')}/o?uploadType=media&name="
        self.credentials = client._credentials
        self.prefix = prefix
        self.local = threading.local()
        self.pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="results")
        self.slots = threading.BoundedSemaphore(workers * 4)
        self.pending: set = set()
        self.error: BaseException | None = None
        self.retries = 0

    def _connection(self):
        import http.client

        conn = getattr(self.local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            conn = self.local.conn = cls(self.host, timeout=120)
        return conn

    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json"}
        if getattr(self.credentials, "token", None) is not None or not self.credentials.__class__.__name__.startswith(
                "Anonymous"):
            from google.auth.transport.requests import Request

            self.credentials.before_request(Request(), "POST", self.host, headers)
        return headers

    def _upload(self, name: str, data: bytes) -> None:
        import http.client
        import random
        import urllib.parse

        from .errors import PermanentError, TransientError

        path = self.path + urllib.parse.quote(self.prefix + name, safe="")
        try:
            for attempt in range(8):
                try:
                    conn = self._connection()
                    conn.request("POST", path, body=data, headers=self._headers())
                    resp = conn.getresponse()
                    body = resp.read()
                    if resp.status < 300:
                        return
                    if resp.status not in (408, 429) and resp.status < 500:
                        raise PermanentError(f"writing {name}: HTTP {resp.status} {body[:200]!r}")
                    problem = f"HTTP {resp.status}"
                except (OSError, http.client.HTTPException) as exc:
                    self.local.conn = None
                    problem = str(exc) or type(exc).__name__
                self.retries += 1
                time.sleep(min(0.2 * 2**attempt, 10) * random.uniform(0.5, 1.5))
            raise TransientError(f"writing {name} kept failing: {problem}")
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


# ---------------------------------------------------------------- the local front end: dropbatch split

def terminal_state(counts: dict, job_states: list[str]) -> str:
    if "JOB_STATE_CANCELLED" in job_states:
        return "cancelled"
    if "JOB_STATE_EXPIRED" in job_states:
        return "expired"
    if "JOB_STATE_FAILED" in job_states:  # the job's own verdict; the counts still show what did succeed
        return "failed"
    if counts["total"] and counts["succeeded"] == counts["total"]:
        return "succeeded"
    if counts["succeeded"] == 0:
        return "failed"
    return "partially_succeeded"


def build_manifest(batch_id, counts: dict, usage: dict, jobs: list, source: str, results_prefix: str, **extra) -> dict:
    states = [j.get("state") or "" for j in jobs]
    return {"batch_id": batch_id, "state": terminal_state(counts, states), "counts": counts, "usage": usage,
            "jobs": jobs, "source": source, "results_prefix": results_prefix, **extra}


def _prediction_files(paths) -> list[Path]:
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


def split_local(input_path: str, prediction_paths: list[str], out_dir: str, config, progress=None) -> dict:
    """`dropbatch split`: match a job's output files to the input file they came from."""
    from .validate import iter_requests, validate_path

    report = validate_path(input_path, config)
    if not report.valid:
        from .errors import InvalidInput

        first = report.errors[0]
        raise InvalidInput(f"{input_path} is not a valid batch file ({report.error_count} errors; line "
                           f"{first['line']}: {first['message']}); run `dropbatch validate {input_path}`")
    files = _prediction_files(prediction_paths)
    width = key_width(report.lines)

    def records():
        with open(input_path, "rb") as f:
            yield from iter_requests(f, input_path, config, report.lines)

    index = Index.from_keys(((line, key) for line, key, _ in records()), width,
                            lambda: ((line, req) for line, _, req in records()))
    matcher = Matcher(index, None, None)
    sink = LocalSink(out_dir)
    started = time.monotonic()
    for path in files:
        with open(path, "rb") as f:
            for raw, size in bounded_lines(f, 2 * config.max_line_bytes):
                if raw is None:
                    matcher.counts["unmatched_outputs"] += 1
                elif raw.strip():
                    hit = matcher.match(raw)
                    if hit:
                        sink.put(f"{hit[0]}.json", hit[1])
                if progress:
                    progress(size)
    missing = 0
    tmp = Path(out_dir) / ".errors.jsonl.tmp"
    with open(tmp, "wb") as f:  # streamed: a mostly-missing million-request split must not hold its errors
        for e in heapq.merge(sorted(matcher.failures, key=lambda e: e["line"]), matcher.missing(),
                             key=lambda e: e["line"]):
            missing += e["status"] == "missing"
            f.write(orjson.dumps(e) + b"\n")
    tmp.replace(Path(out_dir) / "errors.jsonl")
    counts = {"total": index.total, **matcher.counts, "missing": missing}
    counts = {k: counts[k] for k in ("total", "succeeded", "failed", "missing", "duplicate_outputs",
                                     "unmatched_outputs")}
    manifest = build_manifest(None, counts, matcher.usage, [], os.path.abspath(input_path),
                              os.path.abspath(out_dir), predictions=[str(f) for f in files],
                              timings={"split_seconds": round(time.monotonic() - started, 3)})
    sink.put("manifest.json", orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return manifest


# ---------------------------------------------------------------- the cloud front end: split tasks

def _part_name(part: dict) -> str:
    return f"r{part['round']}-p{part['index']:05d}"


def task_for(doc: dict, part: dict) -> dict:
    """A split task (DESIGN.md: split tasks): what the split function needs, nothing it must trust blindly."""
    return {"batch_id": doc["batch_id"], "part": part["index"], "round": part["round"], "job": part["job"],
            "resume": False}


def queue_tasks(store, doc: dict) -> None:
    from . import notify, submit

    for part in doc["parts"]:
        if part.get("split") != "done":
            notify.publish_json(store.config, store.config.split_topic, task_for(doc, part), batch_id=doc["batch_id"])
    store.update_ledger(doc["batch_id"], lambda d: d.update(state=submit.SPLITTING, split_queued=now())
                        if d["state"] == submit.SUBMITTED else False)
    logs.info("split tasks queued", parts=len(doc["parts"]))


def requeue_stale_tasks(store, doc: dict) -> None:
    """The sweep's safety net: finish a batch whose last step died, re-send split tasks that never finished."""
    from . import notify

    if all(p.get("split") == "done" for p in doc["parts"]):
        finalize(store, doc["batch_id"], force_after_s=60)
        return
    queued = doc.get("split_queued")
    if queued and age_s(queued) > 2 * store.config.split_budget_s + 60:
        for part in doc["parts"]:
            if part.get("split") != "done":
                notify.publish_json(store.config, store.config.split_topic, task_for(doc, part),
                                    batch_id=doc["batch_id"])
        store.update_ledger(doc["batch_id"], lambda d: d.update(split_queued=now()))
        logs.warning("split tasks re-sent: they did not finish in time")


def handle_event(event) -> None:
    from .config import get_config
    from .errors import PermanentError
    from .events import PUBSUB, pubsub_json
    from .ledger import execution_id

    if event.get("type") != PUBSUB:
        logs.info("ignored: not a Pub/Sub message", event_type=event.get("type"))
        return
    try:
        task, _ = pubsub_json(event)
    except PermanentError as exc:
        logs.error(f"ignored: {exc}")
        return
    if not is_batch_id(str(task.get("batch_id"))) or not isinstance(task.get("part"), int):
        logs.warning("ignored: not a split task")
        return
    config = get_config()
    token = logs.bind(batch_id=task["batch_id"], execution_id=execution_id(), event_id=event.get("id"))
    try:
        run_task(config, task)
    finally:
        logs.reset(token)


def load_index(store, doc: dict, part: dict) -> Index:
    name = store.path(doc["batch_id"], f"input/part-{part['index']:05d}" if part["round"] == 0 else
                      f"input/retry-{_part_name(part)}")
    width = key_width(doc["lines"])

    def pairs():
        with store.bucket.blob(name + ".keys.jsonl").open("rb", chunk_size=8 << 20) as f:
            for raw in f:
                line, key = orjson.loads(raw)
                yield line, key

    def requests():
        with store.bucket.blob(name + ".jsonl").open("rb", chunk_size=8 << 20) as f:
            for raw in f:
                request = orjson.loads(raw)["request"]
                yield int(request["labels"][LINE_LABEL]), request

    return Index.from_keys(pairs(), width, requests)


def output_files(store, output_dir: str | None) -> list:
    if not output_dir:
        return []
    bucket_name, _, prefix = output_dir[5:].partition("/")
    blobs = store.client.list_blobs(bucket_name, prefix=prefix.rstrip("/") + "/")
    return sorted((b for b in blobs if b.name.endswith(".jsonl")), key=lambda b: b.name)


def run_task(config, task: dict) -> None:
    from . import notify, submit, vertex
    from .errors import TransientError
    from .ledger import Store

    store = Store(config)
    batch_id = task["batch_id"]
    doc, _ = store.read_ledger(batch_id)
    if doc is None or doc["state"] not in (submit.SUBMITTED, submit.SPLITTING):
        logs.info("split task ignored: the batch is not splitting", state=doc and doc["state"])
        return
    if not 0 <= task["part"] < len(doc["parts"]):
        logs.warning("split task ignored: no such part", part=task["part"])
        return
    part = doc["parts"][task["part"]]
    if part["state"] not in vertex.TERMINAL:  # the task overtook the sweep's ledger write: not ours to ack yet
        raise TransientError(f"part {part['index']} is still {part['state']} in the ledger")
    if part["round"] != task.get("round", 0):
        logs.info("split task ignored: an older round")
        return
    name = _part_name(part)
    done_path = store.path(batch_id, f"split/{name}.done.json")
    ckpt_path = store.path(batch_id, f"split/{name}.checkpoint.json")
    if store.read_json(done_path)[0] is None:
        started = time.monotonic()
        checkpoint = store.read_json(ckpt_path)[0] if task.get("resume") else None
        index = load_index(store, doc, part)
        matcher = Matcher(index, batch_id, part["job"], checkpoint and checkpoint["state"])
        files = output_files(store, part.get("output_dir"))
        sink = GcsSink(store.bucket, store.path(batch_id, "results/"), config.workers)
        deadline = started + config.split_budget_s
        file_index, offset = (checkpoint["file"], checkpoint["offset"]) if checkpoint else (0, 0)
        for i in range(file_index, len(files)):
            with files[i].open("rb", chunk_size=8 << 20) as stream:
                if offset:
                    stream.seek(offset)
                for raw, size in bounded_lines(stream, 2 * config.max_line_bytes):
                    offset += size
                    if raw is None:
                        matcher.counts["unmatched_outputs"] += 1  # over the size limit: counted, not read
                    elif raw.strip():
                        hit = matcher.match(raw)
                        if hit:
                            sink.put(f"{hit[0]}.json", hit[1])
                    if time.monotonic() > deadline:
                        sink.flush()
                        store.write_json(ckpt_path, {"file": i, "offset": offset, "state": matcher.state()})
                        notify.publish_json(config, config.split_topic, {**task, "resume": True}, batch_id=batch_id)
                        logs.info("split checkpointed; continuing in a new task", file=files[i].name, offset=offset)
                        return
            offset = 0
        sink.flush()
        logs.info("results written", part=part["index"], retries=sink.retries)
        missing = list(matcher.missing())
        store.create_json(done_path, {
            "part": part["index"], "round": part["round"], "job": part["job"], "requests": index.total,
            "counts": {**matcher.counts, "missing": len(missing)}, "usage": matcher.usage,
            "errors": sorted(matcher.failures + missing, key=lambda e: e["line"]),
            "files": [f.name for f in files], "seconds": round(time.monotonic() - started, 3),
            "lines": list(index.lines()) if part["round"] else None})
        logs.info("part split", part=part["index"], counts=matcher.counts, missing=len(missing))
    doc = store.update_ledger(batch_id, lambda d: d["parts"][part["index"]].update(split="done")
                              if d["parts"][part["index"]].get("split") != "done" else False)
    if all(p.get("split") == "done" for p in doc["parts"]):
        finalize(store, batch_id)


def merge_rounds(doc: dict, dones: dict) -> tuple[dict, dict, list]:
    """Counts, usage and errors of a batch: a later round's outcome replaces the earlier one for its lines."""
    counts = {"total": 0, "succeeded": 0, "failed": 0, "missing": 0, "duplicate_outputs": 0, "unmatched_outputs": 0}
    usage = {name: 0 for name, *_ in USAGE_FIELDS}
    errors: dict[int, dict] = {}
    for part in sorted(doc["parts"], key=lambda p: (p["round"], p["index"])):
        done = dones[_part_name(part)]
        if part["round"] == 0:
            counts["total"] += done["requests"]
        for line in done.get("lines") or ():
            errors.pop(line, None)
        for k in ("duplicate_outputs", "unmatched_outputs"):
            counts[k] += done["counts"].get(k, 0)
        for k in usage:
            usage[k] += done["usage"].get(k, 0)
        errors.update((e["line"], e) for e in done["errors"])
    ordered = [errors[line] for line in sorted(errors)]
    counts["failed"] = sum(e["status"] == "failed" for e in ordered)
    counts["missing"] = sum(e["status"] == "missing" for e in ordered)
    counts["succeeded"] = counts["total"] - counts["failed"] - counts["missing"]
    return counts, usage, ordered


def stage_retry(store, doc: dict, errors: list) -> list[dict]:
    """Stage the requests that failed for a transient reason (or never came back) as the next round's parts."""
    config, batch_id, round_ = store.config, doc["batch_id"], doc["round"] + 1
    keys = {e["line"]: e["key"] for e in errors}
    originals = [p for p in doc["parts"] if p["round"] == 0 and any(p["first_line"] <= l <= p["last_line"]
                                                                     for l in keys)]
    parts, data, sidecar = [], bytearray(), bytearray()
    base = len(doc["parts"])

    def flush(first, last, count):
        part = {"index": base + len(parts), "round": round_, "first_line": first, "last_line": last,
                "requests": count, "job": None, "state": None, "output_dir": None, "completion_stats": None,
                "error": None, "split": None}
        name = store.path(batch_id, f"input/retry-{_part_name(part)}")
        store.bucket.blob(name + ".keys.jsonl").upload_from_string(bytes(sidecar), content_type="application/jsonl")
        store.bucket.blob(name + ".jsonl").upload_from_string(bytes(data), content_type="application/jsonl")
        part["input"] = store.uri(name + ".jsonl")
        parts.append(part)
        data.clear()
        sidecar.clear()

    count, first = 0, None
    for original in originals:
        path = store.path(batch_id, f"input/part-{original['index']:05d}.jsonl")
        with store.bucket.blob(path).open("rb", chunk_size=8 << 20) as f:
            for raw in f:
                line = int(orjson.loads(raw)["request"]["labels"][LINE_LABEL])
                if line not in keys:
                    continue
                data.extend(raw if raw.endswith(b"\n") else raw + b"\n")
                sidecar.extend(orjson.dumps([line, keys[line]]) + b"\n")
                first = first or line
                count += 1
                if count >= config.max_job_requests:
                    flush(first, line, count)
                    count, first = 0, None
                last = line
    if count:
        flush(first, last, count)
    return parts


def finalize(store, batch_id: str, force_after_s: float | None = None) -> None:
    """errors.jsonl, manifest.json, then the terminal message: once, claimed by creating the manifest.

    Before that, requests that failed for a transient reason (or never came back) get another round,
    up to DROPBATCH_RETRY_ROUNDS, and the user hears only of the end of the last one.
    """
    from . import notify, submit

    doc, _ = store.read_ledger(batch_id)
    if doc is None or doc["notified"].get("terminal"):
        store.mark_inactive(batch_id)
        return
    dones = {_part_name(p): store.read_json(store.path(batch_id, f"split/{_part_name(p)}.done.json"))[0]
             for p in doc["parts"]}
    counts, usage, errors = merge_rounds(doc, dones)
    last_round = [p for p in doc["parts"] if p["round"] == doc["round"]]
    retry = [e for e in errors if e.get("retryable")]
    cancelled = doc.get("cancel_requested") or any(p["state"] == "JOB_STATE_CANCELLED" for p in last_round)
    if retry and doc["round"] < store.config.retry_rounds and not cancelled:
        parts = stage_retry(store, doc, retry)
        current = doc["round"]

        def next_round(d):
            if d["round"] != current or d["state"] not in (submit.SUBMITTED, submit.SPLITTING):
                return False  # another finisher started the round already
            d.update(round=current + 1, state=submit.STAGED, parts=d["parts"] + parts)

        store.update_ledger(batch_id, next_round)
        logs.info("retry round staged", round=current + 1, requests=len(retry))
        submit.submit_parts(store, batch_id)
        return
    store.bucket.blob(store.path(batch_id, "errors.jsonl")).upload_from_string(
        b"".join(orjson.dumps(e) + b"\n" for e in errors), content_type="application/jsonl")
    jobs = [{"name": p["job"], "part": p["index"], "round": p["round"], "state": p["state"],
             "requests": p["requests"], "completion_stats": p["completion_stats"], "error": p["error"],
             "output_dir": p["output_dir"], "created": p.get("created"), "ended": p.get("ended")} for p in doc["parts"]]
    rounds = [{"round": r, "requests": sum(p["requests"] for p in doc["parts"] if p["round"] == r),
               "jobs": sum(1 for p in doc["parts"] if p["round"] == r)} for r in range(doc["round"] + 1)]
    results_prefix = store.uri(store.path(batch_id, "results/"))
    manifest = build_manifest(batch_id, counts, usage, jobs, doc["source"], results_prefix, rounds=rounds,
                              timings={"received": doc["created"], "finished": now(),
                                       "split_seconds": round(sum(d["seconds"] for d in dones.values()), 3)})
    manifest["state"] = terminal_state(counts, [p["state"] or "" for p in last_round])
    manifest_path = store.path(batch_id, "manifest.json")
    if not store.create_json(manifest_path, manifest):
        if force_after_s is None:
            return  # another task is finishing this batch
        existing, _ = store.read_json(manifest_path)
        if age_s(existing["timings"]["finished"]) < force_after_s:
            return
        manifest = existing
    job_errors = [f"{j['name']}: {j['error']['message']}" for j in jobs if j.get("error") and j["round"] == doc["round"]]
    notify.send(store.config, notify.build(
        manifest["state"], batch_id=batch_id, source=doc["source"], counts=manifest["counts"],
        manifest=store.uri(manifest_path), results_prefix=results_prefix,
        report=store.uri(store.path(batch_id, "report.json")), error="; ".join(job_errors) or None))
    store.update_ledger(batch_id, lambda d: d.update(state=submit.DONE, final_state=manifest["state"],
                                                     counts=manifest["counts"],
                                                     notified={**d["notified"], "terminal": now()}))
    store.mark_inactive(batch_id)
