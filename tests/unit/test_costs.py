"""The pure parts of prefect_runway.costs: plan pricing, the ledger's rule, budgets."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr

from prefect_runway import (
    BudgetExceeded,
    ImageRequest,
    InvalidRequest,
    RunwayCredentials,
    SegmindCredentials,
)
from prefect_runway.costs import Budget, BudgetGuard, Cost, charged_cost, plan_costs
from prefect_runway.models import Generation, GenerationResult, JobState, VideoRequest
from prefect_runway.plan import plan_chain

REF = [{"uri": "https://example.com/ref.png", "tag": "hero"}]
SEGMIND = SegmindCredentials(api_key=SecretStr("k"))
RUNWAY = RunwayCredentials(api_key=SecretStr("k"))


def _chain(seed: int, motion: str, video=SEGMIND, duration: int = 5):
    still = ImageRequest(prompt="a harbour, @hero", reference_images=REF, ratio="1280:720",
                         seed=seed)

    def video_request(image: str, sha: str | None) -> VideoRequest:
        return VideoRequest(image=image, image_sha256=sha, prompt=motion, ratio="1280:720",
                            duration=duration, seed=seed)

    return plan_chain(still, video_request, SEGMIND, video)


def test_identical_chains_and_shared_stills_are_paid_once():
    a = _chain(1, "pan")
    plan = plan_costs([a, _chain(1, "pan"), _chain(1, "tilt"), _chain(2, "pan", RUNWAY, 10)])
    rows = {(r.provider, r.model): (r.steps, r.requests, r.amount, r.unit) for r in plan.rows}
    assert rows == {
        ("segmind", "gen4_image"): (4, 2, 0.1, "USD"),      # seeds 1 (shared 3x) and 2
        ("segmind", "gen4_turbo"): (3, 2, 0.5, "USD"),      # "pan" twice, "tilt"
        ("runway", "gen4_turbo"): (1, 1, 50.0, "credits"),  # 10 s x 5 credits
    }
    assert (plan.shots, plan.steps, plan.requests) == (4, 8, 5)
    assert plan.total_usd == pytest.approx(1.1)
    assert plan.totals() == {("runway", "credits"): 50.0, ("segmind", "USD"): 0.6}


def test_a_number_budget_over_several_units_is_refused_by_name():
    plan = plan_costs([_chain(2, "pan", RUNWAY)])
    with pytest.raises(InvalidRequest) as info:
        Budget(100, usd=False).check(plan)
    assert info.value.field == "budget"
    assert Budget(0.30, usd=True).check(plan) == pytest.approx(0.30)
    with pytest.raises(BudgetExceeded) as over:
        Budget(0.29, usd=True).check(plan)
    assert over.value.planned == pytest.approx(0.30) and over.value.budget == 0.29


def _result(provider: str, model: str, cost: float | None) -> GenerationResult:
    generation = Generation(provider=provider, model=model, kind="video", job_id="j",
                            fingerprint="f", base_url="http://x",
                            request={"ratio": "1280:720", "duration": 5})
    return GenerationResult(generation=generation, state=JobState.SUCCEEDED, outputs=["u"],
                            cost=cost)


def test_the_ledger_takes_the_reported_cost_else_the_estimate_marked():
    assert charged_cost(_result("runway", "gen4_turbo", 30)) == Cost(30.0, "credits", False,
                                                                      "provider")
    guess = charged_cost(_result("segmind", "gen4_turbo", None))
    assert (guess.amount, guess.unit, guess.estimated) == (0.25, "USD", True)
    assert charged_cost(_result("segmind", "no-such-model", None)) is None


def test_the_guard_counts_spent_and_in_flight():
    async def run() -> None:
        guard = BudgetGuard(Budget(60, usd=False))
        first = await guard.reserve("runway", Cost(25, "credits", True, ""))
        second = await guard.reserve("runway", Cost(25, "credits", True, ""))
        assert (first, second) == (25, 25)
        assert await guard.reserve("runway", Cost(25, "credits", True, "")) is None  # 75 > 60
        await guard.settle("runway", first, Cost(5, "credits", False, "provider"))
        assert await guard.reserve("runway", Cost(25, "credits", True, "")) == 25  # 5+25+25
        assert await BudgetGuard(None).reserve("runway", None) == 0.0

    asyncio.run(run())
