"""The submit function's own work on a file, in one process and no I/O: validating every line, against validating
and staging it (what submit.Stager does per request: the line labels spliced into the line's bytes, the keys
sidecar line, the chunk's list of lines joined once per 16 MB). Prints one JSON line:
{"bench": "stage", "bytes", "requests", "validate_cpu_s", "stage_cpu_s", "ratio"}, ratio = stage / validate
(goal: at most 1.1; bench-submit's cpu_ratio adds reading and writing every byte over HTTP). The best of two
runs of each counts: this machine's speed drifts.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "functions"), str(ROOT / "tests")]


def cpu(path: Path, stage: bool) -> float:
    from dropbatch import families, keys, submit
    from dropbatch.config import Config
    from dropbatch.lineio import Reader
    from dropbatch.validate import Validator

    config = Config()
    validator = Validator(config, path.name)
    chunk: list[bytes] = []
    sidecar, size = bytearray(), 0
    start = time.process_time()
    with open(path, "rb") as f:
        for lineno, raw in Reader(f, path.name, config, validator.report).lines():
            fed = validator.feed(lineno, raw)
            if not stage or fed is None:
                continue
            key, request, plain = fed
            staged = submit.spliced(raw, keys.line_labels_json(lineno, keys.label_digits(lineno))) \
                if plain and "labels" not in request and submit.staged_as_is(request) else None
            staged = staged or families.GEMINI.stage(request, lineno)
            chunk.append(staged)
            size += len(staged)
            sidecar += b"[%d,null,%d]\n" % (lineno, len(staged))
            if size >= submit.CHUNK_BYTES:
                b"".join(chunk)
                chunk.clear()
                sidecar.clear()
                size = 0
    assert validator.finish().valid
    return time.process_time() - start


def main() -> None:
    from bench.bench_submit import write_file

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stage.jsonl"
        requests_n, size = write_file(path, int(float(os.environ.get("BENCH_STAGE_MB", "300")) * 1e6))
        validate = min(cpu(path, False) for _ in range(2))
        stage = min(cpu(path, True) for _ in range(2))
    print(json.dumps({"bench": "stage", "bytes": size, "requests": requests_n, "validate_cpu_s": round(validate, 2),
                      "stage_cpu_s": round(stage, 2), "ratio": round(stage / validate, 3)}))


if __name__ == "__main__":
    main()
