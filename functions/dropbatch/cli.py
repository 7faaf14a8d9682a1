"""The `dropbatch` command: readable lines for people, --json for scripts, exit 0/1/2."""

from __future__ import annotations

import argparse
import os
import sys
import time

import orjson

from . import layout
from .config import Config
from .documents import Ledger, ResumeTask, plain
from .errors import DropbatchError, UsageError
from .keys import is_batch_id

SHOWN_ERRORS = 20


def _print_json(obj) -> None:
    sys.stdout.buffer.write(orjson.dumps(obj, default=plain, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.flush()


def _err(message: str) -> None:
    print(f"dropbatch: {message}", file=sys.stderr)


def print_report_errors(report: dict, shown: int = SHOWN_ERRORS) -> None:
    for e in report["errors"][:shown]:
        where = f"line {e['line']}" if e["line"] is not None else "file"
        print(f"  {where}: {e['message']}  [{e['code']}]")
    more = report.get("error_count", len(report["errors"])) - min(shown, len(report["errors"]))
    if more > 0:
        print(f"  ... and {more:,} more (use --json for the full report)")


def cmd_validate(args, config: Config) -> int:
    from . import validate

    path = args.file
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file")
    if os.path.isdir(path):
        raise UsageError(f"{path} is a directory; give a .jsonl or .jsonl.gz file")
    show_progress = not args.json and sys.stderr.isatty() and os.path.getsize(path) > 50_000_000
    try:
        if show_progress:
            import rich.progress

            with rich.progress.open(path, "rb", description="validating", transient=True) as stream:
                report = validate.validate_stream(stream, path, config, model=args.model).to_dict()
        else:
            report = validate.validate_path(path, config, model=args.model).to_dict()
    except PermissionError:
        raise UsageError(f"{path}: permission denied") from None
    if args.json:
        _print_json(report)
    else:
        name = os.path.basename(path)
        if report["valid"]:
            jobs = len(report["jobs"])
            plan = f", {jobs} jobs" if jobs > 1 else ""
            family = report["family"]
            fmt = {
                ("openai", "gemini"): ", OpenAI Batch lines (converted for Gemini)",
                ("gemini", "gemini"): "",
            }.get(
                (report["format"], family),
                f", {report['format']} lines" if report["format"] else "",
            )
            model = args.model or config.model
            print(
                f"ok  {name}: {report['requests']:,} requests, valid for {model} "
                f"({family}){plan}{fmt}"
            )
        else:
            n = report["error_count"]
            print(
                f"invalid  {name}: {n:,} error{'s' if n != 1 else ''} in {report['requests']:,} "
                f"requests "
                f"({report['lines']:,} lines)"
            )
            print_report_errors(report)
    return 0 if report["valid"] else 1


def cmd_local(args, config: Config) -> int:
    from .local import stack as local
    from .local.iam import OWNER

    if args.action == "up":
        start = time.monotonic()
        try:
            running = local.up(
                config,
                responder_url=args.responder_url,
                responder_model=args.responder_model,
                iam=args.iam == "on",
            )
        except local.StackError as exc:
            raise UsageError(str(exc)) from None
        if args.json:
            _print_json(running.public())
        else:
            print(
                f"local stack up in {time.monotonic() - start:.1f} s: bucket gs://{running.bucket} "
                f"(storage {running.storage}), logs in {running.logs}"
            )
        return 0
    if args.action == "down":
        stopped = local.down(wipe=args.wipe)
        if not args.json:
            kept = (
                "the local bucket's files were deleted"
                if args.wipe
                else "the local bucket's files are kept for the next `up` (`down --wipe` deletes "
                "them)"
            )
            print(("local stack stopped; " if stopped else "no local stack was running; ") + kept)
        return 0
    running = local.status()
    if running is None:
        if args.json:
            _print_json(None)
        else:
            print("no local stack is running (start one with `dropbatch local up`)")
        return 1
    if args.json:
        _print_json(running.public())
    else:
        print(f"local stack: project {running.project}, bucket gs://{running.bucket}")
        print(
            f"  storage   {running.storage}\n  pubsub    {running.pubsub}\n  vertex    "
            f"{running.vertex}"
        )
        for name, port in running.ports.items():
            if name in local.FUNCTIONS:
                print(f"  function  {local.FUNCTIONS[name]:<14} http://127.0.0.1:{port}")
        print(f"  topics    {', '.join(f'{k}={v}' for k, v in running.topics.items())}")
        print(
            f"  iam       "
            f"{'enforced: the grants of infra/' if running.iam else 'off (--iam off)'}; "
            f"you are {OWNER}"
        )
        print(f"  logs      {running.logs}")
        print('  to use it: eval "$(dropbatch local env)"')
        from .local.overview import overview

        os.environ.update(running.client_env())
        seen = overview(running)
        print(
            "  batches   "
            + (
                ", ".join(f"{n} {state}" for state, n in sorted(seen["batches"].items()))
                or "none yet"
            )
        )
        print(
            "  backlog   "
            + ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in seen["backlog"].items())
        )
        print(
            "  dead letters "
            + ", ".join(
                f"{key} {d['messages']}"
                + (f" (batches {', '.join(d['batch_ids'])})" if d["batch_ids"] else "")
                for key, d in seen["dead_letters"].items()
            )
        )
    return 0


def cmd_local_env(args, config: Config) -> int:
    from .local import stack as local

    for key, value in local.require().client_env().items():
        print(f"export {key}={value}")
    return 0


def cmd_split(args, config: Config) -> int:
    from . import split

    for path in [args.input]:
        if not os.path.isfile(path):
            raise UsageError(f"{path}: no such file")
    total = sum(os.path.getsize(f) for f in split._prediction_files(args.predictions))
    with _progress(not args.json and total > 20_000_000, "splitting", total) as advance:
        manifest = split.split_local(
            args.input, args.predictions, args.out, config, progress=advance, model=args.model
        )
    if args.json:
        _print_json(manifest)
    else:
        print_summary(manifest)
    return 1 if manifest["state"] == "failed" else 0


class _NoProgress:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _progress(enabled: bool, what: str, total: int):
    """A rich progress bar on stderr for long work; a no-op for small work, --json and pipes."""
    if not enabled or not sys.stderr.isatty():
        return _NoProgress()
    import contextlib

    import rich.progress

    @contextlib.contextmanager
    def bar():
        with rich.progress.Progress(
            *rich.progress.Progress.get_default_columns(),
            rich.progress.DownloadColumn(),
            transient=True,
        ) as progress:
            task = progress.add_task(what, total=total)
            yield lambda n: progress.advance(task, n)

    return bar()


def print_summary(manifest: dict, seconds: float | None = None) -> None:
    c, u = manifest["counts"], manifest["usage"]
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    print(
        f"{manifest['state']}{took}: {c['succeeded']:,} of {c['total']:,} succeeded, "
        f"{c['failed']:,} failed, "
        f"{c['missing']:,} missing"
    )
    if c.get("duplicate_outputs") or c.get("unmatched_outputs"):
        print(
            f"  {c['duplicate_outputs']:,} duplicate and {c['unmatched_outputs']:,} unmatched "
            f"output lines "
            "(counted, not used)"
        )
    thinking = f", {u['thoughts_tokens']:,} thinking" if u.get("thoughts_tokens") else ""
    print(
        f"  tokens: {u['prompt_tokens']:,} prompt, {u['candidates_tokens']:,} output{thinking}, "
        f"{u['total_tokens']:,} total"
    )
    if manifest.get("cost"):
        print(f"  cost: {format_cost(manifest['cost'])}")
    print(f"  results: {manifest['results_prefix']}")
    if manifest.get("results_file"):
        print(f"  in input order: {manifest['results_file']}")


def format_cost(cost: dict) -> str:
    if cost.get("estimated") is None:
        return f"not estimated ({cost.get('note') or 'no price'})"
    return (
        f"about {cost['estimated']:.4f} {cost['currency']} as a batch "
        f"({cost['online_equivalent']:.4f} online), "
        f"{cost['model']} prices of {cost['price_date']}"
    )


NO_TARGET = (
    "no local stack is running and DROPBATCH_BUCKET is not set: point dropbatch at a deployment "
    "with "
    "DROPBATCH_PROJECT and DROPBATCH_BUCKET, or start the local stack with `dropbatch local up`"
)


def _target(start: bool = False) -> Config:
    """The running local stack, else the deployment configured in DROPBATCH_*; only `run` may start
    a stack."""
    from .local import stack as local

    running = local.status()
    if running is None and os.environ.get("DROPBATCH_BUCKET"):
        return Config.from_env()
    if running is None and not start:
        raise UsageError(NO_TARGET)
    if running is None:
        print("starting the local stack ...", file=sys.stderr)
        try:
            running = local.up()
        except local.StackError as exc:
            raise UsageError(str(exc)) from None
    os.environ.update(running.client_env())
    return running.config()


def _run_source(args) -> str | None:
    """The BigQuery table `dropbatch run` is given, or None for a file; a UsageError for what it
    cannot run."""
    from . import tablesource

    path = args.file
    table = tablesource.table_id(path) if path.startswith("bq://") else None
    if path.startswith("bq://") and table is None:
        raise UsageError(f"{path}: a BigQuery table is bq://PROJECT.DATASET.TABLE")
    if table is None and not os.path.isfile(path):
        raise UsageError(f"{path}: no such file")
    if args.key_column and table is None:
        raise UsageError("--key-column is for a BigQuery table (bq://PROJECT.DATASET.TABLE)")
    if args.format == "openai" and not args.out:
        raise UsageError("--format openai writes DIR/results.openai.jsonl: give --out DIR")
    if args.partial and not args.out:
        raise UsageError("--partial writes DIR/results.jsonl while the batch runs: give --out DIR")
    return table


def cmd_run(args, config: Config) -> int:
    from . import keys, tablesource
    from .store import Store

    path = args.file
    table = _run_source(args)
    args.wait = args.wait or bool(args.out)
    config = _target(start=True)
    store = Store(config)
    name = config.incoming_prefix + (
        table.rsplit(".", 2)[-1] + tablesource.POINTER_SUFFIX if table else os.path.basename(path)
    )
    blob = store.client.bucket(config.bucket).blob(name)
    if args.model:
        blob.metadata = {"model": args.model}
    started = time.monotonic()
    # a pointer file: the submit function reads the table (docs/contracts.md, Tables as input)
    if table:
        pointer = {"table": path, **({"key_column": args.key_column} if args.key_column else {})}
        blob.upload_from_string(orjson.dumps(pointer), content_type="application/json")
    else:
        blob.upload_from_filename(path, content_type="application/jsonl")
    batch_id = keys.batch_id(config.bucket, name, blob.generation)
    if not args.json:
        print(f"uploaded gs://{config.bucket}/{name} -> batch {batch_id}")
    doc = watch(
        store, batch_id, args.wait, quiet=args.json, partial_out=args.out if args.partial else ""
    )
    seconds = time.monotonic() - started
    state = doc.final_state or doc.state
    if state == "rejected":
        report, _ = store.read_json(store.path(batch_id, layout.REPORT))
        if args.json:
            _print_json({"batch_id": batch_id, "state": state, "report": report})
        else:
            print(
                f"rejected: {report['error_count']:,} error(s) in {report['requests']:,} requests"
            )
            print_report_errors(report)
        return 1
    if not args.wait or doc.state not in ("done",):
        if args.json:
            _print_json({"batch_id": batch_id, "state": state, "error": doc.error})
        else:
            print(
                f"{state}: batch {batch_id}"
                + (f" ({doc.error})" if doc.error else "")
                + (
                    "; follow it with `dropbatch status " + batch_id + "`"
                    if state == "submitted"
                    else ""
                )
            )
        return 1 if state == "failed" else 0
    manifest, _ = store.read_json(store.path(batch_id, layout.MANIFEST))
    if args.out:
        download_results(store, batch_id, args.out, per_key=args.per_key)
        if args.format == "openai":
            write_openai(args.out)
    if args.json:
        _print_json(manifest)
    else:
        print_summary(manifest, seconds)
        if args.out:
            print(
                f"  downloaded to {os.path.join(args.out, layout.RESULTS_FILE)} (one line per "
                f"request, in input order)"
                + (f" and {os.path.join(args.out, 'results')}/KEY.json" if args.per_key else "")
                + (
                    f"; as an OpenAI Batch output file: {os.path.join(args.out, OPENAI_OUTPUT)}"
                    if args.format == "openai"
                    else ""
                )
            )
    return 0 if manifest["state"] in ("succeeded", "partially_succeeded") else 1


STAGES = {
    "claimed": "validating",
    "staged": "submitting",
    "submitted": "running",
    "splitting": "splitting",
}


def watch(
    store,
    batch_id: str,
    wait: bool,
    quiet: bool = False,
    timeout: float = 3600,
    partial_out: str = "",
) -> dict:
    """Follow the ledger until submitted (or, with wait, until done), with a live progress bar on a
    terminal: the stage, the jobs' states, and the results written so far out of the total; with
    `partial_out`, keep DIR/results.jsonl current meanwhile (write_partial)."""
    deadline = time.monotonic() + timeout
    progress = task = None
    next_partial = next_count = 0.0
    finished = 0
    if not quiet and sys.stderr.isatty():
        import rich.progress

        progress = rich.progress.Progress(
            rich.progress.SpinnerColumn(),
            rich.progress.TextColumn("{task.description}"),
            rich.progress.BarColumn(),
            rich.progress.MofNCompleteColumn(),
            rich.progress.TimeElapsedColumn(),
            transient=True,
        )
        progress.start()
        task = progress.add_task("waiting for the upload event", total=None)
    try:
        while time.monotonic() < deadline:
            doc, _ = store.read_ledger(batch_id)
            if doc:
                state = doc.state
                if state in ("done", "rejected", "failed") or (
                    not wait and state not in ("claimed", "staged")
                ):
                    return doc
                if (
                    partial_out
                    and state in ("submitted", "splitting")
                    and time.monotonic() >= next_partial
                ):
                    write_partial(store, doc, partial_out)
                    next_partial = time.monotonic() + PARTIAL_EVERY_S
                if (
                    progress
                    and state in ("submitted", "splitting")
                    and time.monotonic() >= next_count
                ):
                    from .split_outputs import arrived

                    # results written so far, not only Vertex's completion stats
                    got = arrived(store, doc)
                    finished, next_count = got["succeeded"] + got["failed"], time.monotonic() + 2
                if progress:
                    jobs = (
                        ", ".join(
                            sorted(
                                {
                                    (p.state or "waiting").replace("JOB_STATE_", "").lower()
                                    for p in doc.parts
                                    if p.round == doc.round
                                }
                            )
                        )
                        or "-"
                    )
                    round_ = f" (retry round {doc.round})" if doc.round else ""
                    progress.update(
                        task,
                        description=f"{STAGES.get(state, state)}{round_}: jobs {jobs}",
                        total=sum(p.requests for p in doc.parts if p.round == doc.round) or None,
                        completed=finished,
                    )
            time.sleep(0.3)
    finally:
        if progress:
            progress.stop()
    raise UsageError(
        f"batch {batch_id} did not finish within {timeout:.0f} s; follow it with "
        f"`dropbatch status {batch_id}`"
    )


PARTIAL_EVERY_S = 5.0


def write_partial(store, doc: Ledger, out: str) -> int:
    """DIR/results.jsonl while the batch runs: one line per request in the file's order, each with
    `final`: its result object when one is written (final when it succeeded; a failure may still be
    retried), else {"key", "status": "pending", "final": false}. Written to a temporary name and
    renamed, so a reader never sees half a file; the end's download replaces it. Returns how many
    results were there."""
    import concurrent.futures

    from .keys import key_width, line_key

    keys = []
    for p in sorted((p for p in doc.parts if p.round == 0), key=lambda p: p.first_line):
        sidecar = store.bucket.blob(
            store.path(doc.batch_id, layout.staged(p) + ".keys.jsonl")
        ).download_as_bytes()
        keys += [
            key or line_key(line, key_width(doc.lines))
            for line, key, _ in map(orjson.loads, sidecar.splitlines())
        ]
    prefix = store.path(doc.batch_id, layout.RESULTS)
    present = list(store.client.list_blobs(store.bucket, prefix=prefix))
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        got = dict(
            zip(
                (b.name[len(prefix) : -5] for b in present),
                pool.map(lambda b: b.download_as_bytes(), present),
            )
        )
    os.makedirs(out, exist_ok=True)
    tmp = os.path.join(out, layout.RESULTS_FILE + ".partial")
    with open(tmp, "wb") as f:
        for key in keys:
            result = orjson.loads(got[key]) if key in got else {"key": key, "status": "pending"}
            f.write(orjson.dumps({**result, "final": result["status"] == "succeeded"}) + b"\n")
    os.replace(tmp, os.path.join(out, layout.RESULTS_FILE))
    return len(got)


OPENAI_OUTPUT = "results.openai.jsonl"


def write_openai(out: str) -> None:
    """DIR/results.openai.jsonl from DIR/results.jsonl: one OpenAI Batch output line per request, in
    order."""
    from .openai_batch import output_line

    with (
        open(os.path.join(out, layout.RESULTS_FILE), "rb") as src,
        open(os.path.join(out, OPENAI_OUTPUT), "wb") as dst,
    ):
        for raw in src:
            dst.write(orjson.dumps(output_line(orjson.loads(raw))) + b"\n")


def download_results(store, batch_id: str, out: str, per_key: bool = False) -> None:
    """results.jsonl (one object, in input order), errors.jsonl, manifest.json and report.json; with
    per_key, DIR/results/KEY.json written locally from results.jsonl (the same objects as in the
    bucket)."""
    from google.cloud.storage import transfer_manager

    prefix = store.path(batch_id, "")
    os.makedirs(out, exist_ok=True)
    results = store.bucket.get_blob(prefix + layout.RESULTS_FILE)
    if results is not None:
        with (
            _progress(
                results.size > 20_000_000, "downloading results.jsonl", results.size
            ) as advance,
            results.open("rb", chunk_size=32 << 20) as src,
            open(os.path.join(out, layout.RESULTS_FILE), "wb") as dst,
        ):
            while chunk := src.read(8 << 20):
                dst.write(chunk)
                if advance:
                    advance(len(chunk))
    names = [layout.ERRORS, layout.MANIFEST, layout.REPORT]
    done = transfer_manager.download_many_to_path(
        store.bucket,
        names,
        destination_directory=out,
        blob_name_prefix=prefix,
        max_workers=4,
        worker_type=transfer_manager.THREAD,
    )
    failed = [r for r in done if isinstance(r, Exception)]
    if failed:
        raise UsageError(f"{len(failed)} downloads failed, first: {failed[0]}")
    if per_key:
        os.makedirs(os.path.join(out, "results"), exist_ok=True)
        with open(os.path.join(out, layout.RESULTS_FILE), "rb") as f:
            for raw in f:
                result = orjson.loads(raw)
                if result["status"] != "missing":
                    with open(os.path.join(out, "results", f"{result['key']}.json"), "wb") as dest:
                        dest.write(raw.rstrip(b"\n"))


def _batch(batch_id: str):
    """(store, ledger) of a batch named on the command line; a usage error when it is not a batch id
    or none."""
    from .store import Store

    if not is_batch_id(batch_id):
        raise UsageError(f"{batch_id!r} is not a batch id (dropbatch list shows them)")
    store = Store(_target())
    doc, _ = store.read_ledger(batch_id)
    if doc is None:
        raise UsageError(f"no batch {batch_id!r} in gs://{store.config.state_bucket}")
    return store, doc


def cmd_status(args, config: Config) -> int:
    store, doc = _batch(args.batch_id)
    if args.json:
        _print_json(doc)
        return 0
    state = doc.final_state or doc.state
    print(f"{doc.batch_id}: {state}  ({doc.source}, {doc.requests or 0:,} requests)")
    for p in doc.parts:
        stats = p.completion_stats or {}
        print(
            f"  part {p.index} round {p.round}: {(p.state or 'waiting').replace('JOB_STATE_', '')}"
            f"  {stats.get('successful', 0)} ok, {stats.get('failed', 0)} failed  {p.job or ''}"
        )
    if doc.state in ("submitted", "splitting"):
        from .split_outputs import arrived

        got, total = arrived(store, doc), sum(p.requests for p in doc.parts if p.round == doc.round)
        print(
            f"  results so far: {got['succeeded']:,} succeeded, {got['failed']:,} failed of "
            f"{total:,}" + (f" (round {doc.round})" if doc.round else "")
        )
    if doc.counts:
        print(f"  counts: {doc.counts}")
    if doc.cost:
        print(f"  cost: {format_cost(doc.cost)}")
    if doc.error:
        print(f"  error: {doc.error}")
    return 0


SINCE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str) -> float:
    """'90m', '24h', '7d' as seconds."""
    unit = SINCE_UNITS.get(text[-1:])
    try:
        value = float(text[:-1]) if unit else None
    except ValueError:
        value = None
    if value is None or value <= 0:
        raise UsageError(f"--since {text!r}: give a duration such as 90m, 24h or 7d")
    return value * unit


def cmd_list(args, config: Config) -> int:
    from .store import Store

    store = Store(_target())
    rows = []
    for doc in store.ledgers(
        parse_since(args.since) if args.since else None, args.limit or (None if args.since else 50)
    ):
        usage = doc.usage or {}
        rows.append(
            {
                "batch_id": doc.batch_id,
                "state": doc.final_state or doc.state,
                "source": doc.source,
                "requests": doc.requests,
                "created": doc.created,
                "model": doc.model,
                "tokens": usage.get("total_tokens"),
                "cost": (doc.cost or {}).get("estimated"),
            }
        )
    totals = {
        "batches": len(rows),
        "requests": sum(r["requests"] or 0 for r in rows),
        "tokens": sum(r["tokens"] or 0 for r in rows),
        "cost": round(sum(r["cost"] or 0 for r in rows), 6),
        "currency": "USD",
        "unpriced": sum(1 for r in rows if r["cost"] is None),
    }
    if args.json:
        _print_json(
            {"since": args.since, "totals": totals, "batches": rows} if args.since else rows
        )
        return 0
    for r in rows:
        cost = f"{r['cost']:.4f}" if r["cost"] is not None else "-"
        print(
            f"{r['created'][:19]}  {r['state']:<20} {r['batch_id']:<52} {r['requests'] or 0:>9,} "
            f"{cost:>10}  {r['source']}"
        )
    if not rows:
        print("no batches yet" if not args.since else f"no batches in the last {args.since}")
    if args.since:
        print(
            f"last {args.since}: {totals['batches']:,} batches, {totals['requests']:,} requests, "
            f"{totals['tokens']:,} tokens, about {totals['cost']:.4f} USD"
            + (f" ({totals['unpriced']} still running or unpriced)" if totals["unpriced"] else "")
        )
    return 0


def cmd_resume(args, config: Config) -> int:
    """Send a finished batch's requests that have no succeeded result as one more round of the same
    batch (a `resume_round` task for the split function, docs/contracts.md); with --wait, follow it
    to its new end."""
    from . import batch, notify, retry

    store, doc = _batch(args.batch_id)
    if doc.state != batch.DONE:
        raise UsageError(
            f"batch {args.batch_id} is {doc.final_state or doc.state}: only a batch that ended "
            "after its jobs ran can be resumed"
        )
    wanted = sum(1 for _ in retry.resumable(store, doc)) if doc.parts else 0
    if not wanted:
        print(
            f"{args.batch_id}: nothing to resume (every request has its result or failed for good)"
        )
        return 0
    notify.send_split_task(
        store.config, ResumeTask(batch_id=args.batch_id, resume_round=doc.round + 1)
    )
    if not args.json:
        print(
            f"resuming {args.batch_id} ({doc.final_state}): {wanted:,} requests in round "
            f"{doc.round + 1}"
        )
    deadline = time.monotonic() + 120
    while getattr(store.read_ledger(args.batch_id)[0], "round", None) == doc.round:
        if time.monotonic() > deadline:
            raise UsageError(
                f"the resume of {args.batch_id} was not taken up within 120 s; is the split "
                f"function "
                "running?"
            )
        time.sleep(0.3)
    if not args.wait:
        if args.json:
            _print_json({"batch_id": args.batch_id, "round": doc.round + 1, "requests": wanted})
        return 0
    watch(store, args.batch_id, True, quiet=args.json)
    manifest, _ = store.read_json(store.path(args.batch_id, layout.MANIFEST))
    if args.json:
        _print_json(manifest)
    else:
        print_summary(manifest)
    return 0 if manifest["state"] in ("succeeded", "partially_succeeded") else 1


def cmd_cancel(args, config: Config) -> int:
    """Cancel a batch in any state: before its jobs exist it ends at once; running jobs are
    cancelled at Vertex (best effort: a job may still finish); partial results are split either way.
    """
    from . import batch, vertex
    from .errors import PermanentError

    store, doc = _batch(args.batch_id)
    doc = (
        store.update_ledger(
            args.batch_id,
            lambda d: False if d.state in batch.FINISHED else d.set(cancel_requested=True),
        )
        or doc
    )
    if doc.state in batch.FINISHED:
        print(f"{args.batch_id} has already ended: {doc.final_state or doc.state}")
        return 0
    cancelled, gone = 0, 0
    for p in doc.parts:
        if batch.part_running(p):
            try:
                vertex.cancel_job(store.config, p.job)
                cancelled += 1
            # already ended, or deleted at Vertex: the sweep records what it finds
            except PermanentError:
                gone += 1
    if doc.state in batch.SUBMITTING and not any(p.job for p in doc.parts):
        print(f"cancel requested for {args.batch_id}: it ends before any job is created")
    else:
        print(
            f"cancel requested for {cancelled} job(s) of {args.batch_id}"
            + (f" ({gone} already gone)" if gone else "")
            + "; partial results will still be split"
        )
    return 0


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors: one line, exit 2
        self.print_usage(sys.stderr)
        _err(message)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dropbatch",
        description="Drop a JSONL file of Gemini requests; get one result per request.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    p = sub.add_parser("validate", help="check a batch file: every problem, by line")
    p.add_argument("file")
    p.add_argument(
        "--model",
        help="check the file for this model's family: Gemini, embeddings (gemini-embedding-*, "
        "text-embedding-*), Claude (claude-*), open models (meta/llama-*); default DROPBATCH_MODEL",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser(
        "split", help="split a job's prediction files into one result per request (local files)"
    )
    p.add_argument("--input", required=True, help="the JSONL file the job was given")
    p.add_argument(
        "--predictions", required=True, nargs="+", help="prediction JSONL files or directories"
    )
    p.add_argument(
        "--out",
        required=True,
        help="directory for KEY.json, results.jsonl, errors.jsonl, manifest.json",
    )
    p.add_argument(
        "--model",
        help="the model the job ran (its family decides the formats; default DROPBATCH_MODEL)",
    )
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(func=cmd_split)
    p = sub.add_parser(
        "run",
        help="upload a file (or point at a BigQuery table) on the running stack (or start "
        "one) and follow it",
    )
    p.add_argument(
        "file",
        help="a .jsonl or .jsonl.gz file, or bq://PROJECT.DATASET.TABLE with a request column",
    )
    p.add_argument(
        "--key-column",
        help="with bq://: the column whose value keys each row (default: the row number)",
    )
    p.add_argument(
        "--model",
        help="the model for this file, any family `validate --model` names (default: "
        "DROPBATCH_MODEL)",
    )
    p.add_argument(
        "--wait", action="store_true", help="wait for the results, not only the submission"
    )
    p.add_argument(
        "--out", help="download results.jsonl, errors.jsonl and the manifest here (implies --wait)"
    )
    p.add_argument(
        "--per-key", action="store_true", help="with --out: also write results/KEY.json per request"
    )
    p.add_argument(
        "--format",
        choices=("dropbatch", "openai"),
        default="dropbatch",
        help="with --out: openai also "
        "writes DIR/results.openai.jsonl, the results as an OpenAI Batch output file",
    )
    p.add_argument(
        "--partial",
        action="store_true",
        help="with --out: keep DIR/results.jsonl current while the batch "
        "runs (every request's line, marked final or pending); the end replaces it",
    )
    p.add_argument("--json", action="store_true", help="print the manifest (or report) as JSON")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("status", help="the state of one batch")
    p.add_argument("batch_id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("list", help="recent batches")
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help="at most this many, newest first (default 50; all with --since)",
    )
    p.add_argument(
        "--since", help="only batches received in this window (90m, 24h, 7d), with their totals"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser(
        "resume",
        help="send a finished batch's requests without a succeeded result again (after "
        "expired, cancelled or transient failures), as one more round of the same batch",
    )
    p.add_argument("batch_id")
    p.add_argument("--wait", action="store_true", help="follow the round to the batch's new end")
    p.add_argument(
        "--json", action="store_true", help="print the manifest (or the round started) as JSON"
    )
    p.set_defaults(func=cmd_resume)
    p = sub.add_parser(
        "cancel", help="cancel the running jobs of a batch (partial results are still split)"
    )
    p.add_argument("batch_id")
    p.set_defaults(func=cmd_cancel)
    p = sub.add_parser("local", help="start, stop or describe the embedded local stack")
    p.add_argument("action", choices=["up", "down", "status", "env"])
    p.add_argument(
        "--json", action="store_true", help="print what a client needs to reach the stack, as JSON"
    )
    p.add_argument(
        "--responder-url",
        default="",
        help="up: answer with any OpenAI-compatible endpoint "
        "(e.g. http://127.0.0.1:8000/v1) instead of the deterministic local responder",
    )
    p.add_argument(
        "--responder-model", default="local", help="up: the model name sent to --responder-url"
    )
    p.add_argument("--wipe", action="store_true", help="down: also delete the local bucket's files")
    p.add_argument(
        "--iam",
        choices=("on", "off"),
        default="on",
        help="up: refuse (403) what infra/'s grants do not "
        "allow each function's service account (default on; off for debugging)",
    )
    p.set_defaults(func=lambda a, c: cmd_local_env(a, c) if a.action == "env" else cmd_local(a, c))
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args, Config.from_env())
    except UsageError as exc:
        _err(str(exc))
        return 2
    except DropbatchError as exc:
        _err(str(exc))
        return 1
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
