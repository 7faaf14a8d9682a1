"""Composing many objects into one (ordered.compose) against fake-gcs-server's real compose."""

from __future__ import annotations

import threading

import pytest

pytestmark = pytest.mark.stack


def test_two_finishers_composing_one_target_at_once_write_it_once(stack, bucket):
    """Found on the stack: results.jsonl of a 1,500-line batch held 1,750 lines. Two finishers
    composed it at once, 32 sources at a time with the target so far as the first source of the next
    call, so one's first call reset the target under the other's later ones. However they
    interleave, the target is every source once, in order."""
    from dropbatch import ordered

    names = [f"compose-test/src-{i:04d}" for i in range(150)]  # five compose calls each
    for name in names:
        bucket.blob(name).upload_from_string(f"{name}\n".encode())
    expected = "".join(f"{n}\n" for n in names)
    for attempt in range(3):
        target = f"compose-test/target-{attempt}.jsonl"
        start = threading.Barrier(3)

        def finisher():
            start.wait()
            ordered.compose(bucket, names, target)

        threads = [threading.Thread(target=finisher) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert bucket.blob(target).download_as_text() == expected, attempt
    assert not [
        b.name for b in bucket.list_blobs(prefix="compose-test/") if ".compose-" in b.name
    ], "the finishers' own intermediates are deleted"
