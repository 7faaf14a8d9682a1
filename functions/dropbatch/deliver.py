"""The webhook delivery function: a push subscription on the notifications topic hands it each
message; `running` and terminal ones are POSTed, signed (webhooks.py), to DROPBATCH_WEBHOOK_URLS and
to the batch's own endpoint (its object metadata `webhook`, kept in the ledger).

The body is the Pub/Sub message's data, byte for byte. A 2xx is delivered. A timeout, a connection
error, a 408, 429 or 5xx raises, so the function answers 500 and Pub/Sub delivers again with its
backoff (infra/pubsub.tf); a message older than DROPBATCH_WEBHOOK_RETRY_S (25 h) is given up with an
ERROR log instead. Any other answer (a 4xx, a redirect: redirects are not followed) or a refused
address is logged and not retried. When one of several endpoints fails, the next try POSTs to all
again under the same webhook-id: receivers drop what they have seen (Standard Webhooks).

Every address a host name resolves to is checked (webhooks.address_problem) and the POST goes to the
checked address, so a name cannot be re-pointed into the network between the check and the call.
"""

from __future__ import annotations

import socket
import urllib.parse

import orjson

from . import logs, webhooks
from .config import Config, get_config
from .constants import TERMINAL
from .errors import ConfigurationError, PermanentError, TransientError
from .events import PUBSUB, age_s, pubsub_message
from .store import Store, execution_id

DELIVERED = ("running", *TERMINAL)
USER_AGENT = "dropbatch-webhooks/1"


def handle_event(event) -> None:
    if event.get("type") != PUBSUB:
        logs.info("ignored: not a Pub/Sub message", event_type=event.get("type"))
        return
    body, _, published = pubsub_message(event)
    try:
        message = orjson.loads(body)
        batch_id, state = str(message["batch_id"]), message["state"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        logs.warning("ignored: not a dropbatch message", event_id=event.get("id"))
        return
    if state not in DELIVERED:
        return
    token = logs.bind(batch_id=batch_id, execution_id=execution_id(), event_id=event.get("id"))
    try:
        deliver(get_config(), batch_id, state, body, age_s(published))
    finally:
        logs.reset(token)


def endpoints(config: Config, batch_id: str) -> list[str]:
    """The project's URLs and the batch's own (its ledger's). A ledger this function may not read
    (a missing grant) leaves the project's URLs, with an ERROR naming the permission."""
    urls = [u.strip() for u in config.webhook_urls.replace(" ", ",").split(",") if u.strip()]
    if batch_id:
        try:
            doc, _ = Store(config).read_ledger(batch_id)
        except ConfigurationError as exc:
            doc = None
            logs.error(
                "the batch's own webhook is unknown: its ledger was refused",
                event="webhook_refused",
                error=str(exc)[:600],
            )
        if doc is not None and doc.webhook:
            urls.append(doc.webhook)
    return list(dict.fromkeys(urls))


def deliver(config: Config, batch_id: str, state: str, body: bytes, age: float) -> int:
    """POST one message to every endpoint; the number delivered. Raises TransientError when one
    must be tried again."""
    urls = endpoints(config, batch_id)
    if not urls:
        return 0
    if not config.webhook_secret:
        logs.error("webhooks configured but no secret: nothing sent", event="webhook_unsigned")
        return 0
    msg_id = webhooks.message_id(batch_id, body)
    delivered, failed = 0, []
    for n, url in enumerate(urls):
        try:
            status = post(config, url, body, webhooks.sign(config.webhook_secret, msg_id, body))
            delivered += 1
            logs.info("webhook delivered", event="webhook_delivered", endpoint=n, status=status)
        except TransientError as exc:
            failed.append(n)
            logs.warning("webhook not delivered; retried", endpoint=n, error=str(exc)[:300])
        except PermanentError as exc:
            logs.error(
                "webhook refused; not retried",
                event="webhook_refused",
                endpoint=n,
                state=state,
                error=str(exc)[:300],
            )
    if failed and age > config.webhook_retry_s:
        logs.error(
            "webhook given up",
            event="webhook_given_up",
            endpoints=failed,
            state=state,
            age_s=round(age),
        )
    elif failed:
        raise TransientError(f"{len(failed)} of {len(urls)} webhook endpoints did not answer 2xx")
    return delivered


def resolve(host: str, port: int, loopback: bool) -> str:
    """An address of `host` to connect to, when none of its addresses is refused."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise TransientError(f"the endpoint's host did not resolve: {exc}") from None
    addresses = [info[4][0] for info in found]
    for address in addresses:
        problem = webhooks.address_problem(address, loopback)
        if problem:
            raise PermanentError(f"{problem} (the endpoint's host resolves to one)")
    return addresses[0]


def post(config: Config, url: str, body: bytes, signed: dict) -> int:
    import certifi
    import urllib3

    loopback = bool(config.webhook_loopback)
    problem = webhooks.url_problem(url, loopback)
    if problem:
        raise PermanentError(problem)
    parts = urllib.parse.urlsplit(url)
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    address = resolve(parts.hostname, port, loopback)
    timeout = urllib3.Timeout(
        connect=min(5.0, config.webhook_timeout_s), read=config.webhook_timeout_s
    )
    if https:
        pool = urllib3.HTTPSConnectionPool(
            address,
            port,
            server_hostname=parts.hostname,
            assert_hostname=parts.hostname,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
        )
    else:
        pool = urllib3.HTTPConnectionPool(address, port)
    headers = {
        **signed,
        "Host": parts.netloc,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        with pool:
            r = pool.urlopen(
                "POST",
                path,
                body=body,
                headers=headers,
                timeout=timeout,
                retries=False,
                redirect=False,
                assert_same_host=False,
            )
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise TransientError(f"the POST failed: {type(exc).__name__}") from None
    if 200 <= r.status < 300:
        return r.status
    if r.status in (408, 429) or r.status >= 500:
        raise TransientError(f"the endpoint answered {r.status}")
    raise PermanentError(f"the endpoint answered {r.status}")
