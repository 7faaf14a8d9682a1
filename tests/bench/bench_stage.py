"""The submit function's own work on a file, in one process and no I/O: validating every line,
against validating and staging it through the real staging.Stager (the line labels put after the
request's bytes, the keys sidecar line, the chunk joined once per 16 MB), its uploads skipped.
Prints one JSON line: {"bench": "stage", "bytes", "requests", "validate_cpu_s", "stage_cpu_s",
"ratio", "instructions_ratio"}, ratio = stage / validate in CPU seconds, the best of two runs of
each (this machine's speed drifts by more than the gap measured), and instructions_ratio the same
two passes counted in instructions by valgrind's callgrind on a BENCH_STAGE_CALLGRIND_MB (default
20) file: a count that does not drift with the machine's load (null when valgrind is not installed).
Goal: at most 1.1. bench-submit adds reading and writing every byte over HTTP.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "functions"), str(ROOT / "tests"), str(ROOT / "tests" / "bench")]

import counted  # noqa: E402


def work(path: Path, stage: bool) -> None:
    import types

    from dropbatch import staging
    from dropbatch.batch import new_claim
    from dropbatch.config import Config
    from dropbatch.lineio import Reader
    from dropbatch.validate import Validator

    class Unsent(staging.Stager):
        def _upload(self, name: str, *bodies: bytes) -> None:
            pass

    config = Config()
    validator = Validator(config, path.name)
    stager = (
        Unsent(
            types.SimpleNamespace(
                config=config, path=lambda batch_id, name: f"batches/{batch_id}/{name}"
            ),
            new_claim("bench", "gs://b/o", "o", 1, "bench", 60),
        )
        if stage
        else None
    )
    with open(path, "rb") as f:
        lines = Reader(f, path.name, config, validator.report).lines()
        if stager:
            assert stager.stage(lines, validator, float("inf")) is None
        else:
            for lineno, raw in lines:
                validator.feed(lineno, raw)
    if stager:
        stager.checkpoint()
        stager.close()
    assert validator.finish().valid


def cpu(path: Path, stage: bool) -> float:
    start = time.process_time()
    work(path, stage)
    return time.process_time() - start


def instructions(path: Path) -> float | None:
    """Validating and staging `path` against validating it, in instructions counted by callgrind."""
    if not counted.available():
        return None
    validate, stage = counted.run(__file__, "--callgrind", str(path))
    return round(stage / validate, 3)


def under_callgrind(path: Path) -> None:
    work(path, True)  # the first pass pays the imports
    for stage in (False, True):
        with counted.region():
            work(path, stage)


def main() -> None:
    from bench.bench_submit import write_file

    with tempfile.TemporaryDirectory() as tmp:
        path, small = Path(tmp) / "stage.jsonl", Path(tmp) / "small.jsonl"
        requests_n, size = write_file(
            path, int(float(os.environ.get("BENCH_STAGE_MB", "300")) * 1e6)
        )
        validate = min(cpu(path, False) for _ in range(2))
        stage = min(cpu(path, True) for _ in range(2))
        write_file(small, int(float(os.environ.get("BENCH_STAGE_CALLGRIND_MB", "20")) * 1e6))
        counted = instructions(small)
    print(
        json.dumps(
            {
                "bench": "stage",
                "bytes": size,
                "requests": requests_n,
                "validate_cpu_s": round(validate, 2),
                "stage_cpu_s": round(stage, 2),
                "ratio": round(stage / validate, 3),
                "instructions_ratio": counted,
            }
        )
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--callgrind"]:
        under_callgrind(Path(sys.argv[2]))
    else:
        main()
