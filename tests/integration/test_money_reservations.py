"""A budget nothing can pass: every submit priced before it is sent, whatever led to it.

Each test is judged by the emulator's billing counters (``GET /_emulator/charges``,
``GET /_emulator/stats``): a fallback dearer than the plan's provider, twenty chains at once
against a budget for twelve, a review's regenerated still, an unsafe-output retry, and a
block's daily budget shared by two flow processes started together.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect import tags
from prefect.flow_runs import resume_flow_run
from prefect.settings import PREFECT_API_URL
from test_exactly_once import _finish, _kill, _wait_ready
from test_review import paused_run

from prefect_runway import (
    BudgetExceeded,
    RunwayCredentials,
    SegmindCredentials,
    StoryboardFailed,
    generate_image,
    image_to_video,
    storyboard,
)
from prefect_runway.emulator import Emulator, EmulatorConfig
from prefect_runway.money.costs import USD_PER_UNIT
from prefect_runway.money.daily import SPEND_FOLDER, DailyBudgets, block_identity, utc_day
from prefect_runway.testing.fixtures import _fast

REF = [{"uri": "https://example.com/ref.png", "tag": "hero"}]
SCRIPT = Path(__file__).parent / "scripts" / "daily_budget_run.py"
#: Runway charges gen4_turbo 10 credits a second in these tests (the emulator's price), and
#: the Runway block says so (its ``prices``): a 5 s video is USD 0.50 there, 0.25 on Segmind.
DEAR_VIDEO = {"gen4_turbo": {"amount": 10, "per": "second"}}


def _charges(emulator: Emulator) -> list[dict[str, Any]]:
    """Every accepted job's charge, read over HTTP as any client would."""
    return httpx.get(f"{emulator.url}/_emulator/charges", timeout=10).json()


def _stats(emulator: Emulator) -> dict[str, Any]:
    return httpx.get(f"{emulator.url}/_emulator/stats", timeout=10).json()


def _usd(charges: list[dict[str, Any]]) -> float:
    """What the charges cost in dollars (refunds applied)."""
    return round(sum(c["charged"] * USD_PER_UNIT[(c["provider"], c["unit"])]
                     for c in charges), 6)


async def _refusal(state: Any) -> str:
    """The message of the ``BudgetExceeded`` a finished flow run raised."""
    with pytest.raises(BudgetExceeded) as info:
        await state.aresult()
    return str(info.value)


def _switch(emulator: Emulator, **plan: object) -> None:
    httpx.post(f"{emulator.url}/_emulator/faults", json=plan, timeout=10).raise_for_status()


def _shot(token: str, i: int) -> dict[str, object]:
    return {"name": f"shot-{i:02d}", "still_prompt": f"scene {i} {token}, @hero",
            "reference_images": REF, "motion_prompt": f"move {i}", "seed": 100 + i,
            "ratio": "1280:720", "duration": 5}


def _dear_emulator(**extra: Any) -> Emulator:
    return Emulator(EmulatorConfig(latency=0.3, video_fps=4, runway_concurrency=20,
                                   price_overrides={"runway": DEAR_VIDEO}, **extra))


async def test_a_dearer_fallback_past_the_budget_is_refused_before_it_is_sent(tmp_path):
    token = uuid.uuid4().hex[:8]
    with _dear_emulator() as emulator:
        _switch(emulator, providers={"segmind": "empty"})  # Segmind refuses: provably no job
        runway = _fast(RunwayCredentials, emulator.url, prices=DEAR_VIDEO)
        args = dict(still_prompt=f"a harbour {token}, @hero", motion_prompt="pan",
                    reference_images=REF, image_credentials=runway,
                    video_credentials=_fast(SegmindCredentials, emulator.url),
                    video_fallback=[runway], still_ratio="1280:720", duration=5,
                    storage=str(tmp_path), preview=None, progress=False, check_balance=False,
                    return_state=True)
        # The plan (a 5-credit still, USD 0.05, then Segmind's video, 0.25) fits USD 0.40;
        # the video's fallback on Runway (0.50) would not.
        state = await image_to_video(**args, budget="USD 0.40")
        assert (await _refusal(state)).startswith(
            "the video on runway (fallback) was not started: the still cost 5 credits and it "
            "would pass the budget of USD 0.40")
        charges = _charges(emulator)
        assert [(c["provider"], c["model"]) for c in charges] == [("runway", "gen4_image")]
        assert _usd(charges) <= 0.40
        stats = _stats(emulator)
        assert stats["segmind"]["errors"] == {"406": 1}  # asked once, refused, no job
        assert "gen4_turbo" not in stats["runway"]["submissions"]  # never sent

        # With room for it, the same run falls back: the still is reused (not paid again,
        # so not counted), the video goes to Runway, and the spend stays under the cap.
        state = await image_to_video(**args, budget="USD 0.55")
        assert state.is_completed(), state.message
        result = await state.aresult()
        assert result.video.provider == "runway" and result.video.cost == 50
        charges = _charges(emulator)
    assert [(c["provider"], c["model"], c["charged"]) for c in charges] == [
        ("runway", "gen4_image", 5), ("runway", "gen4_turbo", 50)]


async def test_twenty_chains_at_once_against_a_budget_for_twelve_bill_at_most_twelve(tmp_path):
    token = uuid.uuid4().hex[:8]
    with _dear_emulator() as emulator:
        _switch(emulator, providers={"segmind": "empty"})
        runway = _fast(RunwayCredentials, emulator.url, prices=DEAR_VIDEO)
        # The plan: 20 stills on Runway (USD 1.00) and 20 videos on Segmind (5.00) fits
        # USD 7; every video falls back to Runway at USD 0.50: the budget has room for 12.
        state = await storyboard(
            shots=[_shot(token, i) for i in range(20)], image_credentials=runway,
            video_credentials=_fast(SegmindCredentials, emulator.url), video_fallback=[runway],
            storage=str(tmp_path), budget="USD 7", concurrency=20, preview=None,
            progress=False, check_balance=False, return_state=True,
        )
        assert state.is_failed()
        with pytest.raises(StoryboardFailed) as info:
            await state.aresult()
        summary = info.value.summary
        charges = _charges(emulator)

    videos = [c for c in charges if c["model"] == "gen4_turbo"]
    assert all(c["provider"] == "runway" for c in videos)
    assert 1 <= len(videos) <= 12, len(videos)
    assert _usd(charges) <= 7.0
    assert summary.completed == len(videos)
    assert summary.not_started == 20 - len(videos)
    for shot in summary.shots:
        if shot.status == "not_started":
            assert "would pass the budget of USD 7.00" in shot.error, shot.error
            assert shot.video is None


async def test_a_review_regeneration_over_the_budget_is_refused(tmp_path):
    # Runway charges the still 30 credits where the table says 5: after it, a regenerated
    # still (5 by the table) would pass the budget of 34 that the plan (5 + 25) fitted.
    token = uuid.uuid4().hex[:8]
    config = EmulatorConfig(latency=0.3, video_fps=4,
                            price_overrides={"runway": {"gen4_image": {"amount": 30}}})
    with Emulator(config) as emulator:
        tag = f"budget-review-{token}"
        with tags(tag):
            task = asyncio.ensure_future(image_to_video(
                still_prompt=f"a harbour {token}, @hero", motion_prompt="pan",
                reference_images=REF, credentials=_fast(RunwayCredentials, emulator.url),
                still_ratio="1280:720", storage=str(tmp_path), preview=None, progress=False,
                budget=34, review=True, review_mode="pause", review_timeout=120,
                return_state=True,
            ))
        run = await paused_run(tag, task)
        assert [c["model"] for c in _charges(emulator)] == ["gen4_image"]
        await asyncio.to_thread(resume_flow_run, run.id, run_input={"shots": [
            {"shot": "still", "decision": "regenerate", "seed": 4242}]})
        state = await asyncio.wait_for(task, 120)
        with pytest.raises(BudgetExceeded, match=r"^not started: the regenerated still would "
                           r"pass the budget of 34 \(provider's unit\)$"):
            await state.aresult()
        charges = _charges(emulator)
    assert [(c["model"], c["charged"]) for c in charges] == [("gen4_image", 30)]


async def _rejected_once(emulator: Emulator, tmp_path: Path, **extra: Any) -> Any:
    """A Runway chain whose video's first output is rejected by moderation, with a budget of
    30 (the still 5, the video 25) and one retry with a new seed allowed."""
    token = uuid.uuid4().hex[:8]
    return await image_to_video(
        still_prompt=f"a harbour {token}, @hero", motion_prompt=f"pan [unsafe-output] {token}",
        reference_images=REF, credentials=_fast(RunwayCredentials, emulator.url),
        still_ratio="1280:720", duration=5, storage=str(tmp_path), preview=None,
        progress=False, budget=30, retry_unsafe_output=1, **extra,
    )


async def test_an_unsafe_output_retry_over_the_budget_is_refused(tmp_path):
    # The video's output is rejected by moderation and Runway keeps its 25 credits: the plan
    # (5 + 25) fitted the budget of 30, a retry with a new seed (25 more) would not.
    config = EmulatorConfig(latency=0.3, video_fps=4, kept_charges=["unsafe_output"])
    with Emulator(config) as emulator:
        state = await _rejected_once(emulator, tmp_path, return_state=True)
        assert (await _refusal(state)).startswith(
            "the video (retry 1 of 1 with a new seed: its output was rejected) was not "
            "started: the still cost 5 credits and it would pass the budget of 30")
        charges = _charges(emulator)
    assert [(c["model"], c["charged"], c["refunded"]) for c in charges] == [
        ("gen4_image", 5, False), ("gen4_turbo", 25, False)]


async def test_a_refunded_unsafe_output_is_released_and_its_retry_fits(tmp_path):
    # The same run where Runway refunds the rejected output: nothing was spent on it, so
    # the retry fits the budget and is sent.
    with Emulator(EmulatorConfig(latency=0.3, video_fps=4)) as emulator:
        result = await _rejected_once(emulator, tmp_path)
        charges = _charges(emulator)
    assert result.video is not None and result.video.cost == 25
    assert [(c["model"], c["charged"]) for c in charges] == [
        ("gen4_image", 5), ("gen4_turbo", 0), ("gen4_turbo", 25)]


async def test_a_spent_daily_budget_refuses_new_jobs_but_not_a_job_it_would_reuse(tmp_path):
    # generate_image has no plan to check: each submit is priced against the block's daily
    # budget. The first still (5 credits) spends the day's 5; the same still again reuses
    # its job (nothing paid), a new one is refused before it is sent.
    token = uuid.uuid4().hex[:8]
    with Emulator(EmulatorConfig(latency=0.3, video_fps=4)) as emulator:
        credentials = _fast(RunwayCredentials, emulator.url, daily_budget=5)
        args = dict(reference_images=REF, credentials=credentials, ratio="1280:720", seed=3,
                    storage=str(tmp_path))
        first = await generate_image(prompt=f"a harbour {token}, @hero", **args)
        again = await generate_image(prompt=f"a harbour {token}, @hero", **args)
        assert again.job_id == first.job_id
        with pytest.raises(BudgetExceeded, match=r"^not started: the still would pass the "
                           r"daily budget of 5 \(provider's unit\) of runway at "):
            await generate_image(prompt=f"a lighthouse {token}, @hero", **args)
        charges = _charges(emulator)
    assert [(c["model"], c["charged"]) for c in charges] == [("gen4_image", 5)]


async def test_a_model_with_no_known_price_is_refused_unless_the_block_prices_it(
        tmp_path, monkeypatch):
    # A model the client's price table does not know (as when a provider adds one before
    # the table has it): here the table without gen4.5; the emulator still charges for it.
    from prefect_runway.money import prices
    from prefect_runway.money.prices import DEFAULT_ENTRIES, PriceTable

    monkeypatch.setattr(prices, "_DEFAULT_TABLE",
                        PriceTable([e for e in DEFAULT_ENTRIES if e.model != "gen4.5"]))
    token = uuid.uuid4().hex[:8]
    with Emulator(EmulatorConfig(latency=0.3, video_fps=4)) as emulator:
        def run(credentials: RunwayCredentials) -> Any:
            return image_to_video(
                still_prompt=f"a harbour {token}, @hero", motion_prompt="pan",
                reference_images=REF, credentials=credentials, video_model="gen4.5",
                still_ratio="1280:720", duration=5, storage=str(tmp_path), preview=None,
                progress=False, budget="USD 1")

        with pytest.raises(BudgetExceeded, match="no known price for gen4.5 on runway, so it "
                           "could pass the budget of USD 1.00"):
            await run(_fast(RunwayCredentials, emulator.url))
        assert _charges(emulator) == []  # nothing was sent
        priced = _fast(RunwayCredentials, emulator.url,
                       prices={"gen4.5": {"amount": 12, "per": "second"}})
        result = await run(priced)
        charges = _charges(emulator)
    assert result.video.cost == 60
    assert [(c["model"], c["charged"]) for c in charges] == [("gen4_image", 5), ("gen4.5", 60)]


def _start(emulator: Emulator, out: Path, token: str, go: Path, shots: int,
           daily: float) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.update(
        PREFECT_API_URL=str(PREFECT_API_URL.value()), PREFECT_SERVER_ANALYTICS_ENABLED="false",
        BUDGET_URL=emulator.url, BUDGET_OUT=str(out), BUDGET_TOKEN=token,
        BUDGET_SHOTS=str(shots), BUDGET_DAILY=str(daily), BUDGET_GO=str(go),
    )
    return subprocess.Popen([sys.executable, str(SCRIPT)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)


def _outcome(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """The flow process's outcome: its last line of JSON."""
    output = _finish(proc, timeout=180)
    lines = [line for line in output.splitlines() if line.startswith("{")]
    assert lines, output
    return json.loads(lines[-1])


@pytest.mark.timeout(300)
def test_a_daily_budget_holds_across_two_processes_started_together(tmp_path):
    # Each process: a storyboard of 6 shots (6 x (5 + 25) = 180 credits) on one block whose
    # daily budget is 240, all 6 chains at once. Each plan fits the day; both do not. The
    # two see each other's reservations in the spend records' storage, as they are made.
    shots, daily = 6, 240.0
    out, go = tmp_path / "out", tmp_path / "go"
    config = EmulatorConfig(latency=1.0, video_fps=4, runway_concurrency=2 * shots)
    with Emulator(config) as emulator:
        procs = [_start(emulator, out, uuid.uuid4().hex[:8], go, shots, daily)
                 for _ in range(2)]
        try:
            for proc in procs:
                _wait_ready(proc)
            go.touch()  # both start at once
            outcomes = [_outcome(proc) for proc in procs]
        finally:
            for proc in procs:
                if proc.poll() is None:
                    _kill(proc)
        charges = _charges(emulator)

    assert sum(c["charged"] for c in charges) <= daily, (outcomes, charges)
    ran = [o for o in outcomes if "completed" in o]
    assert ran, outcomes  # at least one run was admitted
    assert sum(o["completed"] for o in ran) * 30 <= daily
    # Together they asked for 360: something was not started (or refused before sending).
    assert any(o.get("not_started") or "refused" in o for o in outcomes), outcomes

    # The records say what the emulator charged, and no reservation is left open.
    credentials = RunwayCredentials(api_key="daily-budget-key", base_url=emulator.url,
                                    daily_budget=daily)
    folder = out / SPEND_FOLDER / utc_day() / block_identity(credentials)[0]
    recorded = {json.loads(p.read_text())["job_id"]: json.loads(p.read_text())["amount"]
                for p in folder.glob("*.json")}
    assert recorded == {c["job_id"]: c["charged"] for c in charges}
    entry = DailyBudgets.of([credentials], str(out)).entry(credentials)
    assert asyncio.run(entry.committed()) == (sum(recorded.values()), 0)
