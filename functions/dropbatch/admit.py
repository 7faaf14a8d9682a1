"""Whether a valid file may become jobs, decided before any job exists (docs/contracts.md,
Spending cap and Webhooks): the dropped object's metadata (only the keys dropbatch reads; a good
webhook URL), the batch's cost cap and the project's daily cap. Each problem is an error of the
report, so the batch is rejected with the others."""

from __future__ import annotations

import time

import orjson

from . import budget, cost, logs, vertex, webhooks
from .config import Config
from .errors import DropbatchError
from .store import Store
from .validate import Report

# what dropbatch reads from a dropped object's metadata
METADATA_KEYS = ("model", "max_cost", "webhook")


# countTokens calls for one file stop after this long; what was counted by then is the sample
COUNT_TOKENS_S = 20.0


def count_tokens(config: Config, report: Report, model: str, sample: list) -> Report:
    """The input tokens of the cost bound by Vertex's countTokens, before any cap is checked, for
    the file's first requests (validate.Validator.sample): all of a file that small, else the
    per-character estimate scaled by what the sample measured against its own estimate, and never
    scaled down (the bound stays a bound; media counted by countTokens, not by characters, raise
    it). An error, a denial or the time limit leaves the estimate, with the reason in the report's
    cost_bound (`count_tokens_error`)."""
    if not sample or report.cost_bound is None or report.error_count:
        return report
    counted, tokens, deadline, error = 0, 0, time.monotonic() + COUNT_TOKENS_S, None
    try:
        for _, request in sample:
            if time.monotonic() > deadline:
                break
            tokens += vertex.count_tokens(config, model, orjson.loads(request))
            counted += 1
    except DropbatchError as exc:
        logs.warning("countTokens failed; the per-character estimate stands", error=str(exc)[:200])
        error = type(exc).__name__
    if counted:
        estimated = sum(-(-size // cost.BYTES_PER_TOKEN) for size, _ in sample[:counted])
        bound_in = report.cost_bound["input_tokens"]
        if counted == report.requests:
            bound_in = tokens  # every request counted
        elif tokens > estimated:
            bound_in = -(-bound_in * tokens // estimated)
        report.cost_bound = cost.bound(
            model, report.request_bytes, report.output_tokens, cost.prices(config.prices), bound_in
        ) | {"input_tokens_source": "countTokens", "counted_requests": counted}
    if error:
        report.cost_bound["count_tokens_error"] = error
    return report


def check_metadata(config: Config, report: Report, metadata: dict) -> str | None:
    """Unknown metadata keys, the cost cap and the webhook URL, as errors of the report
    (docs/contracts.md, Spending cap and Webhooks): a batch with any is rejected before any job.
    Keys gcloud writes itself (goog-reserved-*) are not the user's. Returns the batch's own webhook
    endpoint when it has a good one."""
    limit = config.max_errors
    for name in sorted(metadata):
        if name not in METADATA_KEYS and not name.startswith("goog-reserved-"):
            report.add(
                None,
                "unknown_metadata",
                f"metadata.{name[:64]}",
                f"dropbatch reads only the metadata keys {', '.join(METADATA_KEYS)}; remove this "
                "key (a misspelt max_cost would not cap anything) and upload the file again",
                limit,
            )
    check_cap(config, report, metadata.get("max_cost"))
    url = metadata.get("webhook")
    problem = url is not None and webhooks.url_problem(url, bool(config.webhook_loopback))
    if problem:
        report.add(
            None,
            "bad_webhook",
            "metadata.webhook",
            f"{problem}; give an https URL of a public host, like https://hooks.example.com/x",
            limit,
        )
        return None
    return url


def check_cap(config: Config, report: Report, own_cap) -> None:
    """The batch's cap (metadata max_cost, else DROPBATCH_MAX_BATCH_COST) against its cost bound:
    `cap` and `over` go into report.cost_bound, an error into the report when it is over."""
    limit = config.max_errors
    for field, raw in (
        ("metadata.max_cost", own_cap),
        ("DROPBATCH_MAX_BATCH_COST", config.max_batch_cost),
    ):
        try:
            cap = cost.parse_cap(raw)
        except ValueError:
            report.add(
                None,
                "bad_cost_cap",
                field,
                "a cost cap is a number of the price table's currency, like 25 or 7.5 (0: none)",
                limit,
            )
            return
        if cap is not None:
            break
    bound = report.cost_bound
    bound["cap"] = cap
    bound["over"] = cap is not None and (bound["bound"] is None or bound["bound"] > cap)
    if bound["over"]:
        what = (
            "no price for this model in the price table, so no bound"
            if bound["bound"] is None
            else f"the batch can cost up to {bound['bound']:,.4f} {bound['currency']}"
        )
        report.add(
            None,
            "over_cost_cap",
            field,
            f"{what}, over its cap of {cap:,.4f} ({bound['input_tokens']:,} input tokens "
            f"estimated, at most {bound['output_tokens']:,} output tokens); set generationConfig."
            "maxOutputTokens lower, split the file, or raise the cap",
            limit,
        )


def check_daily(store: Store, report: Report, batch_id: str) -> None:
    """The project's daily cap (budget.py): a batch that can never fit it (its bound alone over it,
    or no price) is rejected; with DROPBATCH_OVER_DAILY_COST=reject, one that does not fit beside
    what today has committed too. Otherwise its first job waits (jobs.submit_parts)."""
    config = store.config
    try:
        limit = budget.cap(config)
        if config.over_daily_cost not in budget.MODES:
            raise ValueError(config.over_daily_cost)
    except ValueError:
        report.add(
            None,
            "bad_cost_cap",
            "DROPBATCH_MAX_DAILY_COST",
            "the daily cap is a number of the price table's currency (0: none), and "
            "DROPBATCH_OVER_DAILY_COST is wait or reject; fix the deployment's settings",
            config.max_errors,
        )
        return
    bound = report.cost_bound["bound"]
    if limit is None or not report.valid:
        return
    fits = bound is not None and bound <= limit
    spent = budget.committed(store, batch_id) if fits and config.over_daily_cost == "reject" else 0
    if fits and spent + bound <= limit:
        return
    report.cost_bound.update(daily_cap=limit, committed=round(spent, 6), over=True)
    if bound is None:
        what = "no price for this model in the price table, so no bound"
    elif not fits:
        what = f"the batch can cost up to {bound:,.4f}, more than the whole day's cap"
    else:
        what = f"the batch can cost up to {bound:,.4f} and today has committed {spent:,.4f}"
    report.add(
        None,
        "over_daily_cap",
        "DROPBATCH_MAX_DAILY_COST",
        f"{what}, over the project's daily cap of {limit:,.4f} {report.cost_bound['currency']}; "
        "set generationConfig.maxOutputTokens lower, split the file, or drop it again later",
        config.max_errors,
    )
