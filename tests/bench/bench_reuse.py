"""Re-drops pay only for what changed (reuse.py), on a local stack of its own with reuse on.

BENCH_N requests (10,000) are dropped and run; then the same file with BENCH_CHANGED lines (100)
changed. Prints one JSON line: the requests Vertex was sent each time (its jobs' completion stats),
the results reused, seconds from upload to the terminal message each time and their ratio (each job
runs BENCH_JOB_S, 30, and writes nothing before its end: the re-drop's copies overlap its job), and
whether every line of the second results.jsonl is the first's answer (or, for a changed line, a new
one) in order.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "functions"), str(ROOT / "tests")]


def main() -> None:
    n, changed = (
        int(os.environ.get("BENCH_N", "10000")),
        int(os.environ.get("BENCH_CHANGED", "100")),
    )
    with tempfile.TemporaryDirectory() as state:
        os.environ.update(
            DROPBATCH_STATE_DIR=state, DROPBATCH_REUSE="on", DROPBATCH_MAX_JOB_REQUESTS="5000"
        )
        from dropbatch.local import stack as local

        running = local.up()
        os.environ.update(running.client_env())
        try:
            print(json.dumps(run(running, n, changed)))
        finally:
            local.down(wipe=True)


def run(running, n: int, changed: int) -> dict:
    import orjson
    from conftest import Inbox, drop, jobs_of, req
    from dropbatch.store import storage_client

    job_s = float(os.environ.get("BENCH_JOB_S", "30"))
    requests.post(  # every job runs job_s with no output until its end (the emulator's worst case)
        f"{running.vertex}/_emulator/faults",
        json={"queued_s": 0.2, "pending_s": 0.2, "running_s": job_s, "output_at_end": True},
    )
    bucket = storage_client(running.project).bucket(running.bucket)
    inbox = Inbox(running)
    step = max(1, n // changed)
    first = [req(f"question {i}: " + "lorem ipsum " * 20) for i in range(n)]
    second = [
        req(f"question {i}, changed") if i % step == 3 else line for i, line in enumerate(first)
    ]
    figures = {}
    try:
        for name, lines in (("first", first), ("again", second)):
            start = time.monotonic()
            _, batch_id = drop(bucket, f"bench-reuse-{name}.jsonl", lines)
            done = inbox.wait_for(batch_id, ["succeeded", "partially_succeeded", "failed"], 900)
            figures[name] = {
                "batch_id": batch_id,
                "seconds": round(time.monotonic() - start, 2),
                "counts": done["counts"],
                "sent": sum(
                    int(j["completionStats"].get("successfulCount", 0))
                    + int(j["completionStats"].get("failedCount", 0))
                    for j in jobs_of(running, batch_id)
                ),
            }
    finally:
        inbox.close()
    a, b = (
        [
            orjson.loads(line)
            for line in bucket.blob(f"batches/{figures[k]['batch_id']}/results.jsonl")
            .download_as_bytes()
            .splitlines()
        ]
        for k in ("first", "again")
    )
    exact = len(a) == len(b) == n and all(
        x["key"] == y["key"]
        and (y.get("reused_from") == figures["first"]["batch_id"]) == (i % step != 3)
        and (x["text"] == y["text"] or i % step == 3)
        for i, (x, y) in enumerate(zip(a, b))
    )
    return {
        "bench": "reuse",
        "requests": n,
        "changed": sum(1 for i in range(n) if i % step == 3),
        "sent_first": figures["first"]["sent"],
        "sent_again": figures["again"]["sent"],
        "reused": figures["again"]["counts"].get("reused", 0),
        "seconds_first": figures["first"]["seconds"],
        "seconds_again": figures["again"]["seconds"],
        "seconds_ratio": round(figures["again"]["seconds"] / figures["first"]["seconds"], 2),
        "job_s": job_s,
        "all_exact": exact,
    }


if __name__ == "__main__":
    main()
