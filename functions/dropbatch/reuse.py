"""Re-drops pay only for what changed (DROPBATCH_REUSE=on; docs/contracts.md, "Reuse").

A request's fingerprint is its model and the request as validated (keys sorted, so key order and
whitespace do not count; labels do), hashed to 128 bits. Once a part is split, the fingerprint of
each request it answered `succeeded` is recorded in the index, batches/_reuse/SHARD.json (256 shards
by the fingerprint's first byte, {"entries": {fingerprint: [batch_id, key]}}, the newest answer
last). While a file is staged, a request whose fingerprint the index holds is not staged for Vertex:
its line goes in the part's reused sidecar, and the split copies the earlier result object instead
of matching an output line. The index is bounded: each shard keeps its DROPBATCH_REUSE_MAX / 256
newest entries. An earlier result that cannot be read any more leaves its line without a result, so
it is `missing` and retried like any other (the sidecar keeps the staged request for that).
"""

from __future__ import annotations

import hashlib
import time

import orjson

from .errors import Conflict, TransientError, UsageError
from .layout import REUSE

SHARDS = 256


def enabled(config) -> bool:
    if config.reuse not in ("on", "off"):
        raise UsageError(f"DROPBATCH_REUSE={config.reuse!r}: say on or off")
    return config.reuse == "on"


def fingerprint(model: str, request) -> str:
    data = orjson.dumps({"model": model, "request": request}, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def shard_path(store, fp: str) -> str:
    return f"{store.prefix}{REUSE}{fp[:2]}.json"


class Lookup:
    """The index as the submit function reads it: a shard on first use, kept for the call."""

    def __init__(self, store):
        self.store, self.shards = store, {}

    def find(self, fp: str) -> list | None:
        """[batch_id, key] of the earlier answer to this request, or None."""
        shard = self.shards.get(fp[:2])
        if shard is None:
            doc = self.store.read_json(shard_path(self.store, fp))[0] or {}
            shard = self.shards[fp[:2]] = doc.get("entries") or {}
        return shard.get(fp)


def record(store, batch_id: str, answered) -> int:
    """Add (fingerprint, key) of the requests a batch answered to the index, each shard under a
    generation precondition (two parts finishing at once both land); the number recorded."""
    by_shard: dict[str, dict] = {}
    for fp, key in answered:
        by_shard.setdefault(fp[:2], {})[fp] = [batch_id, key]
    keep = max(1, store.config.reuse_max // SHARDS)
    for shard, new in by_shard.items():
        path = shard_path(store, shard)
        for attempt in range(20):
            doc, generation = store.read_json(path)
            entries = (doc or {}).get("entries") or {}
            for fp in new:
                entries.pop(fp, None)  # the newest answer goes last: the last to be dropped
            entries.update(new)
            if len(entries) > keep:
                entries = dict(list(entries.items())[-keep:])
            try:
                store.write_json(path, {"entries": entries}, if_generation_match=generation)
                break
            except Conflict:
                time.sleep(min(0.05 * 2**attempt, 1.0))
        else:
            raise TransientError(f"the reuse index shard {shard} kept changing under us")
    return sum(map(len, by_shard.values()))
