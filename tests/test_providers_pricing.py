"""The pricing table and cost arithmetic."""

import json

import pytest

from bmad.errors import ConfigError
from bmad.gateway.pricing import TABLE_PATH, Pricing


def test_shipped_table_is_dated_and_covers_both_providers():
    table = json.loads(TABLE_PATH.read_text())
    assert table["taken"] >= "2026-01-01" and table["sources"]
    names = set(table["models"])
    assert {"gpt-4o-mini", "gpt-4.1", "gpt-5"} <= names
    assert {"claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-5"} <= names


def test_cost_arithmetic():
    pricing = Pricing.load()
    assert pricing.cost("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.75)
    assert pricing.cost("gpt-4o-mini", 1200, 300) == pytest.approx((1200 * 0.15 + 300 * 0.60) / 1e6)
    assert pricing.cost("claude-sonnet-4", 10, 10) == pytest.approx((10 * 3 + 10 * 15) / 1e6)


def test_dated_and_latest_names_find_their_model():
    pricing = Pricing.load()
    assert pricing.rates("claude-3-5-haiku-20241022") == (0.8, 4.0)
    assert pricing.rates("claude-3-5-haiku-latest") == (0.8, 4.0)
    assert pricing.rates("gpt-4o-mini-2024-07-18") == (0.15, 0.6)
    assert pricing.rates("GPT-4o") == (2.5, 10.0)


def test_unknown_models_cost_nothing_and_say_so():
    pricing = Pricing.load()
    assert not pricing.priced("llama3") and pricing.cost("llama3", 100, 100) == 0.0
    assert pricing.cost("llama3", 1_000_000, 0, "gpt-4o-mini") == pytest.approx(0.15)  # a fallback name


def test_overrides_and_additions():
    pricing = Pricing.load({"gpt-4o-mini": {"input_per_mtok": 1, "output_per_mtok": 2},
                            "llama3": {"input_per_mtok": 0, "output_per_mtok": 0.5}})
    assert pricing.rates("gpt-4o-mini") == (1.0, 2.0)
    assert pricing.cost("llama3", 0, 2_000_000) == pytest.approx(1.0)
    assert pricing.table()["llama3"] == {"input_per_mtok": 0.0, "output_per_mtok": 0.5}


@pytest.mark.parametrize("overrides, key", [
    ({"m": {"input_per_mtok": "1", "output_per_mtok": 1}}, "pricing.m.input_per_mtok"),
    ({"m": {"input_per_mtok": 1, "output_per_mtok": 1, "cached": 1}}, "pricing.m.cached"),
    ({"m": 3}, "pricing.m"),
])
def test_bad_overrides_name_the_key(overrides, key):
    with pytest.raises(ConfigError) as caught:
        Pricing.load(overrides)
    assert key in str(caught.value)
