"""What `dropbatch cancel` does to a batch in any state (the CLI's, under the caller's own
credentials: no deployed function imports this module, infra/main.tf leaves it out of the archive).
Before its jobs exist the batch ends at once (the submit function sees cancel_requested); running
jobs are cancelled at Vertex, best effort (a job may still finish); partial results are split
either way by the sweep and the split stage."""

from __future__ import annotations

import dataclasses

from . import batch, vertex
from .errors import PermanentError
from .store import Store


@dataclasses.dataclass
class Cancelled:
    ended: str | None = None  # the batch had already ended: its final state
    before_jobs: bool = False  # it ends before any job is created
    jobs: int = 0  # jobs cancelled at Vertex
    gone: int = 0  # jobs that had already ended or were deleted


def cancel(store: Store, batch_id: str) -> Cancelled:
    doc = (
        store.update_ledger(
            batch_id, lambda d: False if d.state in batch.FINISHED else d.set(cancel_requested=True)
        )
        or store.read_ledger(batch_id)[0]
    )
    if doc.state in batch.FINISHED:
        return Cancelled(ended=doc.final_state or doc.state)
    outcome = Cancelled(
        before_jobs=doc.state in batch.SUBMITTING and not any(p.job for p in doc.parts)
    )
    for p in doc.parts:
        if batch.part_running(p):
            try:
                vertex.cancel_job(store.config, p.job)
                outcome.jobs += 1
            except PermanentError:  # already ended, or deleted: the sweep records what it finds
                outcome.gone += 1
    return outcome
