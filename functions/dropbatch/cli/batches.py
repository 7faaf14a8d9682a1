"""Commands on batches that exist: status, list, resume, cancel."""

from __future__ import annotations

from .. import layout
from ..config import Config
from ..constants import ENDED_WELL
from ..errors import UsageError
from .common import format_cost, named_batch, parse_since, print_json, print_summary, target_config
from .run import watch


def cmd_status(args, config: Config) -> int:
    store, doc = named_batch(args.batch_id)
    if args.json:
        print_json(doc)
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
        from ..split_outputs import arrived

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


def cmd_list(args, config: Config) -> int:
    from ..store import Store

    store = Store(target_config())
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
        print_json({"since": args.since, "totals": totals, "batches": rows} if args.since else rows)
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
    batch (retry.request_resume); with --wait, follow it to its new end."""
    from .. import retry

    store, doc = named_batch(args.batch_id)
    wanted = retry.request_resume(store, doc)
    if not wanted:
        print(
            f"{args.batch_id}: nothing to resume (every request has its result or failed for good)"
        )
        return 0
    if not args.json:
        print(
            f"resuming {args.batch_id} ({doc.final_state}): {wanted:,} requests in round "
            f"{doc.round + 1}"
        )
    if not retry.resume_taken_up(store, args.batch_id, doc.round + 1):
        raise UsageError(
            f"the resume of {args.batch_id} was not taken up within 120 s; is the split "
            "function running?"
        )
    if not args.wait:
        if args.json:
            print_json({"batch_id": args.batch_id, "round": doc.round + 1, "requests": wanted})
        return 0
    watch(store, args.batch_id, True, quiet=args.json)
    manifest, _ = store.read_json(store.path(args.batch_id, layout.MANIFEST))
    if args.json:
        print_json(manifest)
    else:
        print_summary(manifest)
    return 0 if manifest["state"] in ENDED_WELL else 1


def cmd_cancel(args, config: Config) -> int:
    """Cancel a batch in any state (control.cancel)."""
    from .. import control

    store, _ = named_batch(args.batch_id)
    outcome = control.cancel(store, args.batch_id)
    if outcome.ended:
        print(f"{args.batch_id} has already ended: {outcome.ended}")
    elif outcome.before_jobs:
        print(f"cancel requested for {args.batch_id}: it ends before any job is created")
    else:
        print(
            f"cancel requested for {outcome.jobs} job(s) of {args.batch_id}"
            + (f" ({outcome.gone} already gone)" if outcome.gone else "")
            + "; partial results will still be split"
        )
    return 0


def add_parsers(sub) -> None:
    """The subcommands of this module on `sub` (build_parser's subparsers)."""
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
