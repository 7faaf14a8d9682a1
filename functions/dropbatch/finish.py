"""The end of a batch: errors.jsonl, results.jsonl, manifest.json and the terminal message, once.

Run by the split function when every part of the batch is split (rounds.py routes the task here).
When requests failed for a transient reason (or never came back) and rounds are left
(DROPBATCH_RETRY_ROUNDS), it asks the retry stage for the next round instead (a `retry` task on the
split topic), and the user hears only of the end of the last round. The end is claimed by creating
manifest.json (or, for a resumed batch, by replacing the manifest its earlier end wrote,
retry.resume), so it happens once a round.
"""

from __future__ import annotations

import collections
import functools

import orjson

from . import batch, budget, cost, layout, logs, notify, ordered, split_outputs, table
from .documents import Ledger, RetryTask
from .errors import DropbatchError
from .events import age_s, now
from .store import Store


def finalize(store: Store, batch_id: str, force_after_s: float | None = None) -> None:
    """errors.jsonl, manifest.json, then the terminal message: once, claimed by creating the
    manifest.

    Before that, requests that failed for a transient reason (or never came back) get another round,
    up to DROPBATCH_RETRY_ROUNDS, and the user hears only of the end of the last one.
    """
    doc, _ = store.read_ledger(batch_id)
    if doc is None or doc.notified.get("terminal"):
        # its message may still be queued: left to the execution that queued it while that one may
        # be sending it (two senders would publish it twice), delivered here once it is older
        notify.deliver(store, batch_id, store.config.outbox_retry_s)
        return
    dones = split_outputs.done_documents(store, doc)
    errors_of = functools.partial(split_outputs.part_errors, store, batch_id)
    counts, usage, retryable = batch.merge_rounds(doc.parts, dones, errors_of)
    # the retry stage stages the next round
    if batch.wants_retry(doc, retryable, store.config.retry_rounds):
        notify.send_split_task(store.config, RetryTask(batch_id=batch_id, retry=doc.round + 1))
        logs.info("retry round asked for", round=doc.round + 1, requests=retryable)
        return
    codes = _write_errors(store, doc, dones, errors_of)
    results_file = store.uri(
        ordered.compose_results(
            store.bucket, store.path(batch_id, ""), doc.parts, dones, batch.part_name
        )
    )
    jobs, finished = job_records(doc), now()
    # before the claim: the load replaces by line, so a second finish is harmless
    table_error = _load_table(store, doc, jobs, finished) if store.config.results_table else None
    manifest = _manifest(store, doc, (counts, usage), dones, jobs, results_file, finished)
    if store.config.results_table:
        manifest["results_table"] = store.config.results_table
        manifest["results_table_error"] = table_error
    manifest_path = store.path(batch_id, layout.MANIFEST)
    first = store.create_json(manifest_path, manifest, replacing=doc.manifest_generation)
    if not first:
        if force_after_s is None:
            return  # another task is finishing this batch
        existing, _ = store.read_json(manifest_path)
        if age_s(existing["timings"]["finished"]) < force_after_s:
            return
        manifest = existing
    budget.record(store, batch_id, (manifest.get("cost") or {}).get("estimated"))
    notify.end_batch(
        store,
        batch_id,
        batch.DONE,
        _message(store, doc, manifest, jobs),
        final_state=manifest["state"],
        counts=manifest["counts"],
        usage=manifest["usage"],
        cost=manifest.get("cost"),
    )
    if first:  # the manifest's creator counts the batch's requests and tokens, once
        log_counts(doc.model, manifest["counts"]["succeeded"], codes, manifest["usage"])


def _write_errors(store: Store, doc: Ledger, dones: dict, errors_of) -> collections.Counter:
    """errors.jsonl, in line order; how many errors of each (status, code)."""
    codes = collections.Counter()
    with store.bucket.blob(store.path(doc.batch_id, layout.ERRORS)).open(
        "wb", chunk_size=8 << 20, content_type="application/jsonl"
    ) as f:
        for e in batch.merged_errors(doc.parts, dones, errors_of):
            codes[e["status"], error_code(e)] += 1
            f.write(orjson.dumps(e) + b"\n")
    return codes


def job_records(doc: Ledger) -> list[dict]:
    """The manifest's `jobs`: one per part of every round."""
    return [
        {
            "name": p.job,
            "part": p.index,
            "round": p.round,
            "state": p.state,
            "requests": p.requests,
            "completion_stats": p.completion_stats,
            "error": p.error,
            "output_dir": p.output_dir,
            "created": p.created,
            "ended": p.ended,
        }
        for p in doc.parts
        if not batch.wholly_reused(p)
    ]


def _load_table(store: Store, doc: Ledger, jobs: list[dict], finished: str) -> str | None:
    """Load results.jsonl into the results table; why it could not, else None (results.jsonl
    stays; the message says why the table has not got them)."""
    try:
        table.load(
            store,
            doc.batch_id,
            store.config.results_table,
            model=doc.model,
            source=doc.source,
            rounds={j["name"]: j["round"] for j in jobs},
            finished=finished,
        )
    except DropbatchError as e:
        logs.error(
            "results table not loaded",
            event="results_table_failed",
            table=store.config.results_table,
        )
        return str(e)
    return None


def _manifest(store, doc: Ledger, totals: tuple, dones: dict, jobs, results_file, finished) -> dict:
    """manifest.json (DESIGN.md) of a batch whose last round ended; `totals` is (counts, usage)."""
    counts, usage = totals
    rounds = [
        {
            "round": r,
            "requests": sum(p.requests for p in doc.parts if p.round == r),
            "jobs": sum(1 for p in doc.parts if p.round == r and not batch.wholly_reused(p)),
        }
        for r in range(doc.round + 1)
    ]
    reused = sum(p.reused for p in doc.parts)
    if reused:  # the requests answered from earlier batches instead (reuse.py)
        rounds[0]["reused"] = reused
    manifest = batch.build_manifest(
        doc.batch_id,
        counts,
        usage,
        jobs,
        doc.source,
        store.uri(store.path(doc.batch_id, layout.RESULTS)),
        results_file=results_file,
        rounds=rounds,
        timings={
            "received": doc.created,
            "finished": finished,
            "split_seconds": round(sum(d.seconds for d in dones.values()), 3),
        },
    )
    last_round = [p.state or "" for p in doc.parts if p.round == doc.round]
    manifest["state"] = batch.terminal_state(counts, last_round)
    table = cost.prices(store.config.prices)
    manifest["cost"] = cost.estimate(doc.model, usage, table)
    reused = [d.reused_usage for d in dones.values() if d.reused_usage]
    if reused:  # what the answers reused from earlier batches would have cost again (reuse.py)
        spared = {k: sum(u.get(k, 0) for u in reused) for k in usage}
        manifest["cost"]["saved_by_reuse"] = cost.estimate(doc.model, spared, table)["estimated"]
    return manifest


def _message(store: Store, doc: Ledger, manifest: dict, jobs: list[dict]) -> dict:
    """The terminal message of the manifest; its error names the last round's failed jobs and a
    results table that was not loaded."""
    batch_id = doc.batch_id
    return notify.build(
        manifest["state"],
        batch_id=batch_id,
        source=doc.source,
        counts=manifest["counts"],
        manifest=store.uri(store.path(batch_id, layout.MANIFEST)),
        results_prefix=store.uri(store.path(batch_id, layout.RESULTS)),
        results_file=manifest.get("results_file"),
        report=store.uri(store.path(batch_id, layout.REPORT)),
        error=end_error(jobs, doc.round, manifest.get("results_table_error")),
        cost=manifest.get("cost"),
        results_table=manifest.get("results_table"),
    )


def end_error(jobs: list[dict], last_round: int, table_error: str | None) -> str | None:
    """The terminal message's `error`: each failed job of the last round (NAME: message), then why
    the results table was not loaded; None when there is neither."""
    errors = [
        f"{j['name']}: {j['error']['message']}"
        for j in jobs
        if j.get("error") and j["round"] == last_round
    ]
    return "; ".join(errors + [table_error] * bool(table_error)) or None


MAX_CODE_LINES = 20


def error_code(entry: dict) -> str:
    """An errors.jsonl entry's code as a metric label: Vertex's code, or the status (missing) when
    it has none."""
    code = (entry.get("error") or {}).get("code")
    return str(code) if code is not None else entry["status"]


def log_counts(model: str, succeeded: int, codes: collections.Counter, usage: dict) -> None:
    """The lines the log-based metrics count (infra/monitoring.tf): requests by status and error
    code (at most MAX_CODE_LINES, the rest as code "other"), and tokens by model and kind."""
    groups = codes.most_common()
    if len(groups) > MAX_CODE_LINES:
        rest = sum(n for _, n in groups[MAX_CODE_LINES - 1 :])
        groups = groups[: MAX_CODE_LINES - 1] + [(("failed", "other"), rest)]
    for (status, code), n in [(("succeeded", ""), succeeded)] * bool(succeeded) + groups:
        logs.info(
            "requests counted", event="requests", status=status, code=code, count=n, model=model
        )
    for kind, name in (
        ("input", "prompt_tokens"),
        ("output", "candidates_tokens"),
        ("thinking", "thoughts_tokens"),
    ):
        if usage.get(name):
            logs.info("tokens counted", event="tokens", kind=kind, count=usage[name], model=model)
