"""The ledger's writes against Cloud Storage's real preconditions (fake-gcs-server on the local stack)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.stack


def test_a_lost_response_to_a_conditional_write_is_recognised(stack, bucket):
    """A generation-matched write whose response is lost is retried by the client and answered 412: the object
    holds our bytes, so it is our write, not a conflict that blocks the batch for a lease period."""
    from dropbatch.errors import Conflict
    from dropbatch.ledger import Store

    store = Store(stack.config())
    path = "batches/ledger-test-0000000000/doc.json"
    created = store.write_json(path, {"a": 1}, if_generation_match=0)
    assert store.write_json(path, {"a": 1}, if_generation_match=0) == created  # the retry after a lost response
    with pytest.raises(Conflict):
        store.write_json(path, {"a": 2}, if_generation_match=0)  # somebody else's document: a real conflict
    rewritten = store.write_json(path, {"a": 3}, if_generation_match=created)
    assert store.write_json(path, {"a": 3}, if_generation_match=created) == rewritten
    with pytest.raises(Conflict):
        store.write_json(path, {"a": 4}, if_generation_match=created)
    assert store.read_json(path) == ({"a": 3}, rewritten)


def test_ledger_updates_carry_their_own_mark(stack, bucket):
    from dropbatch.ledger import Store

    store = Store(stack.config())
    store.create_json(store.ledger_path("ledger-test-1111111111"), {"batch_id": "ledger-test-1111111111", "n": 0})
    marks = {store.update_ledger("ledger-test-1111111111", lambda d: d.update(n=d["n"] + 1))["writer"]
             for _ in range(3)}
    assert len(marks) == 3 and store.read_ledger("ledger-test-1111111111")[0]["n"] == 3
