"""`dropbatch webhook verify`: check a delivery's signature as a receiver must (webhooks.py), for a
receiver's own tests and for a body and headers saved from a failed delivery."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

from .. import webhooks
from ..config import Config
from ..errors import UsageError
from .common import print_json


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def _headers(args) -> dict:
    headers = {}
    if args.headers:
        try:
            headers = orjson.loads(_read(args.headers))
        except orjson.JSONDecodeError:
            raise UsageError(f"{args.headers} is not a JSON object of headers") from None
        if not isinstance(headers, dict):
            raise UsageError(f"{args.headers} is not a JSON object of headers")
    for name in ("id", "timestamp", "signature"):
        if getattr(args, name):
            headers[f"webhook-{name}"] = getattr(args, name)
    return headers


def cmd_verify(args, config: Config) -> int:
    secret = _read(args.secret_file).decode().strip() if args.secret_file else config.webhook_secret
    if not secret:
        raise UsageError("no secret: give --secret-file or set DROPBATCH_WEBHOOK_SECRET")
    seen_file = Path(args.seen) if args.seen else None
    seen = set(seen_file.read_text().split()) if seen_file and seen_file.exists() else None
    try:
        msg_id = webhooks.verify(
            secret,
            _read(args.body),
            _headers(args),
            tolerance_s=args.tolerance,
            seen=seen if seen_file else None,
        )
    except webhooks.Refused as exc:
        if args.json:
            print_json({"verified": False, "reason": str(exc)})
        else:
            print(f"refused: {exc}")
        return 1
    if seen_file:
        with open(seen_file, "a") as f:
            f.write(msg_id + "\n")
    if args.json:
        print_json({"verified": True, "webhook_id": msg_id})
    else:
        print(f"verified: {msg_id}")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("webhook", help="signed webhooks: check a delivery as a receiver must")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True, parser_class=type(p))
    v = verbs.add_parser(
        "verify",
        help="check a delivery's Standard Webhooks signature, timestamp and (with --seen) that its "
        "id is new; exit 0 verified, 1 refused",
    )
    v.add_argument("body", help="the request body as received, byte for byte (- for stdin)")
    v.add_argument("--headers", help="a JSON object of the request's headers (a file, or -)")
    v.add_argument("--id", help="the webhook-id header")
    v.add_argument("--timestamp", help="the webhook-timestamp header")
    v.add_argument("--signature", help="the webhook-signature header")
    v.add_argument(
        "--secret-file",
        help="a file holding the secret (whsec_...); default DROPBATCH_WEBHOOK_SECRET",
    )
    v.add_argument(
        "--seen",
        help="a file of the webhook-ids accepted before, one a line: an id in it is a replay; an "
        "accepted id is added",
    )
    v.add_argument(
        "--tolerance",
        type=int,
        default=webhooks.TOLERANCE_S,
        help="seconds a timestamp may be off (default %(default)s)",
    )
    v.add_argument("--json", action="store_true", help="print {verified, webhook_id|reason}")
    v.set_defaults(func=cmd_verify)
