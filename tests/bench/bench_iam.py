"""What enforcing infra/'s grants costs: result-sized object writes and reads through the storage
front (as the split function's account, token checked, bucket conditions evaluated) against
fake-gcs-server directly, in one run on one stack. Prints JSON with the ratios.

    python tests/bench/bench_iam.py [--objects 2000]    (or BENCH_IAM_OBJECTS=2000)
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "functions"))


def rate(endpoint: str, bucket: str, prefix: str, n: int, workers: int = 32) -> tuple[float, float]:
    """(writes per second, reads per second) of `n` small objects over a kept-alive pool, as GcsSink
    writes."""
    os.environ["STORAGE_EMULATOR_HOST"] = endpoint
    from dropbatch import store

    store.gcs_credentials.cache_clear()
    http = store.gcs_http(workers)

    def put(i: int) -> None:
        r = http.request(
            "POST",
            f"/upload/storage/v1/b/{bucket}/o?uploadType=media&name={prefix}%2F{i}.json",
            body=b'{"key": "%d", "status": "succeeded"}' % i,
            headers={"Content-Type": "application/json"},
        )
        assert r.status == 200, (r.status, r.data[:200])

    def get(i: int) -> None:
        r = http.request("GET", f"/download/storage/v1/b/{bucket}/o/{prefix}%2F{i}.json?alt=media")
        assert r.status == 200, (r.status, r.data[:200])

    with cf.ThreadPoolExecutor(workers) as pool:
        started = time.perf_counter()
        list(pool.map(put, range(n)))
        writes = n / (time.perf_counter() - started)
        started = time.perf_counter()
        list(pool.map(get, range(n)))
        reads = n / (time.perf_counter() - started)
    http.http.close()
    return writes, reads


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--objects", type=int, default=int(os.environ.get("BENCH_IAM_OBJECTS", "2000"))
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DROPBATCH_STATE_DIR"] = str(Path(tmp) / "state")
        from dropbatch.local import stack as local

        running = local.up()
        try:
            os.environ["GOOGLE_APPLICATION_CREDENTIALS"] = running.credentials("split")
            direct = rate(
                f"http://127.0.0.1:{running.ports['gcs']}",
                running.bucket,
                "batches/direct",
                args.objects,
            )
            front = rate(
                f"http://127.0.0.1:{running.ports['storage_fn']}",
                running.bucket,
                "batches/front",
                args.objects,
            )
        finally:
            local.down(wipe=True)
    print(
        json.dumps(
            {
                "bench": "iam",
                "objects": args.objects,
                "direct_writes_per_s": round(direct[0]),
                "front_writes_per_s": round(front[0]),
                "write_ratio": round(front[0] / direct[0], 2),
                "direct_reads_per_s": round(direct[1]),
                "front_reads_per_s": round(front[1]),
                "read_ratio": round(front[1] / direct[1], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
