"""Incremental split (#21): CPU to split a job's output in ten increments, as it appears while the
job runs, against splitting it once at the end, in one run on a local stack of its own.

Two identical files are dropped (their jobs kept queued: only the split is measured). Each part's
prediction output is written by this script from its staged input, as ten files; one part is split
once with all ten present, the other by a `partial` split after each file appears and the final
split after the tenth. CPU is this process's (split_part runs in it). Prints one JSON line:
{"bench": "incremental_split", "requests", "files", "once_cpu_s", "incremental_cpu_s", "overhead"};
goal: overhead <= 0.10.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "functions"), str(ROOT / "tests")]
N, FILES = int(os.environ.get("BENCH_N", "5000")), 10


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(
            DROPBATCH_STATE_DIR=str(Path(tmp) / "state"), DROPBATCH_MAX_JOB_REQUESTS=str(N)
        )
        from dropbatch.local import stack as local

        running = local.up(faults={"queued_s": 3600})
        try:
            os.environ.update(running.client_env())
            print(json.dumps(run(running)))
        finally:
            local.down(wipe=True)


def run(running) -> dict:
    import orjson
    from conftest import Inbox, req
    from dropbatch import layout, notify, split
    from dropbatch.documents import SplitDone
    from dropbatch.keys import batch_id as derive
    from dropbatch.store import Store

    store = Store(running.config())
    inbox = Inbox(running)
    body = b"".join(orjson.dumps(req(f"question {i} " + "word " * 80)) + b"\n" for i in range(N))
    parts = []
    try:
        for name in ("once", "incremental"):
            blob = store.client.bucket(running.bucket).blob(f"incoming/{name}.jsonl")
            blob.upload_from_string(body, content_type="application/jsonl")
            batch_id = derive(running.bucket, blob.name, blob.generation)
            inbox.wait_for(batch_id, "submitted", timeout=120)
            doc, _ = store.read_ledger(batch_id)
            parts.append((doc, doc.parts[0]))
    finally:
        inbox.close()

    def outputs(doc, part) -> list[bytes]:
        staged = store.bucket.blob(
            store.path(doc.batch_id, layout.staged(part) + ".jsonl")
        ).download_as_bytes()
        return [
            orjson.dumps(
                {
                    "status": "",
                    "processed_time": "2026-12-02T00:00:00Z",
                    "request": orjson.loads(l)["request"],
                    "response": {
                        "candidates": [
                            {
                                "content": {"parts": [{"text": f"answer {i}"}], "role": "model"},
                                "finishReason": "STOP",
                            }
                        ],
                        "usageMetadata": {
                            "promptTokenCount": 90,
                            "candidatesTokenCount": 3,
                            "totalTokenCount": 93,
                        },
                    },
                }
            )
            + b"\n"
            for i, l in enumerate(staged.splitlines())
        ]

    def write_file(doc, part, lines, k) -> None:
        chunk = lines[k * len(lines) // FILES : (k + 1) * len(lines) // FILES]
        name = f"prediction-model-bench/predictions_{k:05d}.jsonl"
        store.bucket.blob(
            store.path(doc.batch_id, layout.output(part)) + "/" + name
        ).upload_from_string(b"".join(chunk))

    (doc_a, part_a), (doc_b, part_b) = parts
    for doc, part in parts:
        part.output_dir = store.uri(store.path(doc.batch_id, layout.output(part)))
    lines_a, lines_b = outputs(doc_a, part_a), outputs(doc_b, part_b)
    for k in range(FILES):
        write_file(doc_a, part_a, lines_a, k)
    cpu = time.process_time()
    assert split.split_part(store, doc_a, part_a, notify.split_task(doc_a, part_a))
    once = time.process_time() - cpu

    incremental = 0.0
    for k in range(FILES):
        write_file(doc_b, part_b, lines_b, k)
        cpu = time.process_time()
        assert not split.split_part(
            store, doc_b, part_b, notify.split_task(doc_b, part_b, partial=True)
        )
        incremental += time.process_time() - cpu
    cpu = time.process_time()
    assert split.split_part(store, doc_b, part_b, notify.split_task(doc_b, part_b))
    incremental += time.process_time() - cpu
    for doc, part in parts:  # both splits exact
        done, _ = store.read_json(store.path(doc.batch_id, layout.split_done(part)), SplitDone)
        assert done.counts["succeeded"] == N and done.counts["duplicate_outputs"] == 0, done.counts
    return {
        "bench": "incremental_split",
        "requests": N,
        "files": FILES,
        "once_cpu_s": round(once, 2),
        "incremental_cpu_s": round(incremental, 2),
        "overhead": round(incremental / once - 1, 3),
    }


if __name__ == "__main__":
    main()
