"""The split's worst case while a job runs, against Cloud Storage's real streams: an output file
rewritten as a new generation with more lines, and a half-written last line. Google documents only
that completed rows are written to the output location while the job runs (batch-prediction-resume);
how a file grows is not said, so this is the modelled worst case: the split must neither lose a line
nor count one twice."""

from __future__ import annotations

import orjson
import pytest
from conftest import drop, req

pytestmark = pytest.mark.stack


def output_line(request: dict, text: str) -> bytes:
    return (
        orjson.dumps(
            {
                "status": "",
                "processed_time": "2026-12-02T00:00:00Z",
                "request": request,
                "response": {
                    "candidates": [
                        {
                            "content": {"parts": [{"text": text}], "role": "model"},
                            "finishReason": "STOP",
                        }
                    ],
                    "usageMetadata": {
                        "promptTokenCount": 5,
                        "candidatesTokenCount": 1,
                        "totalTokenCount": 6,
                    },
                },
            }
        )
        + b"\n"
    )


def test_a_growing_file_and_a_half_written_line_are_split_exactly(stack, bucket, inbox, vertex):
    from dropbatch import layout, notify, split
    from dropbatch.documents import SplitDone
    from dropbatch.store import Store

    vertex.faults(queued_s=3600)  # the job never runs: this test writes its output
    _, batch_id = drop(bucket, "growing.jsonl", [req(f"grow {i}") for i in range(6)])
    inbox.wait_for(batch_id, "submitted")
    store = Store(stack.config())
    doc, _ = store.read_ledger(batch_id)
    part = doc.parts[0]
    staged = store.bucket.blob(
        store.path(batch_id, layout.staged(part) + ".jsonl")
    ).download_as_bytes()
    outs = [
        output_line(orjson.loads(l)["request"], f"answer {i}")
        for i, l in enumerate(staged.splitlines())
    ]
    out = store.bucket.blob(
        store.path(batch_id, layout.output(part)) + "/prediction-model-x/predictions.jsonl"
    )
    task = notify.split_task(doc, part, partial=True)
    results = f"batches/{batch_id}/results/"

    # three lines and the start of a fourth
    out.upload_from_string(b"".join(outs[:3]) + outs[3][:40])
    assert not split.split_part(store, doc, part, task)
    assert sum(1 for _ in bucket.list_blobs(prefix=results)) == 3, "the half-written line waits"

    out.upload_from_string(b"".join(outs[:5]))  # a new generation: the fourth completed, a fifth
    assert not split.split_part(store, doc, part, task)
    assert sum(1 for _ in bucket.list_blobs(prefix=results)) == 5

    second = store.bucket.blob(
        store.path(batch_id, layout.output(part)) + "/prediction-model-x/predictions_00001.jsonl"
    )
    # the job's last file, its last line without a newline
    second.upload_from_string(outs[5].rstrip(b"\n"))
    assert split.split_part(store, doc, part, notify.split_task(doc, part))
    done, _ = store.read_json(store.path(batch_id, layout.split_done(part)), SplitDone)
    assert done.counts == {
        "succeeded": 6,
        "failed": 0,
        "duplicate_outputs": 0,
        "unmatched_outputs": 0,
        "missing": 0,
    }
    ordered = b"".join(
        bucket.blob(
            f"batches/{batch_id}/{layout.ordered(part)}{layout.ordered_bucket(b)}"
        ).download_as_bytes()
        for b in range(len(done.buckets))
    )
    assert [orjson.loads(l)["text"] for l in ordered.splitlines()] == [
        f"answer {i}" for i in range(6)
    ]
    assert split.split_part(store, doc, part, task), (
        "a late partial task after the end sees the part split"
    )
    again, _ = store.read_json(store.path(batch_id, layout.split_done(part)), SplitDone)
    assert again == done
