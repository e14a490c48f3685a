"""The pure parts of prefect_runway.money: plan pricing, the ledger's rule, budgets."""

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
from prefect_runway.flows.plan import plan_chain
from prefect_runway.models import Generation, GenerationResult, JobState, VideoRequest
from prefect_runway.money.budget import Budget, BudgetGuard
from prefect_runway.money.cost_plan import plan_costs
from prefect_runway.money.costs import Cost, charged_cost

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


def _dear_runway(**extra):
    """Runway at 10 credits a second for gen4_turbo (the block's own price): USD 0.50 for 5 s."""
    return RunwayCredentials(api_key=SecretStr("k"), prices={"gen4_turbo": 10}, **extra)


def test_the_worst_case_takes_every_fallback_and_allowed_resubmit():
    from prefect_runway.flows.fallback import Route
    from prefect_runway.money.cost_plan import Attempts

    chain = _chain(1, "pan")  # a Segmind still (USD 0.05), then a Segmind video (0.25)
    video = Route("video", "video_fallback", [SEGMIND, _dear_runway()])
    plan = plan_costs([chain, _chain(1, "pan")], routes=[(None, video), (None, video)])
    # The expected cost is the first provider's, identical chains once.
    assert plan.totals() == {("segmind", "USD"): 0.3} and plan.requests == 2
    # Each request may make 3 billed jobs (the first, one after a lost job, one after an
    # internal failure); the video on either provider, the dearer in dollars in all.
    assert plan.worst == {("segmind", "USD"): 0.9, ("runway", "credits"): 150.0}
    assert plan.worst_usd == pytest.approx(3 * 0.05 + 3 * 0.50)
    assert plan.worst_case() == [
        "worst case, every fallback and allowed resubmit taken (up to 3 billed jobs a "
        "request): USD 1.65",
        "  at most 150 credits on runway", "  at most 0.9 USD on segmind"]
    assert "| runway | 150 | credits |" in plan.markdown()
    # A number budget is ambiguous once a fallback pays in another unit.
    with pytest.raises(InvalidRequest, match="ambiguous"):
        Budget(100, usd=False).check(plan)

    # Review: each still in 2 variants, one regeneration; 2 unsafe-output retries.
    review = plan_costs([chain], attempts=Attempts(retry_unsafe_output=2, variants=2,
                                                   review=True))
    assert review.rows[0].requests == 2 and review.totals() == {("segmind", "USD"): 0.35}
    assert review.worst == {("segmind", "USD"): pytest.approx(5 * 3 * 0.05 + 5 * 0.25)}


def test_an_unknown_price_is_unbounded_and_a_budget_refuses_it():
    from prefect_runway.errors import NotStarted
    from prefect_runway.money.prices import DEFAULT_ENTRIES, PriceTable

    no_video_price = PriceTable([e for e in DEFAULT_ENTRIES if e.model != "gen4_turbo"])
    plan = plan_costs([_chain(1, "pan")], table=no_video_price)
    assert plan.unpriced == ["gen4_turbo on segmind"] and plan.worst_usd is None
    assert plan.worst_case()[0].startswith("worst case: unbounded: no known price for "
                                           "gen4_turbo on segmind")
    with pytest.raises(BudgetExceeded, match="no known price for gen4_turbo on segmind, so it "
                       "could pass the budget of USD 100.00"):
        Budget(100, usd=True).check(plan)

    async def run() -> None:
        with pytest.raises(NotStarted, match=r"^not started: its video has no known price "
                           r"\(gen4.5 on runway\), so it could pass the budget of 60"):
            await BudgetGuard(Budget(60, usd=False)).admit("runway", None, what="its video",
                                                           model="gen4.5")
        assert (await BudgetGuard(None).admit("runway", None)).run == 0.0  # no budget

    asyncio.run(run())


def test_a_blocks_prices_price_its_jobs_and_are_checked():
    from pydantic import ValidationError

    from prefect_runway.blocks.requests import prepare
    from prefect_runway.money.costs import estimate_step
    from prefect_runway.money.prices import prices_of

    video = VideoRequest(image="https://example.com/a.png", prompt="pan", ratio="1280:720",
                         duration=5)
    assert estimate_step(prepare(video, RUNWAY), credentials=RUNWAY).amount == 25
    assert estimate_step(prepare(video, _dear_runway()), credentials=_dear_runway()).amount == 50
    # A model the table lacks: the provider's unit, per job, unless the block says otherwise.
    block = RunwayCredentials(api_key=SecretStr("k"), prices={
        "gen9": 12, "gen9_video": {"amount": 3, "per": "second"}})
    table = prices_of(block)
    assert (table.price("runway", "gen9").amount, table.price("runway", "gen9").unit) == (12, "credits")
    assert table.price("runway", "gen9_video", duration=4).amount == 12
    assert table.price("runway", "gen9").source == "the credentials block's prices"
    for bad in ({"gen4_turbo": "cheap"}, {"gen4_turbo": {"amount": 1, "per": "minute"}},
                {"gen4_turbo": -1}):
        with pytest.raises(ValidationError, match="prices"):
            RunwayCredentials(api_key=SecretStr("k"), prices=bad)
