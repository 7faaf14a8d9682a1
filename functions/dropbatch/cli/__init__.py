"""The `dropbatch` command: readable lines for people, --json for scripts, exit 0/1/2. This module
parses the command line; each command is in the module named for what it works on, and what a
command means (cancel, resume, partial results) is in the package below."""

from __future__ import annotations

import argparse
import sys

from ..config import Config
from ..errors import DropbatchError, UsageError
from . import batches, files, run, stack, webhook
from .common import err


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors: one line, exit 2
        self.print_usage(sys.stderr)
        err(message)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dropbatch",
        description="Drop a JSONL file of Gemini requests; get one result per request.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in (files, run, batches, stack, webhook):
        module.add_parsers(sub)
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
        err(str(exc))
        return 2
    except DropbatchError as exc:
        err(str(exc))
        return 1
    except KeyboardInterrupt:
        err("interrupted")
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
