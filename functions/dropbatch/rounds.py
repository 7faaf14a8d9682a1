"""Split tasks and rounds: run a part's split, finish a batch, stage a retry round, send the last message.

The status function queues one split task per ended job (status.queue_tasks); the split function runs each (split.split_part)
and the last part to finish calls `finalize`: either the requests that failed for a transient reason get
another round (staged part by part, streaming, within the per-job limits), or errors.jsonl, the manifest
and the terminal message go out, once, claimed by creating manifest.json. The sweep never builds a round:
it only re-sends tasks that did not finish.
"""

from __future__ import annotations

import functools
import time

import orjson
from google.api_core.exceptions import Forbidden

from . import batch, layout, logs, notify, ordered, split
from .config import get_config
from .errors import ConfigurationError, PermanentError, TransientError, denied
from .events import PUBSUB, age_s, now, pubsub_json
from .keys import is_batch_id, line_from_labels
from .ledger import Store, execution_id, open_lines

def handle_event(event) -> None:
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
    token = logs.bind(batch_id=task["batch_id"], execution_id=execution_id(), event_id=event.get("id"))
    store = Store(get_config())
    try:
        run_task(store, task)
    except ConfigurationError as exc:  # a missing grant: retrying cannot help
        notify.fail_refused(store, task["batch_id"], str(exc))
    except Forbidden as exc:  # the same, from a call made outside ledger's error mapping (result writes)
        notify.fail_refused(store, task["batch_id"], str(denied("Cloud Storage", exc)))
    finally:
        logs.reset(token)


def run_task(store: Store, task: dict) -> None:
    batch_id = task["batch_id"]
    doc, _ = store.read_ledger(batch_id)
    if doc is None or doc["state"] not in (batch.SUBMITTED, batch.SPLITTING):
        logs.info("split task ignored: the batch is not splitting", state=doc and doc["state"])
        return
    if not 0 <= task["part"] < len(doc["parts"]):
        logs.warning("split task ignored: no such part", part=task["part"])
        return
    part = doc["parts"][task["part"]]
    if part["state"] not in batch.JOB_TERMINAL:  # the task overtook the sweep's ledger write: not ours to ack yet
        raise TransientError(f"part {part['index']} is still {part['state']} in the ledger")
    if part["round"] != task.get("round", 0):
        logs.info("split task ignored: an older round")
        return
    if not split.split_part(store, doc, part, task):
        return  # checkpointed: a new task continues
    doc = store.update_ledger(batch_id, lambda d: d["parts"][part["index"]].update(split="done")
                              if d["parts"][part["index"]].get("split") != "done" else False)
    if all(p.get("split") == "done" for p in doc["parts"]):
        finalize(store, batch_id, force_after_s=batch.FINISH_AFTER_S if task.get("finalize") else None)


# ---------------------------------------------------------------- retry rounds

class _PartWriter:
    """One retry part being written: its staged lines and keys sidecar, streamed to GCS."""

    def __init__(self, store: Store, doc: dict, index: int, round_: int):
        self.part = batch.new_part(index, round_, 0, 0, 0, None)
        self.name = store.path(doc["batch_id"], layout.staged(self.part))
        self.part["input"] = store.uri(self.name + ".jsonl")
        self.bytes = 0
        self.data = store.bucket.blob(self.name + ".jsonl").open("wb", chunk_size=8 << 20,
                                                                   content_type="application/jsonl")
        self.keys = store.bucket.blob(self.name + ".keys.jsonl").open("wb", chunk_size=8 << 20,
                                                                        content_type="application/jsonl")

    def fits(self, size: int, config) -> bool:
        return not self.part["requests"] or (self.part["requests"] < config.max_job_requests
                                             and self.bytes + size <= config.max_job_bytes)

    def add(self, line: int, key: str, raw: bytes) -> None:
        self.data.write(raw)
        self.keys.write(orjson.dumps([line, key, len(raw)]) + b"\n")
        self.part["first_line"] = self.part["first_line"] or line
        self.part["last_line"] = line
        self.part["requests"] += 1
        self.bytes += len(raw)

    def close(self) -> dict:
        self.data.close()
        self.keys.close()
        return self.part


def stage_retry(store: Store, doc: dict, retry) -> list[dict]:
    """Stage the requests that failed for a transient reason (or never came back) as the next round's parts.
    `retry` gives them in line order; the staged input is read part by part alongside and streamed out, each new
    part within the per-job limits: nothing is held but the buffers."""
    config, round_ = store.config, doc["round"] + 1
    wanted = iter(retry)
    nxt = next(wanted, None)
    parts, writer = [], None
    for original in sorted((p for p in doc["parts"] if p["round"] == 0), key=lambda p: p["first_line"]):
        if nxt is None:
            break
        if nxt["line"] > original["last_line"]:
            continue
        path = store.path(doc["batch_id"], layout.staged(original) + ".jsonl")
        with open_lines(store.bucket.blob(path)) as f:
            for raw in f:  # staged in line order, as the errors come
                if nxt is None or nxt["line"] > original["last_line"]:
                    break
                line = line_from_labels(orjson.loads(raw)["request"]["labels"])
                while nxt is not None and nxt["line"] < line:  # not in the staged input: nothing to retry
                    nxt = next(wanted, None)
                if nxt is None or nxt["line"] != line:
                    continue
                raw = raw if raw.endswith(b"\n") else raw + b"\n"
                if writer is not None and not writer.fits(len(raw), config):
                    parts.append(writer.close())
                    writer = None
                if writer is None:
                    writer = _PartWriter(store, doc, len(doc["parts"]) + len(parts), round_)
                writer.add(line, nxt["key"], raw)
                nxt = next(wanted, None)
    if writer is not None:
        parts.append(writer.close())
    return parts


# ---------------------------------------------------------------- the end of a batch

def finalize(store: Store, batch_id: str, force_after_s: float | None = None) -> None:
    """errors.jsonl, manifest.json, then the terminal message: once, claimed by creating the manifest.

    Before that, requests that failed for a transient reason (or never came back) get another round,
    up to DROPBATCH_RETRY_ROUNDS, and the user hears only of the end of the last one.
    """
    doc, _ = store.read_ledger(batch_id)
    if doc is None or doc["notified"].get("terminal"):
        notify.deliver(store, batch_id)  # its message may still be queued
        return
    dones = {batch.part_name(p): store.read_json(store.path(batch_id, layout.split_done(p)))[0]
             for p in doc["parts"]}
    errors_of = functools.partial(_part_errors, store, batch_id)
    counts, usage, retryable = batch.merge_rounds(doc["parts"], dones, errors_of)
    if batch.wants_retry(doc, retryable, store.config.retry_rounds):
        start_round(store, doc, (e for e in batch.merged_errors(doc["parts"], dones, errors_of) if e.get("retryable")),
                    retryable)
        return
    with store.bucket.blob(store.path(batch_id, layout.ERRORS)).open("wb", chunk_size=8 << 20,
                                                                      content_type="application/jsonl") as f:
        for e in batch.merged_errors(doc["parts"], dones, errors_of):
            f.write(orjson.dumps(e) + b"\n")
    results_file = store.uri(ordered.compose_results(store.bucket, store.path(batch_id, ""), doc["parts"], dones,
                                                     batch.part_name))
    jobs = [{"name": p["job"], "part": p["index"], "round": p["round"], "state": p["state"],
             "requests": p["requests"], "completion_stats": p["completion_stats"], "error": p["error"],
             "output_dir": p["output_dir"], "created": p.get("created"), "ended": p.get("ended")} for p in doc["parts"]]
    rounds = [{"round": r, "requests": sum(p["requests"] for p in doc["parts"] if p["round"] == r),
               "jobs": sum(1 for p in doc["parts"] if p["round"] == r)} for r in range(doc["round"] + 1)]
    results_prefix = store.uri(store.path(batch_id, layout.RESULTS))
    last_round = [p["state"] or "" for p in doc["parts"] if p["round"] == doc["round"]]
    manifest = split.build_manifest(batch_id, counts, usage, jobs, doc["source"], results_prefix,
                                    results_file=results_file, rounds=rounds,
                                    timings={"received": doc["created"], "finished": now(),
                                             "split_seconds": round(sum(d["seconds"] for d in dones.values()), 3)})
    manifest["state"] = batch.terminal_state(counts, last_round)
    manifest_path = store.path(batch_id, layout.MANIFEST)
    if not store.create_json(manifest_path, manifest):
        if force_after_s is None:
            return  # another task is finishing this batch
        existing, _ = store.read_json(manifest_path)
        if age_s(existing["timings"]["finished"]) < force_after_s:
            return
        manifest = existing
    job_errors = [f"{j['name']}: {j['error']['message']}" for j in jobs if j.get("error") and j["round"] == doc["round"]]
    message = notify.build(manifest["state"], batch_id=batch_id, source=doc["source"], counts=manifest["counts"],
                           manifest=store.uri(manifest_path), results_prefix=results_prefix,
                           results_file=manifest.get("results_file"),
                           report=store.uri(store.path(batch_id, layout.REPORT)), error="; ".join(job_errors) or None)
    notify.end_batch(store, batch_id, batch.DONE, message, final_state=manifest["state"], counts=manifest["counts"])


def _part_errors(store: Store, batch_id: str, part: dict, done: dict):
    """One split part's errors in line order, read from split/NAME.errors.jsonl (or the list in a done document
    written before errors had an object of their own)."""
    if "errors" in done:
        yield from batch.listed_errors(part, done)
        return
    with open_lines(store.bucket.blob(store.path(batch_id, layout.split_errors(part)))) as f:
        for raw in f:
            yield orjson.loads(raw)


def start_round(store: Store, doc: dict, retry, count: int) -> None:
    """Stage the next round and ask the submit function to create its jobs (the split function stages, never
    the sweep; only the submit function's account may create jobs, infra/iam.tf)."""
    started = time.monotonic()
    parts = stage_retry(store, doc, retry)
    current = doc["round"]

    def next_round(d):
        if d["round"] != current or d["state"] not in (batch.SUBMITTED, batch.SPLITTING):
            return False  # another finisher started the round already
        batch.move(d, batch.STAGED, round=current + 1, parts=d["parts"] + parts)

    store.update_ledger(doc["batch_id"], next_round)
    logs.info("retry round staged", round=current + 1, requests=count, parts=len(parts),
              seconds=round(time.monotonic() - started, 3))
    notify.ask_submit(store.config, doc["batch_id"])
