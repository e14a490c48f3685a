"""Prices of Runway's API hub: the published ones (with fields that change them), and models
with no known price shown as unknown and refused by a budget unless the block prices them."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from prefect_runway import ImageRequest, RunwayCredentials
from prefect_runway.errors import BudgetExceeded
from prefect_runway.flows.plan import plan_chain
from prefect_runway.models import VideoRequest, runway_api
from prefect_runway.money.budget import Budget
from prefect_runway.money.cost_plan import plan_costs
from prefect_runway.money.prices import DEFAULT_ENTRIES, PriceTable, price

RUNWAY = RunwayCredentials(api_key=SecretStr("k"))
REF = [{"uri": "https://example.com/ref.png", "tag": "hero"}]


@pytest.mark.parametrize(
    ("model", "kwargs", "amount"),
    [
        # Runway's published credit costs (April 2026), as the issue lists them.
        ("gen4.5", {"duration": 10}, 120),
        ("gen4_turbo", {"duration": 10}, 50),
        ("gen4_image", {"ratio": "1280:720"}, 5),
        ("gen4_image", {"ratio": "1920:1080"}, 8),
        ("gen4_image_turbo", {"ratio": "1280:720"}, 2),
        ("veo3.1", {"duration": 8, "body": {"audio": False}}, 160),
        ("veo3.1", {"duration": 8, "body": {"audio": True}}, 320),
        # audio left out: priced as on (the dearer), so a budget is never passed unseen
        ("veo3.1", {"duration": 4, "body": {}}, 160),
        ("veo3.1", {"duration": 4}, 160),
        # gen4.5's outputFormat surcharge a second (the SDK's Gen4_5.output_format)
        ("gen4.5", {"duration": 5, "body": {"outputFormat": "mp4"}}, 60),
        ("gen4.5", {"duration": 5, "body": {"outputFormat": "prores"}}, 85),
        ("gen4.5", {"duration": 5, "body": {"outputFormat": "hdr10"}}, 160),
    ],
)
def test_published_prices(model, kwargs, amount):
    found = price("runway", model, **kwargs)
    assert (found.amount, found.unit, found.estimate) == (amount, "credits", False)
    assert found.source and found.checked


def test_every_priced_hub_model_is_one_the_catalogue_serves_and_names_its_source():
    hub = {m for models in runway_api.RUNWAY_API.values() for m in models}
    for entry in DEFAULT_ENTRIES:
        if entry.provider == "runway" and entry.model != "gen3a_turbo":
            assert entry.model in hub
            assert "April 2026" in entry.source or "pricing" in entry.source
    veo = PriceTable.default().entry("runway", "veo3.1")
    assert veo.checked == "2026-12-07" and "April 2026" in veo.source


def _veo_chain(credentials=RUNWAY, model: str = "veo3.1", duration: int = 8):
    still = ImageRequest(prompt="a harbour, @hero", reference_images=REF, ratio="1280:720", seed=1)

    def video_request(image: str, sha: str | None) -> VideoRequest:
        return VideoRequest(model=model, image=image, image_sha256=sha, prompt="pan",
                            ratio="1280:720", duration=duration)

    return plan_chain(still, video_request, RUNWAY, credentials)


def test_a_veo_plan_is_priced_from_the_request():
    plan = plan_costs([_veo_chain()])
    rows = {(r.provider, r.model): (r.requests, r.amount, r.estimated) for r in plan.rows}
    assert rows == {("runway", "gen4_image"): (1, 5, "5"), ("runway", "veo3.1"): (1, 320, "320")}
    assert plan.total_usd == pytest.approx(3.25)


def test_a_model_with_no_known_price_is_unknown_in_the_plan_and_a_budget_refuses_it():
    plan = plan_costs([_veo_chain(model="kling3.0_standard", duration=5)])
    row = next(r for r in plan.rows if r.model == "kling3.0_standard")
    assert (row.unpriced, row.estimated, row.usd) == (1, "unknown", None)
    assert plan.total_usd is None
    assert "| kling3.0_standard | 1 | 0 | 1 | unknown | credits |" in plan.markdown()
    assert "unknown" in plan.table().splitlines()[3]
    from rich.console import Console

    from prefect_runway.cli.live import cost_plan_table

    console = Console(width=160, record=True, markup=False)
    console.print(cost_plan_table(plan))  # the terminal's table of `prefect-runway plan`
    shown = console.export_text()
    assert "kling3.0_standard" in shown and "unknown" in shown
    assert plan.unpriced == ["kling3.0_standard on runway"]
    with pytest.raises(BudgetExceeded, match="no known price for kling3.0_standard on runway"):
        Budget(100, usd=True).check(plan)
    assert Budget(1000, usd=True).check(plan_costs([_veo_chain()])) == pytest.approx(3.25)


def test_the_blocks_price_lets_a_budget_admit_it():
    priced = RunwayCredentials(api_key=SecretStr("k"),
                               prices={"kling3.0_standard": {"amount": 10, "per": "second"}})
    plan = plan_costs([_veo_chain(priced, model="kling3.0_standard", duration=5)])
    row = next(r for r in plan.rows if r.model == "kling3.0_standard")
    assert (row.unpriced, row.amount, row.estimated) == (0, 50, "50")
    assert plan.unpriced == []
    assert Budget(100, usd=True).check(plan) == pytest.approx(0.55)  # 5 + 50 credits


def test_an_override_keeps_or_replaces_the_extras():
    table = PriceTable.default().with_overrides({"runway": {"veo3.1": {"amount": 25}}})
    assert table.price("runway", "veo3.1", duration=4, body={"audio": True}).amount == 180
    plain = PriceTable.default().with_overrides({"runway": {"veo3.1": {"amount": 25, "extras": {}}}})
    assert plain.price("runway", "veo3.1", duration=4, body={"audio": True}).amount == 100
    with pytest.raises(ValueError, match="extras"):
        PriceTable.default().with_overrides({"runway": {"veo3.1": {"extras": {"audio": 3}}}})
    with pytest.raises(ValueError, match=">= 0"):
        PriceTable.default().with_overrides({"runway": {"veo3.1": {"extras": {"audio": {"true": -1}}}}})
