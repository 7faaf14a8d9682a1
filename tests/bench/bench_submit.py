"""Submitting a big file in one streaming pass with continuations, against validation alone, in one
run.

A generated file of BENCH_SUBMIT_GB (default 3) GB is dropped on a local stack of its own whose
submit budget is DROPBATCH_SUBMIT_BUDGET_S=20 and whose per-job byte limit is lowered so that the
file becomes several jobs (the Vertex emulator keeps them queued: only the submission is measured).
From the end of the upload to the `submitted` message; the same file through `validate_path` alone,
from local disk, before and after (the faster counts). Prints one JSON line:
{"bench": "submit", "bytes", "requests", "seconds", "mb_per_s", "validate_only_mb_per_s", "ratio",
 "continuations", "peak_rss_mb"} with ratio = mb_per_s / validate_only_mb_per_s and peak_rss_mb
the submit function's peak resident memory (VmHWM). Goals: ratio >= 0.7, peak
RSS < 300 MB, at least one continuation.

Where the time goes, in the same run: submit_cpu_s (the submit function's CPU), storage_cpu_s
(fake-gcs-server's: it checksums every write and rewrites every byte again to compose a part, a copy
Cloud Storage does server-side) and validate_only_cpu_s, after a one-line file has warmed the
function up (its imports and clients are bench-coldstart's). On a 2-core machine the two processes
share the cores, so the storage emulator's CPU bounds the ratio whatever dropbatch does; cpu_ratio =
submit_cpu_s / validate_only_cpu_s is dropbatch's own cost (goal: at most 1.1, which is below
cpu_ratio_floor on this machine).

transport_cpu_s is what moving the bytes costs a process on this machine, measured here in the same
run: the dropped object read through store.ObjectReader in 8 MB ranges and written back in 16 MB
objects, as the submit function reads and stages it, with no validation. Validation alone reads a
local file and pays for neither, so (submit_cpu_s - transport_cpu_s) / validate_only_cpu_s is
cpu_ratio_less_transport: validating and staging. cpu_ratio_floor = (validate_only_cpu_s +
transport_cpu_s) / validate_only_cpu_s is the least cpu_ratio any submit function can reach on this
machine while it reads the dropped object and writes its lines back for the jobs once: the cost of
validating plus moving the bytes, with nothing for staging itself.

CPU seconds here drift by more than these gaps, so instructions_ratio counts the same in
instructions (valgrind's callgrind, tests/bench/counted.py; null without valgrind): the submit
function's code run in a process of its own under callgrind, on two files of
BENCH_SUBMIT_CALLGRIND_MB (default 10) and four times that, each submitted and validated alone; the
ratio of the differences between the two sizes, so that what a submission costs whatever its size
(the claim, the ledger, creating the jobs) is not charged per byte. User space only: the kernel's
side of reading and sending is not counted. instructions_ratio_same_read is the same against
validating the dropped object read as the function reads it (store.ObjectReader's ranged GETs, read
ahead by lineio.Prefetch): what staging and writing the staged parts add to a validation that reads
the same bytes.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "functions"), str(ROOT / "tests"), str(ROOT / "tests" / "bench")]

import counted  # noqa: E402


def write_file(path: Path, target_bytes: int) -> tuple[int, int]:
    import orjson

    words = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta")
    filler = " ".join(words[i % len(words)] for i in range(600))  # about 4 KB a request
    n = size = 0
    with open(path, "wb") as f:
        while size < target_bytes:
            line = (
                orjson.dumps(
                    {
                        "request": {
                            "contents": [
                                {"role": "user", "parts": [{"text": f"question {n}: {filler}"}]}
                            ],
                            "generationConfig": {"temperature": 0.2},
                        }
                    }
                )
                + b"\n"
            )
            f.write(line)
            size += len(line)
            n += 1
    return n, size


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its children (functions-framework may serve from a
    worker)."""
    import psutil

    return sum(
        sum(proc.cpu_times()[:2])
        for proc in [psutil.Process(pid), *psutil.Process(pid).children(True)]
    )


def peak_rss_mb(pid: int) -> int:
    """The highest peak resident memory (VmHWM) in the function's process tree (functions-framework
    may serve from a worker process)."""
    import psutil

    peaks = []
    for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) // 1024)
    return max(peaks)


def main() -> None:
    gigabytes = float(os.environ.get("BENCH_SUBMIT_GB", "3"))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(
            DROPBATCH_STATE_DIR=str(Path(tmp) / "state"),
            DROPBATCH_SUBMIT_BUDGET_S="20",
            DROPBATCH_MAX_JOB_BYTES=str(int(gigabytes * 1e9 / 4) + 1),
        )
        path = Path(tmp) / "big.jsonl"
        requests_n, size = write_file(path, int(gigabytes * 1e9))
        from dropbatch.local import stack as local

        running = local.up(faults={"queued_s": 3600})
        try:
            os.environ.update(running.client_env())
            result = run(running, path, requests_n, size)
            result.update(instructions(running, Path(tmp)) or {"instructions_ratio": None})
            print(json.dumps(result))
        finally:
            local.down(wipe=True)


def run(running, path: Path, requests_n: int, size: int) -> dict:
    from conftest import Inbox
    from dropbatch.config import Config
    from dropbatch.keys import batch_id as derive
    from dropbatch.store import Store
    from dropbatch.validate import validate_path
    from google.cloud.storage.retry import DEFAULT_RETRY

    def validate_only() -> tuple[float, float]:
        start, cpu = time.monotonic(), time.process_time()
        report = validate_path(path, Config.from_env())
        assert report.valid and report.requests == requests_n
        return time.monotonic() - start, time.process_time() - cpu

    # and again after: this machine's speed drifts over minutes; the faster one counts
    before = validate_only()
    inbox = Inbox(running)
    try:
        store = Store(running.config())
        # A one-line file first, so that the measured submission is not charged the function's
        # first-call imports and client set-up (bench-coldstart measures those): the CPU compared is
        # per file.
        warm = store.client.bucket(running.bucket).blob("incoming/warm.jsonl")
        warm.upload_from_string(
            b'{"request": {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}}\n'
        )
        inbox.wait_for(
            derive(running.bucket, warm.name, warm.generation), ["submitted"], timeout=600
        )
        blob = store.client.bucket(running.bucket).blob("incoming/big.jsonl", chunk_size=256 << 20)
        # Seeding is not measured: large chunks and an hour's retry deadline, so that a busy
        # machine's slow emulator (a chunk's connection dropped) retries instead of ending the run
        # at the default 120 s.
        blob.upload_from_filename(
            str(path),
            content_type="application/jsonl",
            timeout=600,
            retry=DEFAULT_RETRY.with_timeout(3600),
        )
        start, cpu = (
            time.monotonic(),
            {name: cpu_s(running.pids[name]) for name in ("submit", "storage")},
        )
        batch_id = derive(running.bucket, blob.name, blob.generation)
        message = inbox.wait_for(batch_id, ["submitted", "rejected", "failed"], timeout=3600)
        seconds = time.monotonic() - start
        cpu = {name: cpu_s(running.pids[name]) - before for name, before in cpu.items()}
    finally:
        inbox.close()
    assert message["state"] == "submitted", message
    ledger, _ = store.read_ledger(batch_id)
    rss = peak_rss_mb(running.pids["submit"])

    validate_seconds, validate_cpu = min(before, validate_only())
    transport = transport_cpu(store, blob.name)
    mb_per_s, validate_mb_per_s = size / seconds / 1e6, size / validate_seconds / 1e6
    return {
        "bench": "submit",
        "bytes": size,
        "requests": requests_n,
        "seconds": round(seconds, 1),
        "mb_per_s": round(mb_per_s, 1),
        "validate_only_mb_per_s": round(validate_mb_per_s, 1),
        "ratio": round(mb_per_s / validate_mb_per_s, 2),
        "continuations": (ledger.progress or {}).get("continuations", 0),
        "jobs": len(ledger.parts),
        "peak_rss_mb": rss,
        "submit_cpu_s": round(cpu["submit"], 1),
        "storage_cpu_s": round(cpu["storage"], 1),
        "validate_only_cpu_s": round(validate_cpu, 1),
        "cpu_ratio": round(cpu["submit"] / validate_cpu, 2),
        "transport_cpu_s": round(transport, 1),
        "cpu_ratio_less_transport": round((cpu["submit"] - transport) / validate_cpu, 2),
        "cpu_ratio_floor": round((validate_cpu + transport) / validate_cpu, 2),
    }


def instructions(running, tmp: Path) -> dict | None:
    """Per byte, the submit function's instructions over validation's: (submit(4x) - submit(x)) /
    (validate(4x) - validate(x)), counted by callgrind in a process that runs the function's code
    directly. The files go under other/, outside the trigger prefix, so the deployed function leaves
    them alone."""
    if not counted.available():
        return None
    from dropbatch.store import Store

    megabytes = float(os.environ.get("BENCH_SUBMIT_CALLGRIND_MB", "10"))
    bucket = Store(running.config()).client.bucket(running.bucket)
    args = []
    for n, scale in enumerate((1, 4)):
        path = tmp / f"counted-{n}.jsonl"
        write_file(path, int(megabytes * scale * 1e6))
        blob = bucket.blob(f"other/counted-{n}.jsonl")
        blob.upload_from_filename(str(path), content_type="application/jsonl")
        args += [str(path), blob.name, str(blob.generation)]
    # one pass each: 50 times slower under callgrind
    env = {**os.environ, "DROPBATCH_SUBMIT_BUDGET_S": "86400"}
    counts = counted.run(__file__, "--callgrind", running.bucket, *args, env=env)
    (validate_1, read_1, submit_1), (validate_4, read_4, submit_4) = counts[:3], counts[3:]
    return {
        "instructions_ratio": round((submit_4 - submit_1) / (validate_4 - validate_1), 3),
        "instructions_ratio_same_read": round((submit_4 - submit_1) / (read_4 - read_1), 3),
    }


def under_callgrind(bucket: str, *files: str) -> None:
    from dropbatch import submit
    from dropbatch.config import Config
    from dropbatch.lineio import Prefetch
    from dropbatch.store import ObjectReader, Store
    from dropbatch.validate import validate_path, validate_stream

    config = Config.from_env()
    # pays the imports and clients
    warm = Store(config).client.bucket(bucket).blob("other/counted-warm.jsonl")
    warm.upload_from_string(
        b'{"request": {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}}\n'
    )
    submit.submit_object(config, bucket, warm.name, warm.generation)
    for i in range(0, len(files), 3):
        path, name, generation = files[i : i + 3]
        with counted.region():
            validate_path(path, config)
        # the dropped object read as the submit function reads it, and validated
        with (
            counted.region(),
            ObjectReader(bucket, name, int(generation)) as stream,
            contextlib.closing(Prefetch(stream)) as ahead,
        ):
            assert validate_stream(ahead, name, config).valid
        with counted.region():
            assert submit.submit_object(config, bucket, name, int(generation)).state == "submitted"


def transport_cpu(store, name: str) -> float:
    """CPU seconds of reading object `name` as the submit function does (store.ObjectReader, 8 MB
    ranges) and writing it again as it writes staged chunks (store.ObjectWriter, CHUNK_BYTES
    objects), with no validation."""
    from dropbatch.staging import CHUNK_BYTES
    from dropbatch.store import ObjectReader, ObjectWriter

    reader, writer = ObjectReader(store.bucket.name, name), ObjectWriter(store.bucket.name)
    cpu, chunks, chunk = time.process_time(), 0, []

    def write() -> None:
        writer.write(f"batches/transport/c{chunks:05d}.jsonl", b"".join(chunk), "application/jsonl")

    try:
        while data := reader.read(8 << 20):
            chunk.append(data)
            if sum(map(len, chunk)) >= CHUNK_BYTES:
                write()
                chunks, chunk = chunks + 1, []
        if chunk:
            write()
    finally:
        reader.close()
        writer.close()
    return time.process_time() - cpu


if __name__ == "__main__":
    if sys.argv[1:2] == ["--callgrind"]:
        under_callgrind(*sys.argv[2:])
    else:
        main()
