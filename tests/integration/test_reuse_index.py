"""The reuse index against Cloud Storage's real preconditions (fake-gcs-server on the local stack):
bounded, newest answer last, two writers at once both land."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import uuid

import pytest

pytestmark = pytest.mark.stack


def test_the_index_keeps_the_newest_answers_within_its_bound(stack, bucket):
    from dropbatch import reuse
    from dropbatch.store import Store

    store = Store(dataclasses.replace(stack.config(), reuse_max=3 * reuse.SHARDS))
    shard = uuid.uuid4().hex[:2]  # one shard, and this test's own fingerprints
    fps = [f"{shard}{uuid.uuid4().hex[2:]}" for _ in range(5)]
    assert reuse.record(store, "batch-one", [(fp, f"k{i}") for i, fp in enumerate(fps[:4])]) == 4
    assert reuse.record(store, "batch-two", [(fps[1], "k1"), (fps[4], "k4")]) == 2
    doc = store.read_json(reuse.shard_path(store, shard))[0]
    # three kept: the newest; fps[1] was answered again, so it is newer than fps[2] and fps[3]
    assert list(doc["entries"].items())[-3:] == [
        (fps[3], ["batch-one", "k3"]),
        (fps[1], ["batch-two", "k1"]),
        (fps[4], ["batch-two", "k4"]),
    ]
    lookup = reuse.Lookup(Store(stack.config()))
    assert lookup.find(fps[4]) == ["batch-two", "k4"] and lookup.find(fps[0]) is None


def test_parts_recording_at_once_all_land(stack, bucket):
    from dropbatch import reuse
    from dropbatch.store import Store

    store = Store(stack.config())
    shard = uuid.uuid4().hex[:2]
    batches = {f"batch-{i}": f"{shard}{uuid.uuid4().hex[2:]}" for i in range(8)}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda item: reuse.record(store, item[0], [(item[1], "k")]), batches.items()))
    lookup = reuse.Lookup(store)
    assert {b: lookup.find(fp) for b, fp in batches.items()} == {b: [b, "k"] for b in batches}
