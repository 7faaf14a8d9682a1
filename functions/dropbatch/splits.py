"""What the split stage leaves for the finishing steps: each part's done document and its errors, in line order."""

from __future__ import annotations

import orjson

from . import batch, layout
from .ledger import Store, open_lines


def done_documents(store: Store, doc: dict) -> dict:
    """part name -> the part's split outcome (split/NAME.done.json), None where it is not split."""
    return {batch.part_name(p): store.read_json(store.path(doc["batch_id"], layout.split_done(p)))[0]
            for p in doc["parts"]}


def part_errors(store: Store, batch_id: str, part: dict, done: dict):
    """One split part's errors in line order, read from split/NAME.errors.jsonl."""
    with open_lines(store.bucket.blob(store.path(batch_id, layout.split_errors(part)))) as f:
        for raw in f:
            yield orjson.loads(raw)
