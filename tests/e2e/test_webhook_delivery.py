"""Signed webhooks on the local stack (docs/contracts.md, Webhooks): a real HTTP receiver gets each
`running` and terminal message once, signed so that the standardwebhooks package (the
specification's reference verifier) accepts it, after failing its first two tries;
`dropbatch webhook verify` refuses unsigned, forged and replayed deliveries; a URL that is not https
or points into a network is a clear rejection, and nothing is lost."""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path

import orjson
import pytest
import standardwebhooks
from conftest import drop, dropbatch, read_json, req

DELIVERED = {"running", "rejected", "succeeded", "partially_succeeded", "failed"}


class Receiver(http.server.ThreadingHTTPServer):
    """What a user's endpoint does: verify, drop an id seen before, answer 2xx; this one answers
    503 to its first `fail_first` requests."""

    def __init__(self, secret: str, fail_first: int = 0):
        super().__init__(("127.0.0.1", 0), Handler)
        self.verifier = standardwebhooks.Webhook(secret)
        self.fail_first = fail_first
        self.requests: list[tuple[dict, bytes]] = []
        self.accepted: dict[str, dict] = {}  # webhook-id -> message
        self.duplicates = 0
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/dropbatch?team=a"

    def of(self, batch_id: str) -> list[dict]:
        with self.lock:
            return [m for m in self.accepted.values() if m["batch_id"] == batch_id]

    def wait_for(self, batch_id: str, state: str, timeout: float = 90) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [m for m in self.of(batch_id) if m["state"] == state]
            if found:
                return found[0]
            time.sleep(0.2)
        raise AssertionError(f"the receiver got no {state} for {batch_id}: {self.of(batch_id)}")


class Handler(http.server.BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        headers = {k.lower(): v for k, v in self.headers.items()}
        server = self.server
        with server.lock:
            server.requests.append((headers, body))
            failing = len(server.requests) <= server.fail_first
        status = 503
        if not failing:
            try:
                message = server.verifier.verify(body, headers)
                status = 204
            except standardwebhooks.webhooks.WebhookVerificationError:
                status = 401
        if status == 204:
            with server.lock:
                if headers["webhook-id"] in server.accepted:
                    server.duplicates += 1
                else:
                    server.accepted[headers["webhook-id"]] = message
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver(stack):
    servers = []

    def make(fail_first: int = 0) -> Receiver:
        servers.append(Receiver(stack.webhook_secret, fail_first))
        return servers[-1]

    yield make
    for s in servers:
        s.shutdown()
        s.server_close()


def test_each_message_reaches_the_receiver_once_signed_after_two_failures(
    stack, bucket, inbox, vertex, receiver
):
    hook = receiver(fail_first=2)
    vertex.faults(running_s=4)  # long enough for `running` messages
    lines = [req(f"w{i}") for i in range(50)]  # two jobs at 40 a job
    _, batch_id = drop(bucket, "hooked.jsonl", lines, {"webhook": hook.url})
    inbox.wait_for(batch_id, "succeeded", timeout=120)
    got = hook.wait_for(batch_id, "succeeded")
    assert got["counts"]["succeeded"] == 50
    # every message the topic carried in a delivered state, and nothing else, was accepted once
    time.sleep(3)  # let the last running message's retries land too
    published = sorted(
        orjson.dumps(
            {k: v for k, v in m.items() if k != "_attributes"}, option=orjson.OPT_SORT_KEYS
        )
        for m in inbox.of(batch_id)
        if m["state"] in DELIVERED
    )
    accepted = sorted(orjson.dumps(m, option=orjson.OPT_SORT_KEYS) for m in hook.of(batch_id))
    assert accepted == published
    assert any(m["state"] == "running" for m in hook.of(batch_id))
    assert not any(m["state"] == "submitted" for m in hook.of(batch_id))
    assert [s for h, b in hook.requests[:2] for s in [h["webhook-id"]]], "two failed tries"
    # the first two requests failed, and each was tried again with the same id
    first_ids = [h["webhook-id"] for h, _ in hook.requests[:2]]
    assert all(i in hook.accepted for i in first_ids)
    assert len(hook.requests) == len(hook.accepted) + 2 + hook.duplicates


def test_verify_refuses_unsigned_forged_and_replayed_deliveries(
    stack, bucket, inbox, vertex, receiver, tmp_path
):
    hook = receiver()
    _, batch_id = drop(bucket, "verify-me.jsonl", [req("v")], {"webhook": hook.url})
    hook.wait_for(batch_id, "succeeded")
    headers, body = next(
        (h, b) for h, b in hook.requests if orjson.loads(b)["batch_id"] == batch_id
    )
    secret = tmp_path / "secret"
    secret.write_text(stack.webhook_secret)
    (tmp_path / "body.json").write_bytes(body)
    (tmp_path / "headers.json").write_bytes(orjson.dumps(headers))
    seen = tmp_path / "seen.txt"
    args = ["webhook", "verify", tmp_path / "body.json", "--secret-file", secret, "--json"]

    def verify(*extra):
        r = dropbatch(stack, *args, *extra, timeout=60)
        return r.returncode, orjson.loads(r.stdout)

    code, out = verify("--headers", tmp_path / "headers.json", "--seen", seen)
    assert code == 0 and out == {"verified": True, "webhook_id": headers["webhook-id"]}
    code, out = verify("--headers", tmp_path / "headers.json", "--seen", seen)
    assert code == 1 and out["reason"].startswith("replayed")
    code, out = verify()  # no headers at all
    assert code == 1 and out["reason"].startswith("unsigned")
    code, out = verify(
        "--id", headers["webhook-id"], "--timestamp", headers["webhook-timestamp"],
        "--signature", "v1," + "A" * 44,
    )  # fmt: skip
    assert code == 1 and out["reason"].startswith("no signature matches")
    (tmp_path / "body.json").write_bytes(body.replace(b"succeeded", b"failed"))
    code, out = verify("--headers", tmp_path / "headers.json")
    assert code == 1 and out["reason"].startswith("no signature matches")


@pytest.mark.parametrize(
    "url, reason",
    [
        ("https://10.1.2.3/hook", "private"),
        ("https://169.254.169.254/computeMetadata/v1/", "private"),
        ("https://metadata.google.internal/hook", "metadata server"),
        ("http://hooks.example.com/hook", "https only"),
    ],
)
def test_a_bad_webhook_url_is_a_clear_rejection(stack, bucket, inbox, vertex, url, reason):
    name = f"bad-hook-{abs(hash(url)) % 10_000}.jsonl"
    _, batch_id = drop(bucket, name, [req("x")], {"webhook": url})
    done = inbox.wait_for(batch_id, "rejected", timeout=60)
    report = read_json(bucket, f"batches/{batch_id}/report.json")
    assert [(e["code"], e["field"]) for e in report["errors"]] == [
        ("bad_webhook", "metadata.webhook")
    ]
    assert reason in report["errors"][0]["message"] and "bad_webhook" in done["error"]
    assert url not in orjson.dumps(done).decode(), "the message quotes no user text"
    assert vertex.stats()["calls"].get("create", 0) == 0
    assert bucket.blob(f"incoming/{name}").exists()


def test_a_rejected_batch_is_posted_and_loopback_is_refused_outside_the_stack(
    stack, bucket, inbox, vertex, receiver
):
    from dropbatch.local import stack as local

    hook = receiver()
    _, batch_id = drop(
        bucket, "hook-broken.jsonl", [b'{"request": {"contents": 1}}'], {"webhook": hook.url}
    )
    inbox.wait_for(batch_id, "rejected", timeout=60)
    assert hook.wait_for(batch_id, "rejected")["counts"]["errors"] == 1
    # in the cloud (no DROPBATCH_WEBHOOK_LOOPBACK) a loopback endpoint is refused
    local.restart_function("submit", DROPBATCH_WEBHOOK_LOOPBACK="0")
    try:
        _, batch_id = drop(bucket, "hook-loopback.jsonl", [req("l")], {"webhook": hook.url})
        inbox.wait_for(batch_id, "rejected", timeout=60)
        report = read_json(bucket, f"batches/{batch_id}/report.json")
        assert report["errors"][0]["code"] == "bad_webhook"
        assert "https only" in report["errors"][0]["message"]
    finally:
        local.restart_function("submit")
    assert hook.of(batch_id) == [], "a batch whose webhook was refused posts nothing to it"


def test_the_webhook_function_reads_ledgers_only_by_infras_grant(
    stack, bucket, inbox, vertex, receiver, infra_copy
):
    """Its one storage grant is webhooks.tf's webhook_reads_ledgers: without it the stack refuses
    the ledger read, the batch's endpoint gets nothing and the log names the permission."""
    hook = receiver()
    infra_copy(
        'resource "google_storage_bucket_iam_member" "webhook_reads_ledgers" {',
        'resource "google_storage_bucket_iam_member" "webhook_reads_ledgers" {\n  count  = 0',
        file="webhooks.tf",
    )
    _, batch_id = drop(bucket, "hook-no-grant.jsonl", [req("g")], {"webhook": hook.url})
    inbox.wait_for(batch_id, "succeeded", timeout=90)
    log = Path(stack.logs) / "webhook.log"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and batch_id not in log.read_text():
        time.sleep(0.2)
    refused = [
        orjson.loads(line)
        for line in log.read_text().splitlines()
        if batch_id in line and "webhook_refused" in line
    ]
    assert refused and "storage.objects.get" in refused[0]["error"], refused
    assert hook.requests == []
