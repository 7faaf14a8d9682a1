"""The CLI is a face, not a launcher: status, list and cancel never start a stack on their own."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "args", [["status", "some-batch-0123456789"], ["list"], ["cancel", "some-batch-0123456789"]]
)
def test_without_a_target_they_say_how_to_point_them_at_one(tmp_path, args):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DROPBATCH_", "STORAGE_EMULATOR", "PUBSUB_EMU"))
    }
    env["DROPBATCH_STATE_DIR"] = str(tmp_path / "state")
    out = subprocess.run(
        [sys.executable, "-m", "dropbatch", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "DROPBATCH_BUCKET" in out.stderr and "dropbatch local up" in out.stderr
    assert "starting the local stack" not in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "state").exists() or not any((tmp_path / "state").rglob("*.json")), (
        "a stack was started"
    )
