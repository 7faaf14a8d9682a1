"""Instruction counts from valgrind's callgrind, for CPU ratios that this machine's load does not
move.

CPU seconds on these machines drift by more than the gaps the benchmarks measure (the same
validation of the same file took 3.1 s and 1.9 s in one process minutes apart); callgrind counts the
instructions a process executes, which is the same run after run (the env skill: "repeatable for the
same binary, inputs and environment, whatever else the machine is doing"). It counts user space
only: the kernel's side of a read or a send is not in it. `run` starts a Python script under
callgrind; the script marks each measured stretch with `region()`, and `run` returns the stretches'
counts in order.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def available() -> bool:
    """valgrind is installed and BENCH_CALLGRIND is not "off" (the smoke runs in `make test` turn
    the slowest counted half off: Python under callgrind runs some fifty times slower)."""
    if os.environ.get("BENCH_CALLGRIND", "on") == "off":
        return False
    return bool(shutil.which("valgrind") and shutil.which("callgrind_control"))


def run(script: str, *args: str, env: dict | None = None) -> list[int]:
    """Run `python script args...` under callgrind (in `env`, else this process's environment); the
    instruction count of each region() it went through."""
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}/cg.%p",
                sys.executable,
                script,
                *args,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        dumps = sorted(Path(out).glob("cg.*.*"), key=lambda p: int(p.name.rsplit(".", 1)[1]))
        return [_total(dump) for dump in dumps]


def _total(dump: Path) -> int:
    for line in dump.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise ValueError(f"no instruction total in {dump}")


@contextlib.contextmanager
def region():
    """In a script under callgrind: count what runs inside on its own (zeroed before, dumped
    after)."""
    _control("-z")
    yield
    _control("-d")


def _control(flag: str) -> None:
    subprocess.run(["callgrind_control", flag, str(os.getpid())], check=True, capture_output=True)
