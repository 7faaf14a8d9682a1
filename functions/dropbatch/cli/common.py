"""What the commands share: printing (readable lines, --json, progress bars), the target project,
a batch named on the command line."""

from __future__ import annotations

import os
import sys

import orjson

from ..config import Config
from ..documents import plain
from ..errors import UsageError
from ..keys import is_batch_id

SHOWN_ERRORS = 20


def print_json(obj) -> None:
    sys.stdout.buffer.write(orjson.dumps(obj, default=plain, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.flush()


def err(message: str) -> None:
    print(f"dropbatch: {message}", file=sys.stderr)


def print_report_errors(report: dict, shown: int = SHOWN_ERRORS) -> None:
    for e in report["errors"][:shown]:
        where = f"line {e['line']}" if e["line"] is not None else "file"
        print(f"  {where}: {e['message']}  [{e['code']}]")
    more = report.get("error_count", len(report["errors"])) - min(shown, len(report["errors"]))
    if more > 0:
        print(f"  ... and {more:,} more (use --json for the full report)")


class NoProgress:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def progress_bar(enabled: bool, what: str, total: int):
    """A rich progress bar on stderr for long work; a no-op for small work, --json and pipes."""
    if not enabled or not sys.stderr.isatty():
        return NoProgress()
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
    if c.get("reused"):
        spared = (manifest.get("cost") or {}).get("saved_by_reuse")
        print(
            f"  {c['reused']:,} answered from earlier batches, not sent again"
            + (f" (saved about {spared:,.4f} {manifest['cost']['currency']})" if spared else "")
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


def target_config(start: bool = False) -> Config:
    """The running local stack, else the deployment configured in DROPBATCH_*; only `run` may start
    a stack."""
    from ..local import stack as local

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


def named_batch(batch_id: str):
    """(store, ledger) of a batch named on the command line; a usage error when it is not a batch id
    or none."""
    from ..store import Store

    if not is_batch_id(batch_id):
        raise UsageError(f"{batch_id!r} is not a batch id (dropbatch list shows them)")
    store = Store(target_config())
    doc, _ = store.read_ledger(batch_id)
    if doc is None:
        raise UsageError(f"no batch {batch_id!r} in gs://{store.config.state_bucket}")
    return store, doc


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
