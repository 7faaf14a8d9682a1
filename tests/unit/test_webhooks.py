"""Signed webhooks (webhooks.py, deliver.py): our signature against the standardwebhooks package's
verifier (the specification's reference, not ours), our verify against forged, stale and replayed
deliveries, the SSRF guard, and one delivery through a real HTTP server on loopback."""

from __future__ import annotations

import http.server
import threading
import time

import orjson
import pytest
import standardwebhooks
from dropbatch import deliver, webhooks
from dropbatch.config import Config
from dropbatch.errors import PermanentError, TransientError

BODY = orjson.dumps({"schema": "dropbatch.batch.v1", "batch_id": "b-1", "state": "succeeded"})


def test_the_reference_verifier_accepts_our_signature_and_refuses_a_changed_body():
    secret = webhooks.new_secret()
    headers = webhooks.sign(secret, webhooks.message_id("b-1", BODY), BODY)
    reference = standardwebhooks.Webhook(secret)
    assert reference.verify(BODY, headers)["state"] == "succeeded"
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        reference.verify(BODY.replace(b"succeeded", b"failed"), headers)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(webhooks.new_secret()).verify(BODY, headers)


def test_our_verify_matches_the_reference_on_its_own_signature():
    secret = webhooks.new_secret()
    reference = standardwebhooks.Webhook(secret)
    import datetime as dt

    at = dt.datetime.now(dt.UTC)
    headers = {
        "webhook-id": "msg_x",
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": reference.sign("msg_x", at, BODY.decode()),
    }
    assert webhooks.verify(secret, BODY, headers) == "msg_x"


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda h: {}, "unsigned"),
        (lambda h: {k: v for k, v in h.items() if k != "webhook-signature"}, "unsigned"),
        (lambda h: {**h, "webhook-signature": "v1,AAAA"}, "no signature matches"),
        (lambda h: {**h, "webhook-id": "msg_other"}, "no signature matches"),
        (lambda h: {**h, "webhook-timestamp": "soon"}, "whole number"),
    ],
)
def test_verify_refuses_unsigned_and_forged_deliveries(change, reason):
    secret = webhooks.new_secret()
    headers = webhooks.sign(secret, "msg_1", BODY)
    with pytest.raises(webhooks.Refused, match=reason):
        webhooks.verify(secret, BODY, change(headers))


def test_verify_refuses_a_stale_timestamp_and_a_seen_id():
    secret = webhooks.new_secret()
    old = webhooks.sign(secret, "msg_1", BODY, at=time.time() - 301)
    with pytest.raises(webhooks.Refused, match="tolerance"):
        webhooks.verify(secret, BODY, old)
    # a retry is signed again: same id, fresh timestamp; the receiver's seen ids refuse it
    fresh = webhooks.sign(secret, "msg_1", BODY)
    seen = {webhooks.verify(secret, BODY, fresh, seen=set())}
    with pytest.raises(webhooks.Refused, match="replayed"):
        webhooks.verify(secret, BODY, fresh, seen=seen)


def test_a_message_keeps_its_id_and_another_message_gets_another():
    assert webhooks.message_id("b", BODY) == webhooks.message_id("b", BODY)
    assert webhooks.message_id("b", BODY) != webhooks.message_id("b", BODY + b" ")


@pytest.mark.parametrize(
    "url, loopback, problem",
    [
        ("https://hooks.example.com/dropbatch", False, None),
        ("https://93.184.215.14:8443/x?y=1", False, None),
        ("http://hooks.example.com/dropbatch", False, "https only"),
        ("ftp://hooks.example.com/", False, "https only"),
        ("hooks.example.com", False, "needs a host"),
        ("https:///nohost", False, "needs a host"),
        ("https://user:pw@hooks.example.com/", False, "user name"),
        ("https://hooks.example.com:port/", False, "not a URL"),
        ("https://10.1.2.3/hook", False, "private"),
        ("https://192.168.0.10/hook", True, "private"),
        ("https://172.16.5.4/hook", False, "private"),
        ("https://100.64.0.1/hook", False, "private"),
        ("https://169.254.169.254/computeMetadata/v1/", False, "private"),
        ("https://metadata.google.internal/computeMetadata/v1/", False, "metadata"),
        ("https://anything.internal/", True, "metadata"),
        ("https://[fd00::1]/hook", False, "private"),
        ("https://[::ffff:10.0.0.1]/hook", False, "private"),
        ("https://127.0.0.1/hook", False, "loopback"),
        ("https://localhost/hook", False, "loopback"),
        ("https://[::1]/hook", False, "loopback"),
        ("http://127.0.0.1:8080/hook", False, "https only"),
        # the local stack: loopback allowed, over http too; never a private address
        ("http://127.0.0.1:8080/hook", True, None),
        ("https://localhost/hook", True, None),
        ("http://10.0.0.1/hook", True, "https only"),
        ("https://x.example.com/" + "a" * 2048, False, "at most"),
    ],
)
def test_webhook_urls_are_https_to_public_hosts_only(url, loopback, problem):
    found = webhooks.url_problem(url, loopback)
    assert (found is None) if problem is None else (problem in found), found


def test_a_name_that_resolves_into_the_network_is_refused_at_delivery():
    with pytest.raises(PermanentError, match="loopback"):
        deliver.resolve("localhost", 443, loopback=False)
    assert deliver.resolve("localhost", 443, loopback=True) in ("127.0.0.1", "::1")


class _Receiver(http.server.BaseHTTPRequestHandler):
    answers: list[int] = []
    got: list[tuple[dict, bytes]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.got.append((dict(self.headers), body))
        status = self.answers.pop(0) if self.answers else 204
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    _Receiver.answers, _Receiver.got = [], []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook?team=a", _Receiver
    server.shutdown()


def _config(url, **kw):
    return Config(webhook_urls=url, webhook_secret=kw.pop("secret", webhooks.new_secret()), **kw)


def test_a_delivery_is_the_body_as_published_signed_and_a_5xx_is_retried(receiver):
    url, got = receiver
    config = _config(url, webhook_loopback=1)
    got.answers[:] = [503]
    with pytest.raises(TransientError, match="1 of 1"):
        deliver.deliver(config, "", "succeeded", BODY, age=0)
    assert deliver.deliver(config, "", "succeeded", BODY, age=0) == 1
    (h1, b1), (h2, b2) = got.got
    assert b1 == b2 == BODY and h1["webhook-id"] == h2["webhook-id"]
    assert h2["Host"] == url.split("/")[2] and h2["Content-Type"] == "application/json"
    reference = standardwebhooks.Webhook(config.webhook_secret)
    assert reference.verify(b2, h2)["batch_id"] == "b-1"


def test_a_4xx_is_not_retried_and_an_old_failure_is_given_up(receiver):
    url, got = receiver
    config = _config(url, webhook_loopback=1, webhook_retry_s=60)
    got.answers[:] = [410]
    assert deliver.deliver(config, "", "failed", BODY, age=0) == 0  # logged, acknowledged
    got.answers[:] = [500]
    assert deliver.deliver(config, "", "failed", BODY, age=61) == 0  # past the retry window
    assert len(got.got) == 2


def test_nothing_is_posted_to_loopback_outside_the_local_stack(receiver):
    url, got = receiver
    assert deliver.deliver(_config(url), "", "succeeded", BODY, age=0) == 0
    assert deliver.deliver(_config(url, webhook_loopback=1, secret=""), "", "x", BODY, 0) == 0
    assert got.got == []


def test_the_cli_verifies_from_flags_and_says_what_is_missing(tmp_path, capsys, monkeypatch):
    from dropbatch.cli import main

    secret = webhooks.new_secret()
    (tmp_path / "body").write_bytes(BODY)
    h = webhooks.sign(secret, "msg_9", BODY)
    flags = ["--id", h["webhook-id"], "--timestamp", h["webhook-timestamp"]]
    monkeypatch.delenv("DROPBATCH_WEBHOOK_SECRET", raising=False)
    assert main(["webhook", "verify", str(tmp_path / "body"), *flags]) == 2
    assert "no secret" in capsys.readouterr().err
    monkeypatch.setenv("DROPBATCH_WEBHOOK_SECRET", secret)
    argv = ["webhook", "verify", str(tmp_path / "body"), *flags]
    assert main([*argv, "--signature", h["webhook-signature"]]) == 0
    assert capsys.readouterr().out == "verified: msg_9\n"
    assert main(argv) == 1 and "unsigned" in capsys.readouterr().out
