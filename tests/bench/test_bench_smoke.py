"""Every `make bench-*` target runs to the end at a tiny size, so a broken benchmark fails `make
test` instead of being found by the next person who measures. Only that it runs and prints its
figures is checked here: the figures themselves are read at full size (docs/benchmarks.md), never
asserted in a test."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Each target's tiny size: the environment its script reads (the defaults are the full sizes).
TINY = {
    "bench-validate": {"BENCH_N": "2000"},
    "bench-coldstart": {"BENCH_RUNS": "1"},
    "bench-split": {"BENCH_N": "300", "BENCH_SEQ": "20"},
    "bench-split-memory": {"BENCH_INDEX_N": "10000", "BENCH_PRED_MB": "5"},
    "bench-stage": {"BENCH_STAGE_MB": "2", "BENCH_STAGE_CALLGRIND_MB": "0.2"},
    # its callgrind half imports the storage client under valgrind: minutes of both cores in a
    # loaded run, so it is left to the full-size run; bench-stage keeps its counted half
    "bench-submit": {"BENCH_SUBMIT_GB": "0.01", "BENCH_CALLGRIND": "off"},
    "bench-e2e": {"BENCH_N": "50"},
    "bench-retry": {"BENCH_RETRY_MB": "2"},
    "bench-iam": {"BENCH_IAM_OBJECTS": "100"},
    "bench-soak": {"SOAK_FILES": "2", "BENCH_N": "50"},
    "bench-slots": {"BENCH_SLOTS_FILES": "4", "BENCH_SLOTS_S": "3"},
    "bench-reuse": {"BENCH_N": "100", "BENCH_CHANGED": "2", "BENCH_JOB_S": "0.2"},
}


# targets whose recipe runs another target's scripts with other sizes: their dry run is checked, the
# scripts run once (bench-soak is bench_e2e.py with BENCH_FILES)
SAME_SCRIPTS = {"bench-soak": "bench-e2e"}


def bench_targets() -> list[str]:
    makefile = (ROOT / "Makefile").read_text()
    return re.findall(r"^(bench-[a-z0-9-]+):", makefile, flags=re.M)


def test_every_bench_target_has_a_tiny_size():
    assert sorted(bench_targets()) == sorted(TINY)


def dry_run(target: str, env: dict | None = None) -> str:
    return subprocess.run(
        ["make", "-n", target],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
    ).stdout


@pytest.mark.parametrize(("target", "runs_as"), sorted(SAME_SCRIPTS.items()))
def test_a_target_that_runs_another_targets_scripts(target, runs_as):
    """Its scripts are the other target's, and its sizes reach them (bench-soak's SOAK_FILES is
    bench_e2e.py's BENCH_FILES)."""

    def scripts(t):
        return re.findall(r"tests/bench/\w+\.py", dry_run(t))

    assert scripts(target) == scripts(runs_as)
    assert "BENCH_FILES=7 " in dry_run(target, {"SOAK_FILES": "7"})
    assert all("BENCH_FILES" in (ROOT / s).read_text() for s in scripts(target))


@pytest.mark.parametrize("target", sorted(set(TINY) - set(SAME_SCRIPTS)))
def test_bench_runs_to_the_end(target, tmp_path):
    env = {**os.environ, **TINY[target], "DROPBATCH_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run(
        ["make", "-s", target], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, (
        f"{target} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    )
    figures = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"bench"')]
    runs = len(
        re.findall(
            r"\.py\b",
            subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True).stdout,
        )
    )
    assert len(figures) == runs, (
        f"{target}: {runs} scripts, {len(figures)} lines of figures:\n{done.stdout[-2000:]}"
    )
