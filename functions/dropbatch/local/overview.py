"""What `dropbatch local status` counts beside the addresses, so the numbers the cloud dashboard
charts (infra/monitoring.tf) can be checked without a project: batches by state, the backlog, the
dead letters.

The backlog is read from the ledgers (the emulator reports no subscription backlog): batches still
active, parts waiting for a job slot, jobs queued or running at Vertex, parts waiting to be split.
Dead letters are counted by pulling each dead-letter subscription without acknowledging, then
handing the messages straight back (ack deadline 0), so they stay for a person to read.
"""

from __future__ import annotations

import collections

from .. import batch
from ..constants import JOB_WAITING
from ..store import Store
from .processes import PUSH
from .provision import dead_letter_hold
from .stack import Stack

# a bound on counting: at most MAX_PULLS * 1000 dead letters a subscription are counted
MAX_PULLS = 20


def overview(stack: Stack) -> dict:
    store = Store(stack.config())
    docs = store.ledgers()
    backlog = dict.fromkeys(
        ("parts_waiting_for_a_job", "jobs_queued", "jobs_running", "parts_to_split"), 0
    )
    backlog = {"active_batches": len(store.active_batches()), **backlog}
    for d in docs:
        if d.state in batch.FINISHED:
            continue
        for p in d.parts:
            backlog["parts_waiting_for_a_job"] += batch.part_waiting(p)
            backlog["jobs_queued"] += p.state in JOB_WAITING
            backlog["jobs_running"] += p.state == "JOB_STATE_RUNNING"
            backlog["parts_to_split"] += d.state == batch.SPLITTING and p.split != "done"
    return {
        "batches": dict(collections.Counter(d.final_state or d.state for d in docs)),
        "backlog": backlog,
        "dead_letters": dead_letters(stack),
    }


def dead_letters(stack: Stack) -> dict:
    """{topic key: {"messages": N, "batch_ids": [...]}} for each push subscription's dead-letter
    subscription."""
    from google.cloud import pubsub_v1

    client = pubsub_v1.SubscriberClient()  # PUBSUB_EMULATOR_HOST: the stack's emulator
    out = {}
    try:
        for key in PUSH:
            path = client.subscription_path(stack.project, dead_letter_hold(stack.topics[key]))
            held, batch_ids = [], set()
            for _ in range(MAX_PULLS):
                got = client.pull(
                    subscription=path, max_messages=1000, return_immediately=True, timeout=10
                )
                if not got.received_messages:
                    break
                held += [m.ack_id for m in got.received_messages]
                batch_ids |= {
                    m.message.attributes.get("batch_id") for m in got.received_messages
                } - {None}
            if held:
                client.modify_ack_deadline(subscription=path, ack_ids=held, ack_deadline_seconds=0)
            out[key] = {"messages": len(held), "batch_ids": sorted(batch_ids)[:10]}
    finally:
        client.close()
    return out
