"""Validation speed and memory: dropbatch against orjson.loads + json_format.ParseDict, same file,
same run.

Prints one JSON line: {"bench": "validate", "requests", "mb", "baseline_us_per_line",
"dropbatch_us_per_line", "ratio", "dropbatch_peak_rss_mb", "baseline_peak_rss_mb", "same_verdicts"}.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "functions")]

from corpus import bench_request, write_jsonl  # noqa: E402

BASELINE = """
import sys, resource, orjson
from google.protobuf import json_format
from google.cloud.aiplatform_v1.types import prediction_service
M = prediction_service.GenerateContentRequest.pb()
bad = 0
with open(sys.argv[1], "rb") as f:
    for raw in f:
        try:
            json_format.ParseDict(orjson.loads(raw)["request"], M())
        except Exception:
            bad += 1
print(bad, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

OURS = """
import sys, resource
from dropbatch.config import Config
from dropbatch.validate import validate_path
r = validate_path(sys.argv[1], Config())
print(r.error_count, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def run(code: str, path: str) -> tuple[float, int, int]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "functions")}
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code, path], check=True, capture_output=True, text=True, env=env
    )
    elapsed = time.perf_counter() - start
    bad, rss_kb = map(int, out.stdout.split())
    return elapsed, bad, rss_kb // 1024


def main() -> None:
    n = int(os.environ.get("BENCH_N", "100000"))
    rng = random.Random(42)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.jsonl")
        write_jsonl(path, (bench_request(i, rng) for i in range(n)))
        size = os.path.getsize(path)
        base_s, base_bad, base_rss = run(BASELINE, path)
        ours_s, ours_bad, ours_rss = run(OURS, path)
    print(
        json.dumps(
            {
                "bench": "validate",
                "requests": n,
                "mb": round(size / 1e6, 1),
                "baseline_us_per_line": round(base_s / n * 1e6, 1),
                "dropbatch_us_per_line": round(ours_s / n * 1e6, 1),
                "ratio": round(base_s / ours_s, 2),
                "dropbatch_peak_rss_mb": ours_rss,
                "baseline_peak_rss_mb": base_rss,
                "same_verdicts": base_bad == ours_bad == 0,
            }
        )
    )


if __name__ == "__main__":
    main()
