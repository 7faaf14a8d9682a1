"""Job slots: dropbatch keeps at most DROPBATCH_MAX_CONCURRENT_JOBS Vertex jobs running, and a batch
that waits for a slot gets one in the order the batches were dropped (docs/contracts.md, "Job
slots")."""

from __future__ import annotations

import orjson
import pytest
from conftest import drop, owner, req

pytestmark = pytest.mark.stack


def ledger(bucket, batch_id: str) -> dict:
    return orjson.loads(bucket.blob(f"batches/{batch_id}/ledger.json").download_as_bytes())


def test_waiting_batches_get_the_one_slot_in_drop_order(stack, bucket, inbox, vertex):
    from dropbatch.local import stack as local

    vertex.faults(running_s=3)
    for name in ("submit", "status"):
        local.restart_function(name, kill_signal=15, DROPBATCH_MAX_CONCURRENT_JOBS="1")
    try:
        order, waited = [], 0
        # each claimed before the next is dropped: the drop order is the claim order
        for i in range(5):
            _, batch_id = drop(bucket, f"slots-{i}.jsonl", [req(f"slot {i} {j}") for j in range(3)])
            inbox.wait_for(batch_id, ["submitted"], timeout=60)
            order.append(batch_id)
            waited += not ledger(bucket, batch_id)["parts"][0]["job"]
        assert waited >= 3, "most batches were submitted to wait for the one slot"
        for batch_id in order:
            assert inbox.wait_for(batch_id, ["succeeded"], timeout=120)["counts"]["succeeded"] == 3
    finally:
        for name in ("submit", "status"):
            local.restart_function(name, kill_signal=15)
    jobs = [
        owner().get(f"{stack.vertex}/v1/{ledger(bucket, b)['parts'][0]['job']}").json()
        for b in order
    ]
    created = [job["createTime"] for job in jobs]
    assert created == sorted(created), "the slot went to the batches in the order they were dropped"
    for earlier, later in zip(jobs, jobs[1:]):
        assert later["createTime"] >= earlier["endTime"], "never two jobs at once"
