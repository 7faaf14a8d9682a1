"""`dropbatch local down` signals only the processes `up` started: a stale state file never kills
another."""

from __future__ import annotations

import os
import subprocess
import time

import orjson
import pytest


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("DROPBATCH_STATE_DIR", str(tmp_path))
    return tmp_path


def write_state(state, pids: dict, idents: dict) -> None:
    (state / "stack.json").write_bytes(
        orjson.dumps(
            {
                "project": "p",
                "bucket": "b",
                "ports": {},
                "pids": pids,
                "topics": {},
                "logs": str(state),
                "started": 0.0,
                "idents": idents,
            }
        )
    )


def wait_gone(proc, timeout=5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return True
        time.sleep(0.02)
    return False


def test_a_stale_pid_is_left_alone(state):
    from dropbatch.local import stack

    other = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        write_state(state, {"storage": other.pid}, {str(other.pid): "12345:some other program"})
        assert stack.down() is True
        assert not wait_gone(other, 1.0), "a process that is not ours was signalled"
        assert not (state / "stack.json").exists()
        write_state(state, {"storage": other.pid}, {})  # an old state file without identities
        stack.down()
        assert not wait_gone(other, 0.5)
    finally:
        other.kill()
        other.wait()


def test_its_own_process_is_stopped(state):
    from dropbatch.local import stack

    mine = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        write_state(state, {"storage": mine.pid}, {str(mine.pid): stack._identity(mine.pid)})
        assert stack.down() is True
        assert wait_gone(mine)
    finally:
        if mine.poll() is None:
            mine.kill()
        mine.wait()


def test_down_keeps_the_bucket_files_unless_wiped(state):
    from dropbatch.local import processes, stack

    root = processes.gcs_root()
    os.makedirs(root, exist_ok=True)
    try:
        (open(os.path.join(root, "kept"), "w")).close()
        write_state(state, {}, {})
        stack.down()
        assert os.path.exists(os.path.join(root, "kept"))
        write_state(state, {}, {})
        stack.down(wipe=True)
        assert not os.path.exists(root)
    finally:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
