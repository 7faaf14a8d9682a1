"""Signed webhooks (docs/contracts.md, Webhooks): which URLs may receive them, and the signature.

A delivery is signed as the Standard Webhooks specification says
(https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md):
headers `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`, the last being
`v1,` and the base64 HMAC-SHA256 of `ID.TIMESTAMP.BODY` under the secret's bytes (the secret is
written `whsec_` and base64). A receiver refuses a timestamp more than five minutes off (the
specification's tolerance, and the `standardwebhooks` package's) and a `webhook-id` it has accepted
before; a retry keeps its id and is signed again with a fresh timestamp.

Only https URLs, and never an address inside a network (private, loopback, link-local, the metadata
server, reserved ranges): a webhook must not let a batch's uploader make the delivery function call
into the project's network (SSRF). The local stack allows loopback (DROPBATCH_WEBHOOK_LOOPBACK=1),
where plain http is allowed too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import time
import urllib.parse

from .errors import DropbatchError

TOLERANCE_S = 300
MAX_URL_CHARS = 2048
SECRET_PREFIX = "whsec_"
# names that reach the metadata server or the project's own network on Google Cloud
INTERNAL_NAMES = ("metadata", "metadata.google.internal")


class Refused(DropbatchError):
    """A delivery a receiver must not accept: unsigned, forged, stale or replayed."""


def url_problem(url: str, loopback: bool = False) -> str | None:
    """What is wrong with a webhook URL for this deployment, or None. A host name is checked here
    by name only; its addresses are checked when it is resolved for each delivery
    (address_problem)."""
    if len(url) > MAX_URL_CHARS:
        return f"a webhook URL is at most {MAX_URL_CHARS:,} characters"
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a port that is not a number)
    except ValueError:
        return "not a URL"
    host = (parts.hostname or "").rstrip(".")
    if not host:
        return "a webhook URL needs a host, like https://hooks.example.com/dropbatch"
    if parts.username is not None or parts.password is not None:
        return "a webhook URL carries no user name or password (the signature authenticates)"
    local = loopback and _loopback(host)
    if parts.scheme != "https" and not (local and parts.scheme == "http"):
        return "webhooks are delivered over https only"
    return None if local else name_problem(host, loopback)


def _loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def name_problem(host: str, loopback: bool = False) -> str | None:
    if host.lower() in INTERNAL_NAMES or host.lower().endswith(".internal"):
        return "a webhook cannot be delivered to the metadata server or an internal name"
    if host == "localhost" or host.endswith(".localhost"):
        return None if loopback else "a webhook cannot be delivered to a loopback address"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None  # a name: its addresses are checked when it is resolved
    return address_problem(ip, loopback)


def address_problem(ip, loopback: bool = False) -> str | None:
    """Why a resolved address must not receive a webhook, or None for a public one."""
    ip = ipaddress.ip_address(ip)
    ip = getattr(ip, "ipv4_mapped", None) or ip
    if ip.is_loopback:
        return None if loopback else "a webhook cannot be delivered to a loopback address"
    if not ip.is_global or ip.is_multicast:
        # private, link-local (the metadata server's 169.254.169.254), shared, reserved
        return "a webhook cannot be delivered to a private, link-local or reserved address"
    return None


def new_secret() -> str:
    import os

    return SECRET_PREFIX + base64.b64encode(os.urandom(32)).decode()


def _key(secret: str) -> bytes:
    text = secret.removeprefix(SECRET_PREFIX).rstrip("=")
    try:  # unpadded base64 too, as the standardwebhooks package reads it
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except ValueError:
        raise Refused("the webhook secret is not whsec_ and base64") from None


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def message_id(batch_id: str, body: bytes) -> str:
    """The same for every delivery of the same message (a Pub/Sub redelivery, a re-publish of the
    same message by the outbox), different for any other."""
    return f"msg_{batch_id}_{hashlib.sha256(body).hexdigest()[:24]}"


def sign(secret: str, msg_id: str, body: bytes, at: float | None = None) -> dict:
    timestamp = int(time.time() if at is None else at)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, msg_id, timestamp, body),
    }


def verify(
    secret: str,
    body: bytes,
    headers: dict,
    *,
    at: float | None = None,
    tolerance_s: int = TOLERANCE_S,
    seen: set | None = None,
) -> str:
    """The delivery's webhook-id when its signature is the secret's, its timestamp recent and (with
    `seen`, the ids accepted before) its id new; else Refused with the reason."""
    lower = {str(k).lower(): str(v) for k, v in headers.items()}
    msg_id, stamp, given = (
        lower.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature")
    )
    if not (msg_id and stamp and given):
        raise Refused(
            "unsigned: the webhook-id, webhook-timestamp and webhook-signature headers are required"
        )
    try:
        timestamp = int(stamp)
    except ValueError:
        raise Refused("webhook-timestamp is not a whole number of seconds") from None
    off = (time.time() if at is None else at) - timestamp
    if abs(off) > tolerance_s:
        raise Refused(
            f"the timestamp is {abs(off):,.0f} s {'old' if off > 0 else 'ahead'}, past the "
            f"{tolerance_s} s tolerance: a replay, or a clock that is off"
        )
    expected = signature(secret, msg_id, timestamp, body)
    if not any(hmac.compare_digest(part, expected) for part in given.split()):
        raise Refused("no signature matches: not signed with this secret, or the body was changed")
    if seen is not None and msg_id in seen:
        raise Refused(f"replayed: {msg_id} was accepted before")
    return msg_id
