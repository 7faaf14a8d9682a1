"""What the split stage reads and leaves for the others: a part's output files (the sweep watches
them while the job runs), and its done document and errors, in line order (for the finishing steps).
"""

from __future__ import annotations

import orjson

from . import batch, layout
from .documents import Ledger, Part, SplitDone
from .store import Store, open_lines


def done_documents(store: Store, doc: Ledger) -> dict[str, SplitDone | None]:
    """part name -> the part's split outcome (split/NAME.done.json), None where it is not split."""
    return {
        batch.part_name(p): store.read_json(
            store.path(doc.batch_id, layout.split_done(p)), SplitDone
        )[0]
        for p in doc.parts
    }


def part_errors(store: Store, batch_id: str, part: Part, done: SplitDone):
    """One split part's errors in line order, read from split/NAME.errors.jsonl."""
    with open_lines(store.bucket.blob(store.path(batch_id, layout.split_errors(part)))) as f:
        for raw in f:
            yield orjson.loads(raw)


def output_files(store, doc: Ledger, part: Part) -> list:
    """The part's prediction files: under the job's output directory, or, for a job dropbatch lost
    sight of, wherever it wrote under the prefix dropbatch gave it."""
    output_dir = part.output_dir or store.uri(store.path(doc.batch_id, layout.output(part)))
    bucket_name, _, prefix = output_dir[5:].partition("/")
    blobs = store.client.list_blobs(bucket_name, prefix=prefix.rstrip("/") + "/")
    return sorted((b for b in blobs if b.name.endswith(".jsonl")), key=lambda b: b.name)


def arrived(store: Store, doc: Ledger) -> dict:
    """Results written so far for the batch's current round: {"succeeded", "failed"}, from each
    part's done document, or its checkpoint while a partial or budgeted split is under way
    (results/KEY.json exist for them)."""
    counts = {"succeeded": 0, "failed": 0}
    for p in doc.parts:
        if p.round != doc.round:
            continue
        if p.split == "done":
            done = store.read_json(store.path(doc.batch_id, layout.split_done(p)), SplitDone)[0]
            got = done.counts if done else {}
        else:
            checkpoint = (
                store.read_json(store.path(doc.batch_id, layout.split_checkpoint(p)))[0] or {}
            )
            got = (checkpoint.get("state") or {}).get("counts") or {}
        for k in counts:
            counts[k] += int(got.get(k) or 0)
    return counts


def partial_results(store: Store, doc: Ledger) -> tuple[list[dict], int]:
    """While the batch runs: one result per request in the file's order, each with `final`: its
    result object when one is written (final when it succeeded; a failure may still be retried),
    else {"key", "status": "pending", "final": false}; and how many results were there."""
    import concurrent.futures

    from .keys import key_width, line_key

    keys = []
    for p in sorted((p for p in doc.parts if p.round == 0), key=lambda p: p.first_line):
        sidecar = store.bucket.blob(
            store.path(doc.batch_id, layout.staged(p) + ".keys.jsonl")
        ).download_as_bytes()
        keys += [
            key or line_key(line, key_width(doc.lines))
            for line, key, _ in map(orjson.loads, sidecar.splitlines())
        ]
    prefix = store.path(doc.batch_id, layout.RESULTS)
    present = list(store.client.list_blobs(store.bucket, prefix=prefix))
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        got = dict(
            zip(
                (b.name[len(prefix) : -5] for b in present),
                pool.map(lambda b: b.download_as_bytes(), present),
            )
        )
    results = []
    for key in keys:
        result = orjson.loads(got[key]) if key in got else {"key": key, "status": "pending"}
        results.append({**result, "final": result["status"] == "succeeded"})
    return results, len(got)
