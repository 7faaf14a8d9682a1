"""Upload -> terminal message on the local stack, and what it costs in calls and memory.

BENCH_FILES files of BENCH_N requests are dropped at once (1 x 1,000 by default; the soak is 20 x
1,000). Prints one JSON line: seconds to the last terminal message, requests/s, GCS and Vertex calls
per batch, peak RSS of each function process, and whether every batch came out exact.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "functions"), str(ROOT / "tests")]


def main() -> None:
    files, n = int(os.environ.get("BENCH_FILES", "1")), int(os.environ.get("BENCH_N", "1000"))
    with tempfile.TemporaryDirectory() as state:
        os.environ["DROPBATCH_STATE_DIR"] = state
        from dropbatch.local import stack as local

        t0 = time.monotonic()
        running = local.up()
        up_s = time.monotonic() - t0
        os.environ.update(running.client_env())
        try:
            print(json.dumps(run(running, files, n, up_s)))
        finally:
            local.down(wipe=True)


def run(running, files: int, n: int, up_s: float) -> dict:
    from conftest import Inbox, drop, req
    from dropbatch.store import storage_client

    requests.post(
        f"{running.vertex}/_emulator/faults",
        json={"queued_s": 0.2, "pending_s": 0.2, "running_s": 0.2},
    )
    bucket = storage_client(running.project).bucket(running.bucket)
    inbox = Inbox(running)
    peaks = dict.fromkeys(("submit", "status", "split"), 0)
    stop = threading.Event()

    def sample():
        procs = {name: psutil.Process(running.pids[name]) for name in peaks}
        while not stop.is_set():
            for name, proc in procs.items():
                rss = proc.memory_info().rss + sum(
                    c.memory_info().rss for c in proc.children(recursive=True)
                )
                peaks[name] = max(peaks[name], rss)
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()
    log = Path(running.logs) / "storage.log"
    log_start = log.stat().st_size
    start = time.monotonic()
    batches = []
    for f in range(files):
        lines = [req(f"file {f} question {i}: " + "lorem ipsum " * 20) for i in range(n)]
        batches.append(drop(bucket, f"bench-{f}.jsonl", lines)[1])
    done = {}
    while len(done) < files and time.monotonic() - start < 900:
        inbox.pull()
        for m in inbox.messages:
            if m["state"] not in ("submitted", "running", "stalled"):
                done.setdefault(m["batch_id"], (m, time.monotonic() - start))
    elapsed = time.monotonic() - start
    stop.set()
    inbox.close()
    calls = requests.get(f"{running.vertex}/_emulator/stats").json()["calls"]
    with open(log, "rb") as f:
        f.seek(log_start)
        lines = f.read().splitlines()
    per_batch = [sum(1 for line in lines if b.encode() in line) for b in batches]
    exact = all(
        done.get(b)
        and done[b][0]["counts"]["succeeded"] == n
        and done[b][0]["counts"]["total"] == n
        for b in batches
    )
    return {
        "bench": "e2e",
        "files": files,
        "requests_per_file": n,
        "local_up_s": round(up_s, 2),
        "seconds_to_last_terminal": round(elapsed, 2),
        "requests_per_s": round(files * n / elapsed, 1),
        "gcs_calls_per_batch": round(sum(per_batch) / files),
        "gcs_calls_total": len(lines),
        "vertex_calls_per_batch": {k: round(v / files, 1) for k, v in calls.items()},
        "peak_rss_mb": {k: v // 2**20 for k, v in peaks.items()},
        "all_exact": exact,
    }


if __name__ == "__main__":
    main()
