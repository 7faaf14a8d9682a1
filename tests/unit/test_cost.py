"""Cost per batch (cost.py): the price table's shape and rules, model matching, overrides, unpriced
models."""

from __future__ import annotations

import orjson
import pytest
from dropbatch import cost
from dropbatch.errors import UsageError


def test_the_table_says_where_its_prices_come_from_and_batch_is_half_of_online():
    table = cost.prices()
    assert table["source"].startswith("https://cloud.google.com/vertex-ai/generative-ai/pricing")
    assert table["as_of"] and table["currency"] == "USD"
    for model, p in table["models"].items():
        # the pricing page's Batch API column: 50% of the online price, for input and output alike
        assert p["batch_input"] == pytest.approx(p["input"] / 2) and p[
            "batch_output"
        ] == pytest.approx(p["output"] / 2), model
        assert p["output"] > p["input"] > 0, model


def test_versions_and_resources_are_priced_as_their_model():
    models = cost.prices()["models"]
    assert cost.model_key("gemini-2.5-flash", models) == "gemini-2.5-flash"
    assert cost.model_key("gemini-2.5-flash-001", models) == "gemini-2.5-flash"
    assert cost.model_key("gemini-2.5-flash-lite-preview-06-17", models) == "gemini-2.5-flash-lite"
    assert (
        cost.model_key(
            "projects/p/locations/us-central1/publishers/google/models/gemini-2.5-pro", models
        )
        == "gemini-2.5-pro"
    )
    assert cost.model_key("gemini-2.5-flashy", models) is None
    assert cost.model_key("text-embedding-005", models) is None


def test_estimate_prices_thinking_as_output():
    table = cost.prices()
    p = table["models"]["gemini-2.5-flash"]
    usage = {
        "prompt_tokens": 2_000_000,
        "candidates_tokens": 1_000_000,
        "thoughts_tokens": 1_000_000,
    }
    c = cost.estimate("gemini-2.5-flash", usage, table)
    assert c["estimated"] == pytest.approx(2 * p["batch_input"] + 2 * p["batch_output"])
    assert c["online_equivalent"] == pytest.approx(2 * c["estimated"])
    assert (c["currency"], c["price_source"], c["price_date"], c["model"]) == (
        "USD",
        table["source"],
        table["as_of"],
        "gemini-2.5-flash",
    )
    assert cost.estimate("gemini-2.5-flash", {}, table)["estimated"] == 0


def test_an_unpriced_model_gets_no_figure_and_says_why():
    c = cost.estimate("my-tuned-model", {"prompt_tokens": 10}, cost.prices())
    assert (
        c["estimated"] is None
        and c["online_equivalent"] is None
        and "DROPBATCH_PRICES" in c["note"]
    )


def test_a_deployment_overrides_and_adds_prices(tmp_path):
    extra = {
        "as_of": "2027-01-01",
        "models": {
            "my-tuned-model": {"input": 1, "output": 2, "batch_input": 0.5, "batch_output": 1},
            "gemini-2.5-flash": {"input": 9, "output": 9, "batch_input": 9, "batch_output": 9},
        },
    }
    for override in (orjson.dumps(extra).decode(), str(tmp_path / "p.json")):
        (tmp_path / "p.json").write_bytes(orjson.dumps(extra))
        table = cost.prices(override)
        assert table["as_of"] == "2027-01-01" and "gemini-2.5-pro" in table["models"]
        assert (
            cost.estimate("my-tuned-model", {"prompt_tokens": 1_000_000}, table)["estimated"] == 0.5
        )
        assert (
            cost.estimate("gemini-2.5-flash", {"prompt_tokens": 1_000_000}, table)["estimated"] == 9
        )
    with pytest.raises(UsageError, match="DROPBATCH_PRICES"):
        cost.prices(str(tmp_path / "missing.json"))


def test_the_bound_prices_estimated_input_and_the_output_limits():
    from dropbatch import cost

    table = cost.prices()
    b = cost.bound("gemini-2.5-flash-001", 4001, 1000, table)
    assert b["input_tokens"] == 1001  # 4 bytes a token, rounded up
    assert b["bound"] == round((1001 * 0.15 + 1000 * 1.25) / 1e6, 6)
    assert cost.bound("no-such-model", 10, 10, table)["bound"] is None


@pytest.mark.parametrize(
    "family, payload, tokens",
    [
        ("gemini", {"contents": [], "generationConfig": {"maxOutputTokens": 512}}, 512),
        ("gemini", {"contents": []}, 65_536),
        ("anthropic", {"messages": [], "max_tokens": 300}, 300),
        ("open_models", {"body": {"max_tokens": 40}}, 40),
        ("embeddings", {"content": "x"}, 0),
        ("gemini", {"generationConfig": {"maxOutputTokens": "9"}}, 65_536),
    ],
)
def test_output_bound(family, payload, tokens):
    from dropbatch import cost

    assert cost.output_bound(family, payload) == tokens


@pytest.mark.parametrize(
    "raw, cap", [(None, None), ("", None), ("0", None), ("7.5", 7.5), (" $25 ", 25.0)]
)
def test_parse_cap(raw, cap):
    from dropbatch import cost

    assert cost.parse_cap(raw) == cap


@pytest.mark.parametrize("raw", ["ten", "-1", "nan", "inf"])
def test_a_malformed_cap_raises(raw):
    from dropbatch import cost

    with pytest.raises(ValueError):
        cost.parse_cap(raw)
