"""Retry rounds against Cloud Storage's real streams (fake-gcs-server on the local stack)."""

from __future__ import annotations

import dataclasses
import tracemalloc

import orjson
import pytest
from conftest import req

pytestmark = pytest.mark.stack

MB = 1 << 20


def failed_part(store, batch_id: str, size: int):
    """A staged part of about `size` bytes (4 KB requests) whose every request failed: (lines, the
    batch's ledger document, its errors) for retry.stage_retry."""
    from dropbatch import batch, keys

    filler, lines, total = "x" * 4000, [], 0
    while total < size:
        n = len(lines) + 1
        request = {**req(f"{n} {filler}"), "labels": keys.line_labels(n, keys.label_digits(30000))}
        lines.append(orjson.dumps({"request": request}) + b"\n")
        total += len(lines[-1])
    store.bucket.blob(store.path(batch_id, "input/part-00000.jsonl")).upload_from_string(
        b"".join(lines), timeout=600
    )
    # as the Stager writes
    store.bucket.blob(store.path(batch_id, "input/part-00000.keys.jsonl")).upload_from_string(
        b"".join(b"[%d,null,%d]\n" % (n, len(line)) for n, line in enumerate(lines, 1)), timeout=600
    )
    doc = batch.new_claim(batch_id, "gs://b/f.jsonl", "f.jsonl", 1, "me", 60).set(
        state=batch.SUBMITTED,
        model="gemini-2.5-flash",
        parts=[batch.new_part(0, 0, 1, len(lines), len(lines), None)],
    )
    return (
        lines,
        doc,
        [{"line": n, "key": str(n), "status": "retry"} for n in range(1, len(lines) + 1)],
    )


def test_a_retry_round_is_built_streaming_within_the_per_job_limits(stack, bucket):
    """Issue 13.3: a part hit by a 429 storm was copied whole into memory to build the retry round
    (two 1 GB parts in the 1 GiB split function). Here a 96 MB part whose every request failed is
    staged again under a 16 MB per-job limit: the round's parts each fit the limit, hold exactly the
    failed lines in order, and Python's peak allocation stays far below the part's size (the read
    and write buffers, not the part). Its CPU is measured by `make bench-retry`."""

    from dropbatch import retry
    from dropbatch.store import Store

    store = Store(
        dataclasses.replace(stack.config(), max_job_bytes=16 * MB, max_job_requests=1_000_000)
    )
    batch_id = "rounds-test-0000000000"
    lines, doc, errors = failed_part(store, batch_id, 96 * MB)
    size = sum(map(len, lines))
    assert store.bucket.blob(
        store.path(batch_id, "input/part-00000.jsonl")
    ).download_as_bytes() == b"".join(lines)

    tracemalloc.start()
    try:
        parts = retry.stage_retry(store, doc, errors)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert peak < 48 * MB, f"peak {peak / MB:.0f} MB while restaging a {size / MB:.0f} MB part"
    assert len(parts) >= size // (16 * MB) and all(p.round == 1 for p in parts)
    staged, sidecar = [], []
    for part in parts:
        name = part.input.removeprefix(f"gs://{store.config.state_bucket}/")
        data = store.bucket.blob(name).download_as_bytes()
        assert len(data) <= 16 * MB
        staged.append(data)
        sidecar += [
            orjson.loads(x)
            for x in store.bucket.blob(name.replace(".jsonl", ".keys.jsonl"))
            .download_as_bytes()
            .splitlines()
        ]
    assert b"".join(staged) == b"".join(lines)
    assert [(line, key) for line, key, _ in sidecar] == [
        (n, str(n)) for n in range(1, len(lines) + 1)
    ]
