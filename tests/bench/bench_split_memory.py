"""Split memory: the input index for a million requests, and peak RSS while streaming a 1 GB
prediction file.

Each measurement runs `dropbatch split` in a fresh process and reads its peak RSS. Prints one JSON
line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]

RUN = """
import resource, sys, time
from dropbatch.config import Config
from dropbatch.split import split_local
t = time.perf_counter()
m = split_local(sys.argv[1], [sys.argv[2]], sys.argv[3], Config())
print(m["counts"]["succeeded"], m["counts"]["unmatched_outputs"], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
      round(time.perf_counter() - t, 1))
"""
BASE = (
    "import resource; from dropbatch.split import split_local; "
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)"
)


def run(*args) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "functions")}
    out = subprocess.run(
        [sys.executable, "-c", RUN, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return out.stdout.split()


def main() -> None:
    n_index = int(os.environ.get("BENCH_INDEX_N", "1000000"))
    pred_mb = int(os.environ.get("BENCH_PRED_MB", "1000"))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "functions")}
    base = int(
        subprocess.run([sys.executable, "-c", BASE], capture_output=True, text=True, env=env).stdout
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # 1. A million requests, outputs without labels: every match goes through the fingerprint
        # index.
        with open(tmp / "in.jsonl", "wb") as f:
            for i in range(n_index):
                f.write(
                    b'{"request": {"contents": [{"role": "user", "parts": [{"text": "q%d"}]}]}}\n'
                    % i
                )
        with open(tmp / "p1.jsonl", "wb") as f:
            for i in range(0, n_index, max(1, n_index // 1000)):
                f.write(
                    orjson.dumps(
                        {
                            "status": "",
                            "request": {
                                "contents": [
                                    {
                                        "role": "user",
                                        "parts": [{"file_data": None, "text": f"q{i}"}],
                                    }
                                ]
                            },
                            "response": {"candidates": [{"content": {"parts": [{"text": "a"}]}}]},
                        }
                    )
                    + b"\n"
                )
        ok, _, index_rss, index_s = run(tmp / "in.jsonl", tmp / "p1.jsonl", tmp / "o1")
        # 2. A 1 GB prediction file (20 KB lines) for a small input: memory must stay flat while
        # streaming.
        n_big = 2000
        with open(tmp / "in2.jsonl", "wb") as f:
            for i in range(n_big):
                f.write(
                    b'{"request": {"contents": [{"role": "user", "parts": [{"text": "big '
                    b'%d"}]}]}}\n' % i
                )
        filler = "z" * 20_000
        lines = pred_mb * 1_000_000 // 20_300
        start = time.perf_counter()
        with open(tmp / "p2.jsonl", "wb") as f:
            for i in range(lines):
                f.write(
                    orjson.dumps(
                        {
                            "status": "",
                            "request": {
                                "contents": [
                                    {
                                        "role": "user",
                                        "parts": [{"file_data": None, "text": f"big {i % n_big}"}],
                                    }
                                ],
                                "labels": {"dropbatch-line": str(i % n_big + 1)},
                            },
                            "response": {
                                "candidates": [{"content": {"parts": [{"text": filler}]}}]
                            },
                        }
                    )
                    + b"\n"
                )
        size_mb = (tmp / "p2.jsonl").stat().st_size / 1e6
        del start
        ok2, dup_unmatched, stream_rss, stream_s = run(
            tmp / "in2.jsonl", tmp / "p2.jsonl", tmp / "o2"
        )
    print(
        json.dumps(
            {
                "bench": "split_memory",
                "index_requests": n_index,
                "index_peak_rss_mb": int(index_rss),
                "index_mb_over_baseline": int(index_rss) - base,
                "index_matched": int(ok),
                "index_seconds": float(index_s),
                "prediction_file_mb": round(size_mb),
                "stream_peak_rss_mb": int(stream_rss),
                "stream_seconds": float(stream_s),
                "baseline_rss_mb": base,
            }
        )
    )


if __name__ == "__main__":
    main()
