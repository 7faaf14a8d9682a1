"""Restaging a retry round: CPU to stage a BENCH_RETRY_MB (default 96) MB part whose every request
failed again, against downloading it.

tests/integration/test_retry.py checks the round's correctness and memory; this measures its CPU in
one run on a local stack of its own (these machines are noisy: a ratio, not a time). The part is
read in chunks: the storage client's BlobReader, iterated alone, reads one byte per call (41 s of
CPU for these 96 MB against 0.3 s to download them whole, measured when the round was written).
Prints one JSON line:
{"bench": "retry", "part_mb", "requests", "download_cpu_s", "restage_cpu_s", "ratio"};
goal: ratio < 20.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "functions"), str(ROOT / "tests"), str(ROOT / "tests" / "integration")]
MB = 1 << 20


def main() -> None:
    from dropbatch import retry
    from dropbatch.local import stack as local
    from dropbatch.store import Store
    from test_retry import failed_part

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DROPBATCH_STATE_DIR"] = str(Path(tmp) / "state")
        running = local.up()
        try:
            os.environ.update(running.client_env())
            store = Store(
                dataclasses.replace(
                    running.config(), max_job_bytes=16 * MB, max_job_requests=1_000_000
                )
            )
            batch_id = "bench-retry-0000000000"
            lines, doc, errors = failed_part(
                store, batch_id, int(float(os.environ.get("BENCH_RETRY_MB", "96")) * MB)
            )
            size = sum(map(len, lines))
            cpu = time.process_time()
            store.bucket.blob(store.path(batch_id, "input/part-00000.jsonl")).download_as_bytes()
            download = time.process_time() - cpu
            cpu = time.process_time()
            retry.stage_retry(store, doc, errors)
            restage = time.process_time() - cpu
        finally:
            local.down(wipe=True)
    print(
        json.dumps(
            {
                "bench": "retry",
                "part_mb": round(size / MB),
                "requests": len(lines),
                "download_cpu_s": round(download, 2),
                "restage_cpu_s": round(restage, 2),
                "ratio": round(restage / download, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
