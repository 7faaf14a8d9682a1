"""`dropbatch validate` and `dropbatch split`: commands on local files."""

from __future__ import annotations

import os
import sys

from ..config import Config
from ..errors import UsageError
from .common import print_json, print_report_errors, print_summary, progress_bar


def cmd_validate(args, config: Config) -> int:
    from .. import validate

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
                report = validate.price(
                    validate.validate_stream(stream, path, config, model=args.model),
                    args.model or config.model,
                    config,
                ).to_dict()
        else:
            report = validate.validate_path(path, config, model=args.model).to_dict()
    except PermissionError:
        raise UsageError(f"{path}: permission denied") from None
    if args.json:
        print_json(report)
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
    if args.cost and not args.json:
        print_cost_bound(report["cost_bound"])
    return 0 if report["valid"] else 1


def print_cost_bound(bound: dict) -> None:
    """The line `dropbatch validate --cost` prints: the most the file can cost at the batch
    price."""
    tokens = (
        f"{bound['input_tokens']:,} input tokens (estimated) and at most "
        f"{bound['output_tokens']:,} output tokens"
    )
    if bound["bound"] is None:
        print(f"cost  no price for this model in the price table (set DROPBATCH_PRICES); {tokens}")
    else:
        print(
            f"cost  at most {bound['bound']:,.4f} {bound['currency']} at {bound['model']}'s "
            f"batch price: {tokens}"
        )


def cmd_split(args, config: Config) -> int:
    from .. import split

    for path in [args.input]:
        if not os.path.isfile(path):
            raise UsageError(f"{path}: no such file")
    total = sum(os.path.getsize(f) for f in split.prediction_files(args.predictions))
    with progress_bar(not args.json and total > 20_000_000, "splitting", total) as advance:
        manifest = split.split_local(
            args.input, args.predictions, args.out, config, progress=advance, model=args.model
        )
    if args.json:
        print_json(manifest)
    else:
        print_summary(manifest)
    return 1 if manifest["state"] == "failed" else 0


def add_parsers(sub) -> None:
    """The subcommands of this module on `sub` (build_parser's subparsers)."""
    p = sub.add_parser("validate", help="check a batch file: every problem, by line")
    p.add_argument("file")
    p.add_argument(
        "--model",
        help="check the file for this model's family: Gemini, embeddings (gemini-embedding-*, "
        "text-embedding-*), Claude (claude-*), open models (meta/llama-*); default DROPBATCH_MODEL",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--cost",
        action="store_true",
        help="also print the most the file can cost (input tokens estimated at 4 bytes a token, "
        "each request's output limit); --json always has it as cost_bound",
    )
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
