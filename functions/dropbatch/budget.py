"""The project's daily spending cap, DROPBATCH_MAX_DAILY_COST (docs/contracts.md, Spending cap).

What a day has committed is the cost bound (cost.bound, in each ledger's `cost_bound`) of every
active batch that has a job, plus the estimated cost of every batch that ended that day (UTC), kept
as one small object a batch under batches/_spend/DAY/ with the cost in its metadata (one list call
reads a day). A batch whose bound does not fit beside them waits before its first job
(DROPBATCH_OVER_DAILY_COST=wait, the default: its parts wait as for a job slot, a `running` message
says `waiting`) or is rejected (`reject`). A batch that can never fit (its bound alone over the cap,
or a model with no price) is rejected either way.
"""

from __future__ import annotations

from . import cost, layout
from .config import Config
from .documents import Ledger
from .events import utcnow

MODES = ("wait", "reject")


def cap(config: Config) -> float | None:
    """The daily cap, or None. Raises ValueError when it is not a number."""
    return cost.parse_cap(config.max_daily_cost)


def waits(config: Config) -> bool:
    """Does a batch past the daily cap wait for it before its first job (not rejected at once)?"""
    return bool(config.max_daily_cost) and config.over_daily_cost == "wait"


def day() -> str:
    return utcnow().date().isoformat()


def record(store, batch_id: str, amount: float | None) -> None:
    """A batch's cost counts for the day it ended (written again, the same): a small object whose
    metadata is the cost, so that one list call reads a day's."""
    if amount is not None:
        path = store.path(f"{layout.SPEND}{day()}", batch_id)
        store.write_json(path, {"batch_id": batch_id}, metadata={"cost": repr(float(amount))})


def spent(store, day_: str) -> dict[str, float]:
    """{batch id: cost} of the batches that ended on `day_`."""
    return {
        b.name.rsplit("/", 1)[-1]: float((b.metadata or {}).get("cost") or 0)
        for b in store.objects(f"{layout.SPEND}{day_}/")
    }


def committed(store, batch_id: str) -> float:
    """What today has committed besides `batch_id`: ended batches' costs and the bounds of the
    active batches that have a job."""
    ended = spent(store, day())
    running = 0.0
    for other_id in store.active_batches():
        if other_id == batch_id or other_id in ended:
            continue
        other, _ = store.read_ledger(other_id)
        if other is not None and other.cost_bound and any(p.job for p in other.parts):
            running += other.cost_bound
    return sum(ended.values()) + running


def over(store, doc: Ledger) -> dict | None:
    """{"cap", "committed", "bound", "currency"} when the batch's first job must wait for today's
    budget, else None."""
    try:
        limit = cap(store.config)
    except ValueError:  # the submission's check_daily reported it
        return None
    if limit is None or doc.cost_bound is None or any(p.job for p in doc.parts):
        return None
    spent = committed(store, doc.batch_id)
    if spent + doc.cost_bound <= limit:
        return None
    return {
        "for": "budget",
        "cap": limit,
        "committed": round(spent, 6),
        "bound": doc.cost_bound,
        "currency": cost.prices(store.config.prices)["currency"],
    }
