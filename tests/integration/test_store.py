"""The ledger's writes against Cloud Storage's real preconditions (fake-gcs-server on the local
stack)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.stack


def test_a_lost_response_to_a_conditional_write_is_recognised(stack, bucket):
    """A generation-matched write whose response is lost is retried by the client and answered 412:
    the object holds our bytes, so it is our write, not a conflict that blocks the batch for a lease
    period."""
    from dropbatch.errors import Conflict
    from dropbatch.store import Store

    store = Store(stack.config())
    path = "batches/ledger-test-0000000000/doc.json"
    created = store.write_json(path, {"a": 1}, if_generation_match=0)
    # the retry after a lost response
    assert store.write_json(path, {"a": 1}, if_generation_match=0) == created
    with pytest.raises(Conflict):
        # somebody else's document: a real conflict
        store.write_json(path, {"a": 2}, if_generation_match=0)
    rewritten = store.write_json(path, {"a": 3}, if_generation_match=created)
    assert store.write_json(path, {"a": 3}, if_generation_match=created) == rewritten
    with pytest.raises(Conflict):
        store.write_json(path, {"a": 4}, if_generation_match=created)
    assert store.read_json(path) == ({"a": 3}, rewritten)


def test_ledger_updates_carry_their_own_mark(stack, bucket):
    from dropbatch import batch
    from dropbatch.store import Store

    store = Store(stack.config())
    batch_id = "ledger-test-1111111111"
    store.create_json(
        store.ledger_path(batch_id),
        batch.new_claim(batch_id, "gs://b/o.jsonl", "o.jsonl", 1, "me", 60),
    )
    marks = {
        store.update_ledger(batch_id, lambda d: d.set(claims=d.claims + 1)).writer for _ in range(3)
    }
    assert len(marks) == 3 and store.read_ledger(batch_id)[0].claims == 4


def test_a_ledger_that_is_not_one_is_a_permanent_error_naming_its_field(stack, bucket):
    """A hand-edited or corrupted ledger is refused with the path and the field (the sweep logs it
    as one batch's trouble and goes on with the others), never read as half a ledger."""
    import msgspec
    from dropbatch import batch
    from dropbatch.errors import DropbatchError, PermanentError
    from dropbatch.store import Store

    store = Store(stack.config())
    batch_id = "ledger-test-4444444444"
    good = batch.new_claim(batch_id, "gs://b/o.jsonl", "o.jsonl", 1, "me", 60)
    store.write_json(store.ledger_path(batch_id), {**msgspec.to_builtins(good), "claims": "two"})
    with pytest.raises(
        PermanentError, match=r"ledger\.json is not a valid Ledger.*claims"
    ) as raised:
        store.read_ledger(batch_id)
    assert isinstance(raised.value, DropbatchError)
    store.write_json(store.ledger_path(batch_id), good)
    assert store.read_ledger(batch_id)[0] == good


def racing_store(config, rival):
    """A Store whose first ledger read is followed, before its write, by `rival(other_store)`:
    another execution that wins the same ledger in between (the write then loses its generation
    precondition)."""
    from dropbatch.store import Store

    class Racing(Store):
        raced = False

        def read_ledger(self, batch_id):
            got = super().read_ledger(batch_id)
            if not self.raced:
                self.raced = True
                rival(Store(config), batch_id)
            return got

    return Racing(config)


def test_a_part_claimed_by_another_execution_between_read_and_write_is_not_won(stack, bucket):
    """Found on the stack: two executions each created a job for one part (51 jobs for 50 parts).
    The claim's first write lost its precondition to the rival's claim, the retry saw the part
    taken, and the claim still counted the first try's win. Exactly one of two racing claims wins,
    and the ledger names the winner."""
    from dropbatch import batch, jobs

    config = stack.config()
    batch_id = "ledger-race-2222222222"
    doc = batch.new_claim(batch_id, "gs://b/o.jsonl", "o.jsonl", 1, "first", 60)
    doc.parts = [batch.new_part(0, 0, 1, 1, 1, "gs://b/in.jsonl")]
    rival_won = []
    store = racing_store(config, lambda other, b: rival_won.append(jobs.claim_part(other, b, 0)))
    store.write_json(store.ledger_path(batch_id), doc)
    assert jobs.claim_part(store, batch_id, 0) is False
    assert rival_won == [True]
    assert store.read_ledger(batch_id)[0].parts[0].creating["by"] != "", "the rival holds the claim"
    assert jobs.claim_part(store, batch_id, 0) is False, "and keeps it for its lease"


def test_a_submission_taken_over_by_another_execution_first_is_not_taken_twice(stack, bucket):
    """The rival takes the dead owner's submission over and finishes it between our read and our
    write: our take-over, retried on the rival's version, finds nothing to take and must not run the
    batch again."""
    from dropbatch import batch, submit

    config = stack.config()
    batch_id = "ledger-race-3333333333"
    doc = batch.new_claim(batch_id, "gs://b/o.jsonl", "o.jsonl", 1, "dead", 60)
    doc.lease_until = "2000-01-01T00:00:00Z"  # its owner died long ago

    def rival(other, b):
        assert submit.take_over(other, b, "rival").owner == "rival"
        other.update_ledger(
            b, lambda d: batch.move(batch.move(d, batch.STAGED), batch.SUBMITTED, owner=None)
        )

    store = racing_store(config, rival)
    store.write_json(store.ledger_path(batch_id), doc)
    assert submit.take_over(store, batch_id, "me") is None
    assert store.read_ledger(batch_id)[0].state == batch.SUBMITTED


def test_an_update_starts_from_what_this_store_saw_and_loses_to_any_write_since(stack, bucket):
    """update_ledger's first try is on the ledger as this Store last read or wrote it, with no read:
    one GCS call instead of two. A write by anyone since fails its generation precondition, and a
    move that declines on what was seen is asked again, both on the ledger as it is now: no update
    is lost and none is made on a stale read."""
    from dropbatch import batch
    from dropbatch.store import Store

    config = stack.config()
    batch_id = "ledger-seen-5555555555"

    class Counting(Store):
        reads = 0

        def _read_bytes(self, path):
            self.reads += path.endswith("/ledger.json")
            return super()._read_bytes(path)

    mine, other = Counting(config), Store(config)
    claims = [
        batch.new_claim(batch_id, "gs://b/o.jsonl", "o.jsonl", 1, owner, 60)
        for owner in ("me", "other")
    ]
    assert mine.create_ledger(claims[0]) and not other.create_ledger(claims[1])
    for _ in range(3):  # nobody else writes: no read at all
        mine.update_ledger(batch_id, lambda d: d.set(claims=d.claims + 1))
    assert mine.reads == 0 and other.read_ledger(batch_id)[0].claims == 4

    other.update_ledger(batch_id, lambda d: d.set(claims=d.claims + 10))  # a rival's write since
    assert mine.update_ledger(batch_id, lambda d: d.set(claims=d.claims + 1)).claims == 15
    assert mine.reads == 1 and other.read_ledger(batch_id)[0].claims == 15

    other.update_ledger(batch_id, lambda d: d.set(owner="rival"))
    asked = []

    def only_for_the_rival(d):
        asked.append(d.owner)
        return d.owner == "rival" and d.set(claims=0)

    assert mine.update_ledger(batch_id, only_for_the_rival).claims == 0
    assert asked == ["me", "rival"] and other.read_ledger(batch_id)[0].claims == 0
    assert mine.update_ledger(batch_id, lambda d: False).owner == "rival", (
        "a decline on what is now is final"
    )


def test_an_object_writer_writes_the_bytes_with_their_crc32c_and_deletes(
    stack, bucket, monkeypatch
):
    """ObjectWriter sends the bytes as one piece of a multipart body with their CRC32C in the
    metadata: what is stored is the bytes, named and typed as asked, whatever they hold (a line that
    looks like the body's boundary too); a checksum that does not match the bytes is refused, not
    stored."""
    import base64

    import google_crc32c
    from dropbatch.errors import PermanentError
    from dropbatch.store import ObjectWriter, Store
    from google.api_core import exceptions

    store = Store(stack.config())
    writer = ObjectWriter(store.bucket.name)
    # 2.5 MB
    data = b"".join(b'{"request": {"n": %d}}\r\n--%032x--\r\n' % (i, i) for i in range(50_000))
    try:
        writer.write("batches/writer-test/a.jsonl", data, "application/jsonl")
        blob = store.bucket.get_blob("batches/writer-test/a.jsonl")
        assert blob.download_as_bytes() == data and blob.content_type == "application/jsonl"
        assert base64.b64decode(blob.crc32c) == google_crc32c.value(data).to_bytes(4, "big")
        writer.write("batches/writer-test/empty.jsonl", b"", "application/jsonl")
        assert store.bucket.get_blob("batches/writer-test/empty.jsonl").size == 0
        # bytes that changed on the way: the checksum of other bytes with these ones
        with monkeypatch.context() as patched:
            patched.setattr(
                google_crc32c, "value", lambda _, value=google_crc32c.value: value(b"other bytes")
            )
            with pytest.raises((PermanentError, exceptions.BadRequest)):
                writer.write("batches/writer-test/changed.jsonl", data, "application/jsonl")
        assert store.bucket.get_blob("batches/writer-test/changed.jsonl") is None
        writer.delete("batches/writer-test/a.jsonl")
        writer.delete("batches/writer-test/a.jsonl")  # gone already: no error
        assert store.bucket.get_blob("batches/writer-test/a.jsonl") is None
    finally:
        writer.close()
