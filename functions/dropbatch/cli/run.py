"""`dropbatch run`: drop a file, follow its batch (watch) and download its results."""

from __future__ import annotations

import os
import sys
import time

import orjson

from .. import layout
from ..config import Config
from ..constants import ENDED_WELL
from ..documents import Ledger
from ..errors import UsageError
from .common import print_json, print_report_errors, print_summary, progress_bar, target_config


def _run_source(args) -> str | None:
    """The BigQuery table `dropbatch run` is given, or None for a file; a UsageError for what it
    cannot run."""
    from .. import tablesource

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
    from .. import keys
    from ..store import Store

    table = _run_source(args)  # before the stack is started: a bad argument is only that
    args.wait = args.wait or bool(args.out)
    config = target_config(start=True)
    store = Store(config)
    started = time.monotonic()
    name, blob = _upload(store, args, table)
    batch_id = keys.batch_id(config.bucket, name, blob.generation)
    if not args.json:
        print(f"uploaded gs://{config.bucket}/{name} -> batch {batch_id}")
    doc = watch(
        store, batch_id, args.wait, quiet=args.json, partial_out=args.out if args.partial else ""
    )
    seconds = time.monotonic() - started
    state = doc.final_state or doc.state
    if state == "rejected" or not args.wait or doc.state != "done":
        return _print_unfinished(store, doc, state, args.json)
    manifest, _ = store.read_json(store.path(batch_id, layout.MANIFEST))
    if args.out:
        download_results(store, batch_id, args.out, per_key=args.per_key)
        if args.format == "openai":
            write_openai(args.out)
    if args.json:
        print_json(manifest)
    else:
        print_summary(manifest, seconds)
        if args.out:
            _print_downloaded(args)
    return 0 if manifest["state"] in ENDED_WELL else 1


def _upload(store, args, table: str | None):
    """Upload the file (or, for bq://, a pointer to the table: the submit function reads it,
    docs/contracts.md, Tables as input) under the incoming prefix; (its name, its blob)."""
    from .. import tablesource

    config, path = store.config, args.file
    name = config.incoming_prefix + (
        table.rsplit(".", 2)[-1] + tablesource.POINTER_SUFFIX if table else os.path.basename(path)
    )
    blob = store.client.bucket(config.bucket).blob(name)
    if args.model:
        blob.metadata = {"model": args.model}
    if table:
        pointer = {"table": path, **({"key_column": args.key_column} if args.key_column else {})}
        blob.upload_from_string(orjson.dumps(pointer), content_type="application/json")
    else:
        blob.upload_from_filename(path, content_type="application/jsonl")
    return name, blob


def _print_unfinished(store, doc: Ledger, state: str, as_json: bool) -> int:
    """A batch that was rejected, or that `run` did not wait for (or that ended before its jobs
    did): what it is; the exit status."""
    batch_id = doc.batch_id
    if state == "rejected":
        report, _ = store.read_json(store.path(batch_id, layout.REPORT))
        if as_json:
            print_json({"batch_id": batch_id, "state": state, "report": report})
        else:
            print(
                f"rejected: {report['error_count']:,} error(s) in {report['requests']:,} requests"
            )
            print_report_errors(report)
        return 1
    if as_json:
        print_json({"batch_id": batch_id, "state": state, "error": doc.error})
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


def _print_downloaded(args) -> None:
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
        progress, task = _live_bar()
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
                    from ..split_outputs import arrived

                    # results written so far, not only Vertex's completion stats
                    got = arrived(store, doc)
                    finished, next_count = got["succeeded"] + got["failed"], time.monotonic() + 2
                if progress:
                    progress.update(task, **_bar_fields(doc, finished))
            time.sleep(0.3)
    finally:
        if progress:
            progress.stop()
    raise UsageError(
        f"batch {batch_id} did not finish within {timeout:.0f} s; follow it with "
        f"`dropbatch status {batch_id}`"
    )


def _live_bar():
    """A live progress bar on stderr: (progress, its task)."""
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
    return progress, progress.add_task("waiting for the upload event", total=None)


def _bar_fields(doc: Ledger, finished: int) -> dict:
    """What the bar shows of a batch: its stage, its jobs' states, results written of the total."""
    jobs = {
        (p.state or "waiting").replace("JOB_STATE_", "").lower()
        for p in doc.parts
        if p.round == doc.round
    }
    round_ = f" (retry round {doc.round})" if doc.round else ""
    stage = STAGES.get(doc.state, doc.state)
    return {
        "description": f"{stage}{round_}: jobs {', '.join(sorted(jobs)) or '-'}",
        "total": sum(p.requests for p in doc.parts if p.round == doc.round) or None,
        "completed": finished,
    }


PARTIAL_EVERY_S = 5.0


def write_partial(store, doc: Ledger, out: str) -> int:
    """DIR/results.jsonl while the batch runs (split_outputs.partial_results), written to a
    temporary name and renamed, so a reader never sees half a file; the end's download replaces it.
    Returns how many results were there."""
    from ..split_outputs import partial_results

    results, present = partial_results(store, doc)
    os.makedirs(out, exist_ok=True)
    tmp = os.path.join(out, layout.RESULTS_FILE + ".partial")
    with open(tmp, "wb") as f:
        f.writelines(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in results)
    os.replace(tmp, os.path.join(out, layout.RESULTS_FILE))
    return present


OPENAI_OUTPUT = "results.openai.jsonl"


def write_openai(out: str) -> None:
    """DIR/results.openai.jsonl from DIR/results.jsonl: one OpenAI Batch output line per request, in
    order."""
    from ..openai_batch import output_line

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
            progress_bar(
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


def add_parsers(sub) -> None:
    """The subcommands of this module on `sub` (build_parser's subparsers)."""
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
