"""What a batch cost: its tokens times the model's batch price, and what the same tokens cost
online.

The price table is prices.json (Vertex AI's public pricing page, with the date it was read); a
deployment overrides or adds models with DROPBATCH_PRICES, a JSON object of the same shape or a path
to one. Prompt tokens are priced as input; candidates and thinking tokens as output (the pricing
page bills thinking as output). A model with no price gets `"estimated": null` and says why, never a
made-up figure.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import orjson

from .errors import UsageError

MILLION = 1_000_000


@functools.cache
def _table(override: str) -> dict:
    table = orjson.loads(resources.files(__package__).joinpath("prices.json").read_bytes())
    if override:
        try:
            extra = orjson.loads(
                override if override.lstrip().startswith("{") else Path(override).read_bytes()
            )
        except (OSError, orjson.JSONDecodeError) as exc:
            raise UsageError(
                f"DROPBATCH_PRICES is neither a JSON object nor a readable JSON file: {exc}"
            ) from None
        table = {
            **table,
            **{k: v for k, v in extra.items() if k != "models"},
            "models": {**table["models"], **extra.get("models", {})},
        }
    return table


def prices(override: str = "") -> dict:
    """The price table, with a deployment's override (Config.prices, DROPBATCH_PRICES) laid over
    it."""
    return _table(override)


def model_key(model: str, models) -> str | None:
    """The price table's entry for a model name or resource: the exact id, else the longest id it
    starts with (gemini-2.5-flash-001 and gemini-2.5-flash-preview-05-20 are priced as
    gemini-2.5-flash)."""
    name = (model or "").rsplit("/", 1)[-1]
    if name in models:
        return name
    matches = [k for k in models if name.startswith(k + "-")]
    return max(matches, key=len) if matches else None


def _priced_by(table: dict, key: str | None) -> dict:
    """Where an estimate's prices come from: the price table's source, date and model entry."""
    return {"price_source": table["source"], "price_date": table["as_of"], "model": key}


def estimate(model: str, usage: dict, table: dict) -> dict:
    """{"currency", "estimated", "online_equivalent", "price_source", "price_date", "model"} for a
    batch's usage (manifest["usage"]); rounded to a millionth of the currency."""
    key = model_key(model, table["models"])
    cost = {
        "currency": table["currency"],
        "estimated": None,
        "online_equivalent": None,
        **_priced_by(table, key),
    }
    if key is None:
        cost["note"] = "no price for this model in the price table (set DROPBATCH_PRICES)"
        return cost
    p = table["models"][key]
    tokens_in = usage.get("prompt_tokens", 0)
    tokens_out = usage.get("candidates_tokens", 0) + usage.get("thoughts_tokens", 0)
    cost["estimated"] = round(
        (tokens_in * p["batch_input"] + tokens_out * p["batch_output"]) / MILLION, 6
    )
    cost["online_equivalent"] = round(
        (tokens_in * p["input"] + tokens_out * p["output"]) / MILLION, 6
    )
    return cost


# Google's token page: "a token is equivalent to about 4 characters for Gemini models"
# (https://cloud.google.com/vertex-ai/generative-ai/docs/multimodal/get-token-count). A request's
# staged JSON bytes over 4 counts its field names and quotes as text too, so for text the estimate
# is above the real count; media referred to by fileData is not in it (then it is a lower bound).
BYTES_PER_TOKEN = 4
# Gemini 2.5 models' largest output, the model pages' "Maximum output tokens": the bound of a
# request that does not set its own (generationConfig.maxOutputTokens, or max_tokens).
DEFAULT_MAX_OUTPUT_TOKENS = 65_536


def output_bound(family: str, payload) -> int:
    """The most output tokens one request may bill: its own limit, else the model's largest;
    embeddings bill no output."""
    if family == "embeddings":
        return 0
    if isinstance(payload, dict):
        body = payload.get("body") if isinstance(payload.get("body"), dict) else payload
        limit = (body.get("generationConfig") or {}).get("maxOutputTokens") or body.get(
            "max_tokens"
        )
        if isinstance(limit, int) and limit > 0:
            return limit
    return DEFAULT_MAX_OUTPUT_TOKENS


def bound(
    model: str, input_bytes: int, output_tokens: int, table: dict, input_tokens: int | None = None
) -> dict:
    """The most a batch can cost before it runs: {"currency", "bound", "input_tokens",
    "output_tokens", "model", "price_source", "price_date"}; "bound" is None for a model with no
    price. The input tokens are `input_tokens` when counted (admit.count_tokens), else estimated
    from the bytes."""
    tokens_in = -(-input_bytes // BYTES_PER_TOKEN) if input_tokens is None else input_tokens
    key = model_key(model, table["models"])
    p = table["models"].get(key) if key else None
    return {
        "currency": table["currency"],
        "bound": None
        if p is None
        else round((tokens_in * p["batch_input"] + output_tokens * p["batch_output"]) / MILLION, 6),
        "input_tokens": tokens_in,
        "output_tokens": output_tokens,
        **_priced_by(table, key),
    }


def parse_cap(raw) -> float | None:
    """A cost cap as written in metadata or the environment: a number of the price table's currency,
    0 or empty for none. Raises ValueError for anything else."""
    if raw in (None, ""):
        return None
    value = float(str(raw).strip().lstrip("$"))
    if not value >= 0 or value == float("inf"):
        raise ValueError(raw)
    return value or None
