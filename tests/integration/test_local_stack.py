"""`dropbatch local up | status | down` from the command line: no-op second up, exact status,
nothing left behind."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import psutil
import pytest

pytestmark = pytest.mark.stack


def dropbatch(env, *args):
    return subprocess.run(
        [sys.executable, "-m", "dropbatch", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_up_status_down(tmp_path, stack):
    env = {**os.environ, "DROPBATCH_STATE_DIR": str(tmp_path), "DROPBATCH_BUCKET": "other-bucket"}
    for k in (
        "STORAGE_EMULATOR_HOST",
        "PUBSUB_EMULATOR_HOST",
        "DROPBATCH_VERTEX_ENDPOINT",
        "BIGQUERY_EMULATOR_HOST",
    ):
        env.pop(k, None)
    up = dropbatch(env, "local", "up")
    assert up.returncode == 0, up.stderr
    try:
        status = dropbatch(env, "local", "status", "--json")
        info = orjson.loads(status.stdout)
        assert set(info) == {
            "project",
            "bucket",
            "storage",
            "pubsub",
            "vertex",
            "bigquery",
            "topics",
            "webhook_secret",  # what the webhook function signs with (docs/contracts.md, Webhooks)
        }
        assert set(info["topics"]) == {"uploads", "notifications", "sweep", "split"}
        assert (
            info["topics"]["notifications"] == "dropbatch-notifications"
            and info["bucket"] == "other-bucket"
        )
        pids = orjson.loads((tmp_path / "stack.json").read_bytes())["pids"]
        assert set(pids) == {
            "pubsub",
            "storage",
            "vertex",
            "submit",
            "status",
            "split",
            "webhook",
            "ticker",
            "gateway",
            "bigquery",
        }
        again = dropbatch(env, "local", "up", "--json")
        assert again.returncode == 0 and orjson.loads(again.stdout) == info
        human = dropbatch(env, "local", "status")
        assert str(tmp_path / "logs") in human.stdout
        children = {
            p.pid
            for pid in pids.values()
            for p in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        }
    finally:
        down = dropbatch(env, "local", "down")
    assert down.returncode == 0
    alive = [
        p
        for p in children
        if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
    ]
    assert alive == []
    assert dropbatch(env, "local", "status").returncode == 1


def test_missing_emulator_says_how_to_install(tmp_path):
    env = {**os.environ, "DROPBATCH_STATE_DIR": str(tmp_path), "PATH": str(tmp_path)}
    out = dropbatch(env, "local", "up")
    assert out.returncode == 2
    assert "google-cloud-cli-pubsub-emulator" in out.stderr and "Traceback" not in out.stderr


def test_up_with_an_openai_compatible_responder(tmp_path, stack):
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            data = json.dumps(
                {"choices": [{"message": {"content": f"model {body['model']} says hi"}}]}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {**os.environ, "DROPBATCH_STATE_DIR": str(tmp_path)}
    for k in [k for k in env if k.startswith("DROPBATCH_") and k != "DROPBATCH_STATE_DIR"] + [
        "STORAGE_EMULATOR_HOST",
        "PUBSUB_EMULATOR_HOST",
    ]:
        env.pop(k, None)
    try:
        up = dropbatch(
            env,
            "local",
            "up",
            "--responder-url",
            f"http://127.0.0.1:{server.server_port}/v1",
            "--responder-model",
            "tiny",
        )
        assert up.returncode == 0, up.stderr
        src = tmp_path / "one.jsonl"
        src.write_text(
            '{"key": "q", "request": {"contents": [{"role": "user", "parts": [{"text": '
            '"hello"}]}]}}\n'
        )
        run = dropbatch(env, "run", str(src), "--out", str(tmp_path / "out"), "--json")
        assert run.returncode == 0, run.stderr
        result = orjson.loads((tmp_path / "out" / "results.jsonl").read_bytes().splitlines()[0])
        assert result["text"] == "model tiny says hi"
    finally:
        dropbatch(env, "local", "down")
        server.shutdown()


@pytest.mark.timeout(60)
def test_topics_are_made_in_the_stacks_own_emulator_whatever_the_environment_names(stack):
    """`dropbatch local up` from a shell (or a test worker) whose PUBSUB_EMULATOR_HOST names another
    emulator made its topics there: the bench smoke runs, started on a worker whose e2e stack was
    up, failed with "404 Subscription topic does not exist"."""
    import dataclasses

    from conftest import free_port
    from dropbatch.local import provision
    from google.cloud import pubsub_v1

    theirs = dataclasses.replace(stack, project=f"other-{os.getpid()}")
    saved = os.environ["PUBSUB_EMULATOR_HOST"]
    os.environ["PUBSUB_EMULATOR_HOST"] = f"127.0.0.1:{free_port()}"  # nothing answers there
    try:
        provision._create_topics(theirs)
    finally:
        os.environ["PUBSUB_EMULATOR_HOST"] = saved
    topics = {
        t.name
        for t in pubsub_v1.PublisherClient().list_topics(project=f"projects/{theirs.project}")
    }
    assert f"projects/{theirs.project}/topics/{stack.topics['notifications']}" in topics
