"""Batches waiting for a job slot: what a sweep tick costs while many wait.

BENCH_SLOTS_FILES (default 30) small files are dropped on a local stack of their own with
DROPBATCH_MAX_CONCURRENT_JOBS=2 and Vertex jobs that stay queued, so two batches hold the slots and
the rest wait. Once every batch is `submitted`, the ledger reads (GETs of batches/*/ledger.json at
the storage emulator) are counted for BENCH_SLOTS_S (default 20) seconds of sweep ticks. Prints one
JSON line: {"bench": "slots", "batches", "waiting", "cap", "ticks", "ledger_reads_per_tick",
"reads_per_batch_per_tick", "ledger_reads_for_a_new_batch"}. The sweep itself reads each active
ledger once a tick; every submit call it asks for reads them all again, so reads_per_batch_per_tick
is 1 + the submit calls a tick makes (docs/contracts.md, "Job slots": at most the free slots, here
none). ledger_reads_for_a_new_batch: the other ledgers a batch dropped at that point reads to find
that it must wait (at most all of them; it stops once the cap is taken).
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
SLOTS = 2  # DROPBATCH_MAX_CONCURRENT_JOBS on the bench's stack


def main() -> None:
    files, window = (
        int(os.environ.get("BENCH_SLOTS_FILES", "30")),
        float(os.environ.get("BENCH_SLOTS_S", "20")),
    )
    with tempfile.TemporaryDirectory() as state:
        os.environ.update(DROPBATCH_STATE_DIR=state, DROPBATCH_MAX_CONCURRENT_JOBS=str(SLOTS))
        from dropbatch.local import stack as local

        running = local.up(faults={"queued_s": 3600})
        os.environ.update(running.client_env())
        try:
            print(json.dumps(run(running, files, window)))
        finally:
            local.down(wipe=True)


def run(running, files: int, window: float) -> dict:
    from conftest import Inbox, drop, req
    from dropbatch.local.stack import TICK_S
    from dropbatch.store import storage_client

    bucket = storage_client(running.project).bucket(running.bucket)
    inbox = Inbox(running)
    try:
        batches = [
            drop(bucket, f"slots-{f}.jsonl", [req(f"file {f} question {i}") for i in range(2)])[1]
            for f in range(files)
        ]
        for batch_id in batches:
            inbox.wait_for(batch_id, ["submitted"], timeout=300)
    finally:
        inbox.close()
    log = Path(running.logs) / "storage.log"
    start = log.stat().st_size
    time.sleep(window)
    with open(log, "rb") as f:
        f.seek(start)
        reads = sum(1 for line in f if b"ledger.json" in line and b"GET" in line)
    waiting = sum(
        1
        for b in batches
        if not json.loads(bucket.blob(f"batches/{b}/ledger.json").download_as_bytes())["parts"][0][
            "job"
        ]
    )
    ticks = window / TICK_S
    return {
        "bench": "slots",
        "batches": files,
        "waiting": waiting,
        "cap": SLOTS,
        "ticks": round(ticks, 1),
        "ledger_reads_per_tick": round(reads / ticks, 1),
        "reads_per_batch_per_tick": round(reads / ticks / files, 2),
        "ledger_reads_for_a_new_batch": reads_for_a_new_batch(running),
    }


def reads_for_a_new_batch(running) -> int:
    """The other ledgers a batch dropped now reads before it knows it must wait
    (jobs.slots_taken)."""
    from dropbatch import batch, jobs
    from dropbatch.store import Store

    store, reads = Store(running.config()), []
    read_ledger = store.read_ledger
    store.read_ledger = lambda batch_id: reads.append(batch_id) or read_ledger(batch_id)
    doc = batch.new_claim(
        "b-new", "gs://x/incoming/new.jsonl", "incoming/new.jsonl", 1, "bench", 60
    )
    jobs.slots_taken(store, doc, enough=store.config.max_concurrent_jobs)
    return len(reads)


if __name__ == "__main__":
    main()
