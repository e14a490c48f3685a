"""prefect_runway.money.prices: prices as data, overrides from a dict or a YAML file."""

from __future__ import annotations

import pytest

from prefect_runway.errors import UnknownPrice
from prefect_runway.money.prices import PriceTable, price, resolution_tier


@pytest.mark.parametrize(
    ("provider", "model", "kwargs", "amount", "unit"),
    [
        ("runway", "gen4_turbo", {"duration": 8}, 40.0, "credits"),
        ("runway", "gen4_turbo", {"duration": 3}, 15.0, "credits"),
        ("runway", "gen4.5", {"duration": 7}, 84.0, "credits"),
        ("runway", "gen4_image", {"ratio": "1280:720"}, 5.0, "credits"),
        ("runway", "gen4_image", {"ratio": "1680:720"}, 5.0, "credits"),
        ("runway", "gen4_image", {"ratio": "1920:1080"}, 8.0, "credits"),
        ("runway", "gen4_image", {"ratio": "1024:1024"}, 8.0, "credits"),
        ("runway", "gen4_image_turbo", {"ratio": "1920:1080"}, 2.0, "credits"),
        ("segmind", "runway-gen4-turbo", {"duration": 10}, 0.5, "USD"),
        ("segmind", "gen3a_turbo", {"duration": 5}, 0.25, "USD"),
        ("aimlapi", "runway/gen4_turbo", {"duration": 5}, 525_000.0, "credits"),
        ("aimlapi", "gen3a_turbo", {"duration": 10}, 1_050_000.0, "credits"),
    ],
)
def test_default_prices(provider, model, kwargs, amount, unit):
    result = price(provider, model, **kwargs)
    assert (result.amount, result.unit) == (amount, unit)
    assert result.source and result.provider == provider


def test_estimates_are_labelled_and_runway_is_not():
    assert price("segmind", "gen4_turbo", duration=5).estimate
    assert "estimate" in price("aimlapi", "gen4_turbo", duration=5).source
    runway = price("runway", "gen4_turbo", duration=5)
    assert not runway.estimate and runway.checked == "2026-11-30"


def test_unknown_and_missing_arguments():
    with pytest.raises(UnknownPrice, match="gen4_image_turbo.*aimlapi"):
        price("aimlapi", "gen4_image_turbo")
    with pytest.raises(ValueError, match="duration"):
        price("runway", "gen4_turbo")
    with pytest.raises(ValueError, match="ratio"):
        price("runway", "gen4_image")


def test_retired_runway_model_keeps_its_last_price_and_says_so():
    last = price("runway", "gen3a_turbo", duration=5)
    assert last.amount == 25 and "retired" in last.source


def test_resolution_tier():
    assert resolution_tier("720:1280") == "720p"
    assert resolution_tier("1360:768") == "1080p"
    with pytest.raises(ValueError, match="ratio"):
        resolution_tier("wide")


def test_overrides_from_a_dict():
    table = PriceTable.default().with_overrides({
        "segmind": {"gen4_turbo": {"amount": 0.06}},
        "runway": {"gen4_image": {"tiers": {"720p": 4, "1080p": 7}}, "gen4_turbo": 6},
        "aimlapi": {"gen4.5": {"amount": 1, "unit": "USD", "per": "second"}},
    })
    overridden = table.price("segmind", "gen4_turbo", duration=5)
    assert overridden.amount == pytest.approx(0.3)
    assert overridden.unit == "USD" and not overridden.estimate
    assert overridden.source == "user override"
    assert table.price("runway", "gen4_image", ratio="720:720").amount == 4
    assert table.price("runway", "gen4_turbo", duration=2).amount == 12
    assert table.price("aimlapi", "gen4.5", duration=3).amount == 3
    # the default table is untouched
    assert price("segmind", "gen4_turbo", duration=5).amount == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"fal": {"gen4_turbo": 1}}, "unknown provider 'fal'"),
        ({"runway": {"gen4_turbo": {"cost": 1}}}, "unknown field"),
        ({"runway": {"new_model": {"amount": 1}}}, "needs unit"),
        ({"runway": {"gen4_turbo": {"amount": -1}}}, ">= 0"),
        ({"runway": {"gen4_turbo": {"unit": "EUR"}}}, "unit must be"),
    ],
)
def test_bad_overrides(overrides, match):
    with pytest.raises(ValueError, match=match):
        PriceTable.default().with_overrides(overrides)


def test_overrides_from_yaml(tmp_path):
    path = tmp_path / "prices.yaml"
    path.write_text("runway:\n  gen4_image_turbo: {amount: 3}\nsegmind:\n  gen4_image: 0.1\n")
    table = PriceTable.from_yaml(path)
    assert table.price("runway", "gen4_image_turbo", ratio="720:720").amount == 3
    assert table.price("segmind", "runway-gen4-image").amount == 0.1
    assert price("runway", "gen4_image_turbo", table=table).amount == 3
