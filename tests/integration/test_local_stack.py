"""`dropbatch local up | status | down` from the command line: no-op second up, exact status, nothing left behind."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import psutil
import pytest

pytestmark = pytest.mark.stack


def dropbatch(env, *args):
    return subprocess.run([sys.executable, "-m", "dropbatch", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_up_status_down(tmp_path, stack):
    env = {**os.environ, "DROPBATCH_STATE_DIR": str(tmp_path), "DROPBATCH_BUCKET": "other-bucket"}
    for k in ("STORAGE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST", "DROPBATCH_VERTEX_ENDPOINT"):
        env.pop(k, None)
    up = dropbatch(env, "local", "up")
    assert up.returncode == 0, up.stderr
    try:
        status = dropbatch(env, "local", "status", "--json")
        info = orjson.loads(status.stdout)
        assert set(info) == {"project", "bucket", "storage", "pubsub", "vertex", "topics"}
        assert set(info["topics"]) == {"uploads", "notifications", "sweep", "split"}
        assert info["topics"]["notifications"] == "dropbatch-notifications" and info["bucket"] == "other-bucket"
        pids = orjson.loads((tmp_path / "stack.json").read_bytes())["pids"]
        assert set(pids) == {"pubsub", "storage", "vertex", "submit", "status", "split", "ticker"}
        again = dropbatch(env, "local", "up", "--json")
        assert again.returncode == 0 and orjson.loads(again.stdout) == info
        human = dropbatch(env, "local", "status")
        assert str(tmp_path / "logs") in human.stdout
        children = {p.pid for pid in pids.values() for p in [psutil.Process(pid), *psutil.Process(pid).children(
            recursive=True)]}
    finally:
        down = dropbatch(env, "local", "down")
    assert down.returncode == 0
    alive = [p for p in children if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    assert dropbatch(env, "local", "status").returncode == 1


def test_missing_emulator_says_how_to_install(tmp_path):
    env = {**os.environ, "DROPBATCH_STATE_DIR": str(tmp_path), "PATH": str(tmp_path)}
    out = dropbatch(env, "local", "up")
    assert out.returncode == 2
    assert "google-cloud-cli-pubsub-emulator" in out.stderr and "Traceback" not in out.stderr
