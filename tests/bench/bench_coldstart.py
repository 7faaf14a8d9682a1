"""Cold start: importing functions/main.py against `import vertexai.batch_prediction` (the seed's
SDK).

Each import runs in a fresh interpreter, best of several runs. Prints one JSON line with the ratio
(goal <= 0.5).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def best_of(code: str, runs: int = 5) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "functions")}
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT / "functions")
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    runs = int(os.environ.get("BENCH_RUNS", "5"))
    bare = best_of("pass", runs)
    ours = best_of("import main", runs) - bare
    sdk = best_of("import vertexai.batch_prediction", runs) - bare
    print(
        json.dumps(
            {
                "bench": "coldstart",
                "main_import_ms": round(ours * 1000),
                "vertexai_import_ms": round(sdk * 1000),
                "ratio": round(ours / sdk, 3),
                "goal": 0.5,
            }
        )
    )


if __name__ == "__main__":
    main()
