"""`dropbatch local`: the local stack's commands (up, down, status, env)."""

from __future__ import annotations

import os
import time

from ..config import Config
from ..errors import UsageError
from .common import print_json


def cmd_local(args, config: Config) -> int:
    """`dropbatch local up|down|status` (env is cmd_local_env)."""
    if args.action == "up":
        return _local_up(args, config)
    if args.action == "down":
        return _local_down(args)
    return _local_status(args)


def _local_up(args, config: Config) -> int:
    from ..local import stack as local

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
        print_json(running.public())
    else:
        print(
            f"local stack up in {time.monotonic() - start:.1f} s: bucket gs://{running.bucket} "
            f"(storage {running.storage}), logs in {running.logs}"
        )
    return 0


def _local_down(args) -> int:
    from ..local import stack as local

    stopped = local.down(wipe=args.wipe)
    if not args.json:
        kept = (
            "the local bucket's files were deleted"
            if args.wipe
            else "the local bucket's files are kept for the next `up` (`down --wipe` deletes them)"
        )
        print(("local stack stopped; " if stopped else "no local stack was running; ") + kept)
    return 0


def _local_status(args) -> int:
    from ..local import stack as local

    running = local.status()
    if running is None:
        if args.json:
            print_json(None)
        else:
            print("no local stack is running (start one with `dropbatch local up`)")
        return 1
    if args.json:
        print_json(running.public())
    else:
        _print_stack(running)
    return 0


def _print_stack(running) -> None:
    """The running stack for people: its endpoints, functions, topics, identity, and what it holds
    now (batches by state, backlog, dead letters)."""
    from ..local import stack as local
    from ..local.iam import OWNER
    from ..local.overview import overview

    print(f"local stack: project {running.project}, bucket gs://{running.bucket}")
    print(
        f"  storage   {running.storage}\n  pubsub    {running.pubsub}\n  vertex    {running.vertex}"
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
    os.environ.update(running.client_env())
    seen = overview(running)
    print(
        "  batches   "
        + (", ".join(f"{n} {state}" for state, n in sorted(seen["batches"].items())) or "none yet")
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


def cmd_local_env(args, config: Config) -> int:
    from ..local import stack as local

    for key, value in local.require().client_env().items():
        print(f"export {key}={value}")
    return 0


def add_parsers(sub) -> None:
    """The subcommands of this module on `sub` (build_parser's subparsers)."""
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
