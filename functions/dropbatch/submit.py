"""A dropped file: claim the batch once, validate it streaming, stage keyed parts, create the jobs.

Every step can run twice: the claim is a create with if_generation_match=0, a half-finished claim is
taken over only when its lease has run out (batch.take_over), staged bytes are deterministic, and a
job is looked up by its labels before one is created."""

from __future__ import annotations

import contextlib
import io
import time

from . import admit, batch, families, keys, layout, logs, notify, tablesource
from .config import Config, get_config
from .documents import Ledger
from .errors import ConfigurationError, PermanentError, Replaced
from .events import PUBSUB, age_s, now, object_event, pubsub_message
from .jobs import submit_parts
from .lineio import Prefetch, Reader
from .staging import Stager
from .store import ObjectReader, Store, execution_id
from .validate import Report, Validator, price

SUFFIXES = (".jsonl", ".jsonl.gz", tablesource.POINTER_SUFFIX)  # in any letter case


def accepted_name(name: str) -> bool:
    return name.lower().endswith(SUFFIXES)


def handle_event(event) -> None:
    config = get_config()
    if event.get("type") == PUBSUB:
        try:
            attributes = pubsub_message(event)[1]
        except PermanentError:
            attributes = {}
        # a submission that stopped before its budget goes on
        if "dropbatch_continue" in attributes:
            batch_id = str(attributes["dropbatch_continue"])
            if keys.is_batch_id(batch_id):
                token = logs.bind(batch_id=batch_id)
                try:
                    continue_submission(Store(config), batch_id)
                finally:
                    logs.reset(token)
            else:
                logs.warning("ignored: not a batch id in a continuation")
            return
    try:
        ev = object_event(event)
    # a malformed event never becomes valid: acknowledge
    except (PermanentError, ValueError, TypeError) as exc:
        logs.error(f"ignored: malformed event: {exc}", event_type=event.get("type"))
        return
    if ev is None:
        logs.info("ignored: not an object event", event_type=event.get("type"))
        return
    reason = ignore_reason(config, ev)
    if reason:
        logs.info(f"ignored: {reason}", object=ev.name, bucket=ev.bucket, kind=ev.kind)
        return
    submit_object(config, ev.bucket, ev.name, ev.generation)


def ignore_reason(config: Config, ev) -> str | None:
    if ev.bucket != config.bucket:
        return f"bucket {ev.bucket!r} is not the one this function serves ({config.bucket!r})"
    if ev.kind != "finalized":
        return f"{ev.kind} events are not uploads"
    if not ev.name.startswith(config.incoming_prefix):
        return f"outside the trigger prefix {config.incoming_prefix!r}"
    if ev.name.startswith(config.batches_prefix):
        return "written by dropbatch"
    if ev.name.endswith("/"):
        return "a folder placeholder, not a file"
    if not ev.generation:
        return "the event has no object generation"
    age = age_s(ev.time)
    if age > config.max_event_age_s:
        return f"the event is {age:.0f} s old (max {config.max_event_age_s} s)"
    return None


def submit_object(config: Config, bucket: str, name: str, generation: int) -> Ledger | None:
    batch_id = keys.batch_id(bucket, name, generation)
    me = execution_id()
    token = logs.bind(batch_id=batch_id, execution_id=me)
    try:
        store = Store(config)
        doc = claim(store, batch_id, f"gs://{bucket}/{name}", name, generation, me)
        return None if doc is None else run_claimed(store, doc, me)
    finally:
        logs.reset(token)


def continue_submission(store: Store, batch_id: str) -> Ledger | None:
    """A continuation's way in (notify.ask_submit): go on with a submission that checkpointed, whose
    event was lost or whose function died, or a staged retry round; or create the jobs of parts that
    wait for a slot."""
    doc, _ = store.read_ledger(batch_id)
    if doc is not None and doc.state == batch.SUBMITTED:
        return (
            submit_parts(store, batch_id) if any(batch.part_waiting(p) for p in doc.parts) else doc
        )
    me = execution_id()
    doc = take_over(store, batch_id, me)
    return None if doc is None else run_claimed(store, doc, me)


def run_claimed(store: Store, doc: Ledger, me: str) -> Ledger:
    """Advance a claimed batch; a permanent error is recorded and acknowledged, anything else
    retried."""
    try:
        return advance_submission(store, doc)
    except ConfigurationError as exc:  # a missing grant: the batch ends with a message naming it
        notify.fail_refused(store, doc.batch_id, str(exc), doc)
        return doc
    except PermanentError as exc:
        return notify.fail_batch(store, doc, str(exc))
    except BaseException:
        release(store, doc.batch_id, me)
        raise


def claim(
    store: Store, batch_id: str, source: str, name: str, generation: int, me: str
) -> Ledger | None:
    """The ledger, claimed by this execution; None when the batch needs nothing from us."""
    doc = batch.new_claim(batch_id, source, name, generation, me, store.config.claim_lease_s)
    store.mark_active(batch_id)  # first: a claim must never exist without the sweep knowing of it
    if store.create_ledger(doc):
        logs.info("batch claimed", source=source)
        return doc
    return take_over(store, batch_id, me)


def take_over(store: Store, batch_id: str, me: str) -> Ledger | None:
    """Resume a half-finished claim whose owner is gone (its lease ran out)."""
    doc, taken = store.win_ledger(
        batch_id, lambda d: batch.take_over(d, me, store.config.claim_lease_s)
    )
    if not taken:
        logs.info("duplicate delivery: batch already handled", state=doc and doc.state)
        return None
    logs.info("resuming a half-finished claim", state=doc.state)
    return doc


def release(store: Store, batch_id: str, me: str) -> None:
    """Give the lease back after a failure, so the platform's retry can resume at once."""
    try:
        store.update_ledger(batch_id, lambda d: batch.release(d, me) or False, attempts=3)
    except Exception as exc:  # the lease then simply runs out
        logs.warning(f"could not release the claim: {exc}")


def advance_submission(store: Store, doc: Ledger) -> Ledger:
    if batch.out_of_claims(doc):
        return notify.fail_batch(
            store,
            doc,
            f"validating and staging the file did not finish in {batch.MAX_CLAIMS} attempts "
            "(each one ran out of time or memory); split the file into smaller ones",
        )
    if doc.cancel_requested and doc.state == batch.CLAIMED:
        return cancel_unstarted(store, doc)
    if doc.state == batch.CLAIMED:
        doc = validate_and_stage(store, doc)
    if doc.state == batch.STAGED:
        doc = submit_parts(store, doc.batch_id)
    return doc


def cancel_unstarted(store: Store, doc: Ledger) -> Ledger | None:
    """`dropbatch cancel` before any job: the batch ends `cancelled` without reading the file
    again."""
    message = notify.build(
        "cancelled",
        batch_id=doc.batch_id,
        source=doc.source,
        counts={"total": doc.requests},
        error="cancelled before any job was created",
    )
    return notify.end_batch(store, doc.batch_id, batch.DONE, message, final_state="cancelled")


def _open_source(store: Store, doc: Ledger, offset: int = 0):
    """The dropped object at the event's generation, and a reader pinned to it from `offset`. Raises
    Replaced when that generation is no longer the object's (each upload of a name is its own batch;
    this one never reads another's content)."""
    from google.api_core.exceptions import NotFound

    bucket_name, _, name = doc.source[5:].partition("/")
    bucket = store.client.bucket(bucket_name)
    blob = bucket.blob(name, generation=doc.generation)
    try:
        blob.reload()
    except NotFound:
        blob = None
    if blob is None or blob.generation != doc.generation:
        live = bucket.get_blob(name)
        raise Replaced(
            f"generation {doc.generation} of {doc.source} was replaced by a newer upload "
            f"(generation {live.generation}), which is a batch of its own"
            if live is not None
            else f"generation {doc.generation} of {doc.source} was deleted before it was read"
        )
    # pinned to the generation: a replacement mid-read is never read; a deletion mid-read raises
    # NotFound
    return blob, ObjectReader(bucket_name, name, doc.generation, offset)


def reject(store: Store, doc: Ledger, report: Report, webhook: str | None = None) -> Ledger | None:
    """Write the report and end the batch `rejected`: one small message (to the batch's webhook
    too, when it has a good one), the user's object untouched."""
    batch_id = doc.batch_id
    store.write_json(store.path(batch_id, layout.REPORT), report.to_dict())
    summary = report.summary()
    message = notify.build(
        "rejected",
        batch_id=batch_id,
        source=doc.source,
        counts={"total": report.requests, "errors": report.error_count},
        report=store.uri(store.path(batch_id, layout.REPORT)),
        error=summary,
        cost=report.cost_bound if (report.cost_bound or {}).get("over") else None,
    )
    return notify.end_batch(
        store, batch_id, batch.REJECTED, message, error=summary, webhook=webhook
    )


def validate_and_stage(store: Store, doc: Ledger) -> Ledger | None:
    """One streaming pass: each line is validated and, while the file has no error, staged into its
    job's part. Before DROPBATCH_SUBMIT_BUDGET_S the pass stops at a line, saves where it is, and a
    continuation (a message on the uploads topic) goes on from there in another call. An invalid
    file's staged chunks are deleted."""
    config, batch_id = store.config, doc.batch_id
    if not accepted_name(doc.object):
        report = Report(source=doc.source)
        report.add(
            None,
            "unsupported_name",
            None,
            "dropbatch reads files named .jsonl or .jsonl.gz, and BigQuery "
            "table pointers named .bq.json (any letter case); rename the file and upload it again",
            config.max_errors,
        )
        return reject(store, doc, report)
    ckpt_path = store.path(batch_id, layout.SUBMIT_CHECKPOINT)
    checkpoint = (store.read_json(ckpt_path)[0] if doc.progress else None) or {}
    validator = Validator(config, doc.source, checkpoint.get("validator"))
    stager = Stager(store, doc, checkpoint.get("stager"))
    try:
        return _validate_and_stage(store, doc, validator, stager, checkpoint)
    finally:
        stager.close()


@contextlib.contextmanager
def _open_lines(store: Store, doc: Ledger, report: Report, checkpoint: dict):
    """(reader, model, metadata) of the dropped object from where the last call stopped: a file's
    lines (a plain file goes on from its byte offset, a gzip file is decompressed again up to it),
    or a .bq.json pointer's table rows (tablesource). The model is the pointer's, else the object's
    metadata `model`, else the default."""
    config = store.config
    if tablesource.is_pointer(doc.object):
        blob, stream = _open_source(store, doc)
        with stream:
            data = stream.read(tablesource.MAX_POINTER_BYTES + 1)
        pointer, problems = tablesource.parse_pointer(data)
        for field, message in problems:
            report.add(None, "bad_pointer", field, message, config.max_errors)
        pointer = pointer or {}
        model = pointer.get("model") or (blob.metadata or {}).get("model") or config.model
        yield (
            (
                tablesource.TableReader(
                    config,
                    pointer,
                    report,
                    report.lines,
                    checkpoint.get("table_modified"),
                    families.family_of(model).table,
                )
                if pointer
                else Reader(io.BytesIO(), doc.object, config, report)
            ),
            model,
            blob.metadata or {},
        )
        return
    blob, stream = _open_source(
        store, doc, report.bytes if checkpoint and not checkpoint["compressed"] else 0
    )
    with stream, contextlib.closing(Prefetch(stream)) as ahead:
        yield (
            Reader(
                ahead,
                doc.object,
                config,
                report,
                start_line=report.lines,
                skip=report.bytes if checkpoint.get("compressed") else 0,
                compressed=checkpoint.get("compressed"),
            ),
            (blob.metadata or {}).get("model") or config.model,
            blob.metadata or {},
        )


def _validate_and_stage(
    store: Store, doc: Ledger, validator, stager, checkpoint: dict
) -> Ledger | None:
    from google.api_core.exceptions import NotFound

    config, batch_id = store.config, doc.batch_id
    try:
        with _open_lines(store, doc, validator.report, checkpoint) as (reader, model, metadata):
            validator.family = stager.family = families.family_of(model)
            stager.model = model
            validator.report.family = validator.family.name
            # the budget is for reading: a call that is slow to set up still moves on
            stopped = stager.stage(
                reader.lines(), validator, time.monotonic() + config.submit_budget_s
            )
            if stopped is not None:
                validator.report.lines = stopped  # the reader sets it only at the end of the file
                return checkpoint_submission(
                    store, doc, validator, stager, reader.continuation_state()
                )
    except (Replaced, NotFound) as exc:
        report = Report(source=doc.source)
        reason = (
            str(exc)
            if isinstance(exc, Replaced)
            else f"generation {doc.generation} of {doc.source} was replaced or deleted while it "
            "was read; a newer upload is a batch of its own"
        )
        report.add(None, "replaced", None, reason, config.max_errors)
        stager.abandon()
        return reject(store, doc, report)
    report = price(validator.finish(), model, config)
    report = admit.count_tokens(config, report, model, validator.sample)
    webhook = admit.check_metadata(config, report, metadata)
    admit.check_daily(store, report, batch_id)
    logs.info(
        "validated",
        requests=report.requests,
        errors=report.error_count,
        jobs=len(report.jobs),
        continuations=(doc.progress or {}).get("continuations", 0),
    )
    if not report.valid:
        stager.abandon()
        return reject(store, doc, report, webhook)
    store.write_json(store.path(batch_id, layout.REPORT), report.to_dict())
    parts = stager.finish(report.jobs)
    return store.update_ledger(
        batch_id,
        lambda d: batch.move(
            d,
            batch.STAGED,
            model=model,
            requests=report.requests,
            lines=report.lines,
            parts=parts,
            webhook=webhook,
            cost_bound=report.cost_bound["bound"],
        ),
    )


def checkpoint_submission(store: Store, doc: Ledger, validator, stager, where: dict) -> Ledger:
    """Save where the pass stopped (`where`: the reader's continuation_state), give the lease
    back, and ask for a continuation on the uploads topic."""
    batch_id = doc.batch_id
    store.write_json(
        store.path(batch_id, layout.SUBMIT_CHECKPOINT),
        {"validator": validator.state(), "stager": stager.checkpoint(), **where},
    )
    count = (doc.progress or {}).get("continuations", 0) + 1
    doc = store.update_ledger(
        batch_id,
        lambda d: d.set(
            progress={
                "line": validator.report.lines,
                "bytes": validator.report.bytes,
                "continuations": count,
            },
            owner=None,
            lease_until=None,
            continued=now(),
        ),
    )
    notify.ask_submit(store.config, batch_id)
    logs.info(
        "submission checkpointed; continuing in a new call",
        line=validator.report.lines,
        bytes=validator.report.bytes,
        continuations=count,
    )
    return doc
