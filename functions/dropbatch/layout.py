"""The bucket layout under batches/BATCH_ID/ (DESIGN.md "Layout in the bucket", docs/contracts.md
"Bucket layout additions"): the name of every object a batch has, relative to its folder, built here
and nowhere else. `Store.path(batch_id, name)` puts one under its batch's folder."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .documents import Part

LEDGER = "ledger.json"
REPORT = "report.json"
MANIFEST = "manifest.json"
ERRORS = "errors.jsonl"
RESULTS_FILE = "results.jsonl"
RESULTS = "results/"
TABLE_ROWS = "table/rows.jsonl"  # results.jsonl as the results table's rows (table.py)
ORDERED_FINAL = "ordered/final/"  # results.jsonl's composed intermediates
SUBMIT_CHECKPOINT = "submit/checkpoint.json"
ACTIVE = "_active/"  # batches/_active/BATCH_ID: the active index, beside the batches' folders
REUSE = "_reuse/"  # batches/_reuse/SHARD.json: fingerprints of answered requests (reuse.py)
SPEND = "_spend/"  # batches/_spend/DAY/BATCH_ID: what each batch ended that day cost (budget.py)


def part_name(part: Part) -> str:
    """A part's name in a round: rR-pPPPPP."""
    return f"r{part.round}-p{part.index:05d}"


# a staged part's objects: what its job is sent and its keys sidecar; the reused sidecar (reuse.py)
STAGED = (".jsonl", ".keys.jsonl")
REUSED = ".reused.jsonl"


def staged(part: Part) -> str:
    """A part's staged input without its suffix (.jsonl, and .keys.jsonl for its keys sidecar): a
    first-round part is input/part-PPPPP, a retry round's input/retry-rR-pPPPPP."""
    return f"input/part-{part.index:05d}" if part.round == 0 else f"input/retry-{part_name(part)}"


def output(part: Part) -> str:
    """Where a part's job writes (its outputUriPrefix)."""
    return f"output/{part_name(part)}"


def split_done(part: Part) -> str:
    return f"split/{part_name(part)}.done.json"


def split_checkpoint(part: Part) -> str:
    return f"split/{part_name(part)}.checkpoint.json"


def split_errors(part: Part) -> str:
    return f"split/{part_name(part)}.errors.jsonl"


def ordered(part: Part) -> str:
    """The folder of a part's results in line order."""
    return f"ordered/{part_name(part)}/"


def ordered_segment(bucket: int, writer: str, n: int) -> str:
    """Within a part's ordered folder: one segment of a line-range bucket, "LINE result" lines as
    matched, named by the task that wrote it (a partial split and the final one may run at once:
    neither overwrites the other)."""
    return f"seg/b{bucket:05d}-{writer}-s{n:05d}.jsonl"


def ordered_segments(bucket: int) -> str:
    """The prefix of a bucket's segments."""
    return f"seg/b{bucket:05d}-"


def ordered_bucket(bucket: int) -> str:
    """Within a part's ordered folder: a bucket's results in line order."""
    return f"b{bucket:05d}.jsonl"


def result(key: str) -> str:
    return f"{RESULTS}{key}.json"
