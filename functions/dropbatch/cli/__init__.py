"""The `dropbatch` command: readable lines for people, --json for scripts, exit 0/1/2. This module
parses the command line; each command is in the module named for what it works on, and what a
command means (cancel, resume, partial results) is in the package below."""

from __future__ import annotations

import argparse
import sys

from ..config import Config
from ..errors import DropbatchError, UsageError
from .batches import cmd_cancel, cmd_list, cmd_resume, cmd_status
from .common import err
from .files import cmd_split, cmd_validate
from .run import cmd_run
from .stack import cmd_local, cmd_local_env


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
