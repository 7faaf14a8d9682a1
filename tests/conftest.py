"""Shared fixtures: the local stack is started once per test run (session scope) and stopped at the
end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest
import requests
from dropbatch.config import Config

# The stack under test splits files past 40 requests into several jobs, so small files exercise that
# path. results.jsonl is ordered in buckets of 10 lines, so a small batch has many buckets to order
# and compose. At 40 a job the fault tests' files need up to 63 jobs: the stack has no lifecycle
# rule to outgrow.
STACK_ENV = {
    "DROPBATCH_MAX_JOB_REQUESTS": "40",
    "DROPBATCH_MAX_FILE_JOBS": "100",
    "DROPBATCH_CLAIM_LEASE_S": "8",
    "DROPBATCH_SPLIT_BUDGET_S": "60",
    "DROPBATCH_RESULTS_BUCKET_LINES": "10",
    "DROPBATCH_OUTBOX_RETRY_S": "2",
    "DROPBATCH_LIST_SETTLE_S": "3",
}


@pytest.fixture
def config() -> Config:
    return Config()


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    from dropbatch.local import stack as local

    state = tmp_path_factory.mktemp("stack")
    saved = {k: os.environ.get(k) for k in (*STACK_ENV, "DROPBATCH_STATE_DIR")}
    os.environ.update(STACK_ENV, DROPBATCH_STATE_DIR=str(state))
    started = time.monotonic()
    try:
        running = local.up()
    except local.StackError as exc:
        if os.environ.get("CI") or "emulator" not in str(exc) and "Java" not in str(exc):
            raise  # in CI, and for any other failure, a missing stack is a failure
        pytest.skip(f"no local stack on this machine: {exc}")
    running.up_seconds = time.monotonic() - started
    os.environ.update(running.client_env())
    from dropbatch.config import get_config

    get_config.cache_clear()
    yield running
    local.down(wipe=True)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


class Emulator:
    def __init__(self, url: str):
        self.url = url

    def faults(self, **values) -> dict:
        r = requests.post(f"{self.url}/_emulator/faults", json=values, timeout=10)
        r.raise_for_status()
        return r.json()

    def reset(self) -> None:
        requests.post(f"{self.url}/_emulator/reset", timeout=10).raise_for_status()

    def stats(self) -> dict:
        return requests.get(f"{self.url}/_emulator/stats", timeout=10).json()


@pytest.fixture
def vertex(stack):
    emulator = Emulator(stack.vertex)
    emulator.reset()
    emulator.faults(queued_s=0.1, pending_s=0.1, running_s=0.1)
    yield emulator
    emulator.reset()


class Inbox:
    """A pull subscription on the notifications topic: what a user's consumer would see."""

    def __init__(self, stack):
        from google.cloud import pubsub_v1

        self.client = pubsub_v1.SubscriberClient()
        self.path = self.client.subscription_path(stack.project, f"test-{uuid.uuid4().hex[:8]}")
        self.client.create_subscription(
            name=self.path, topic=f"projects/{stack.project}/topics/{stack.topics['notifications']}"
        )
        self.messages: list[dict] = []

    def pull(self, timeout: float = 1.0) -> None:
        from google.api_core.exceptions import DeadlineExceeded

        try:
            r = self.client.pull(subscription=self.path, max_messages=100, timeout=timeout)
        except DeadlineExceeded:
            return
        if r.received_messages:
            for m in r.received_messages:
                body = orjson.loads(m.message.data)
                body["_attributes"] = dict(m.message.attributes)
                self.messages.append(body)
            self.client.acknowledge(
                subscription=self.path, ack_ids=[m.ack_id for m in r.received_messages]
            )

    def of(self, batch_id: str) -> list[dict]:
        return [m for m in self.messages if m["batch_id"] == batch_id]

    def wait_for(self, batch_id: str, states, timeout: float = 60) -> dict:
        states = {states} if isinstance(states, str) else set(states)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.of(batch_id):
                if m["state"] in states:
                    return m
            self.pull()
        raise AssertionError(
            f"no {states} message for {batch_id} in {timeout} s; got {self.of(batch_id)}"
        )

    def close(self) -> None:
        self.client.delete_subscription(subscription=self.path)


@pytest.fixture
def inbox(stack):
    box = Inbox(stack)
    yield box
    box.close()


@pytest.fixture
def bucket(stack):
    from dropbatch.store import storage_client

    return storage_client(stack.project).bucket(stack.bucket)


def drop(bucket, name: str, lines, metadata=None):
    """Upload a batch file as a user would; returns (blob, batch_id)."""
    from dropbatch.keys import batch_id

    blob = bucket.blob(f"incoming/{name}")
    if metadata:
        blob.metadata = metadata
    blob.upload_from_string(
        b"".join((l if isinstance(l, bytes) else orjson.dumps(l)) + b"\n" for l in lines)
    )
    return blob, batch_id(bucket.name, blob.name, blob.generation)


def settled(bucket, inbox, batch_id: str, timeout: float = 60) -> list[dict]:
    """The batch's messages once nothing can add to them: its ledger is finished with the terminal
    message recorded and it is off the active index, so no sweep, split task or forced re-send can
    send again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        blob = bucket.blob(f"batches/{batch_id}/ledger.json")
        ledger = (
            orjson.loads(blob.download_as_bytes())
            if blob.exists()
            else {"state": None, "notified": {}}
        )
        if (
            ledger["state"] in ("done", "rejected", "failed")
            and ledger["notified"].get("terminal")
            and not bucket.blob(f"batches/_active/{batch_id}").exists()
        ):
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"batch {batch_id} did not settle in {timeout} s")
    inbox.pull()
    return inbox.of(batch_id)


# the states a batch's messages have before its end
NOT_TERMINAL = ("submitted", "running", "stalled")


def dropbatch(stack, *args, timeout=240):
    """The CLI as a user runs it, against the stack, in a process of its own."""
    env = {**os.environ, **stack.client_env()}
    return subprocess.run(
        [sys.executable, "-m", "dropbatch", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def read_json(bucket, path):
    return orjson.loads(bucket.blob(path).download_as_bytes())


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} never answered")


def req(text: str, **extra) -> dict:
    return {"request": {"contents": [{"role": "user", "parts": [{"text": text}]}], **extra}}


def jobs_of(stack, batch_id: str) -> list:
    """The batch's jobs as Vertex lists them (by the label dropbatch gives each)."""
    r = owner().get(
        f"{stack.vertex}/v1/projects/{stack.project}/locations/us-central1/batchPredictionJobs",
        params={"filter": f'labels.dropbatch_batch="{batch_id}"'},
    )
    return r.json().get("batchPredictionJobs", [])


def owner():
    """An HTTP session with the project owner's credentials, what `dropbatch local env` gives a
    user: the stack refuses calls to Vertex AI without a token (401), as Google does."""
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    return AuthorizedSession(
        google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])[0]
    )


@pytest.fixture
def infra_copy(stack, tmp_path):
    """A copy of infra/ to break; the stack enforces it while the test runs, then infra/ again."""
    from dropbatch.local.provision import write_policy

    copy = tmp_path / "infra"
    shutil.copytree(Path(__file__).resolve().parents[1] / "infra", copy)

    def apply(old: str, new: str, file: str = "iam.tf") -> None:
        path = copy / file
        text = path.read_text()
        assert old in text, old
        path.write_text(text.replace(old, new))
        write_policy(stack, copy)

    yield apply
    write_policy(stack)
