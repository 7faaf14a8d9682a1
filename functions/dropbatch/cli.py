"""The `dropbatch` command: readable lines for people, --json for scripts, exit 0/1/2."""

from __future__ import annotations

import argparse
import os
import sys
import time

import orjson

from .config import Config
from .errors import DropbatchError, UsageError

SHOWN_ERRORS = 20


def _print_json(obj) -> None:
    sys.stdout.buffer.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2) + b"\n")
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
                report = validate.validate_stream(stream, path, config).to_dict()
        else:
            report = validate.validate_path(path, config).to_dict()
    except PermissionError:
        raise UsageError(f"{path}: permission denied") from None
    if args.json:
        _print_json(report)
    else:
        name = os.path.basename(path)
        if report["valid"]:
            jobs = len(report["jobs"])
            plan = f", {jobs} jobs" if jobs > 1 else ""
            print(f"ok  {name}: {report['requests']:,} requests, valid{plan}")
        else:
            n = report["error_count"]
            print(f"invalid  {name}: {n:,} error{'s' if n != 1 else ''} in {report['requests']:,} requests "
                  f"({report['lines']:,} lines)")
            print_report_errors(report)
    return 0 if report["valid"] else 1


def cmd_local(args, config: Config) -> int:
    from .local import stack as local

    if args.action == "up":
        start = time.monotonic()
        try:
            running = local.up(config)
        except local.StackError as exc:
            raise UsageError(str(exc)) from None
        if args.json:
            _print_json(running.public())
        else:
            print(f"local stack up in {time.monotonic() - start:.1f} s: bucket gs://{running.bucket} "
                  f"(storage {running.storage}), logs in {running.logs}")
        return 0
    if args.action == "down":
        stopped = local.down()
        if not args.json:
            print("local stack stopped" if stopped else "no local stack was running")
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
        print(f"  storage   {running.storage}\n  pubsub    {running.pubsub}\n  vertex    {running.vertex}")
        for name, port in running.ports.items():
            if name in local.FUNCTIONS:
                print(f"  function  {local.FUNCTIONS[name]:<14} http://127.0.0.1:{port}")
        print(f"  topics    {', '.join(f'{k}={v}' for k, v in running.topics.items())}")
        print(f"  logs      {running.logs}")
        print(f"  to use it: eval \"$(dropbatch local env)\"")
    return 0


def cmd_local_env(args, config: Config) -> int:
    from .local import stack as local

    for key, value in local.require().client_env().items():
        print(f"export {key}={value}")
    return 0


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors: one line, exit 2
        self.print_usage(sys.stderr)
        _err(message)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dropbatch", description="Drop a JSONL file of Gemini requests; get one result per request.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    p = sub.add_parser("validate", help="check a batch file: every problem, by line")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("local", help="start, stop or describe the embedded local stack")
    p.add_argument("action", choices=["up", "down", "status", "env"])
    p.add_argument("--json", action="store_true", help="print what a client needs to reach the stack, as JSON")
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
