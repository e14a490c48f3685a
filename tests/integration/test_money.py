"""Money under control (issue 13), against the emulator and the session's Prefect server.

A plan before the run (exact figures, from the CLI and from ``storyboard(dry_run=True)``), a
budget and a balance that refuse a run before anything is sent, a budget crossed mid-run (no
new jobs, the running ones stored, the summary naming what was not started, the emulator's
charges equal to the ledger), sidecars carrying the charged cost, and the
``prefect-runway.generation.charged`` event read back through the Prefect API.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.events.filters import (
    EventFilter,
    EventNameFilter,
    EventOccurredFilter,
    EventResourceFilter,
)

from prefect_runway import (
    AimlapiCredentials,
    BudgetExceeded,
    InsufficientCredits,
    InvalidRequest,
    RunwayCredentials,
    SegmindCredentials,
    image_to_video,
    storyboard,
)
from prefect_runway.cli import main
from prefect_runway.emulator import Emulator, EmulatorConfig
from prefect_runway.flows.artifacts import output_rows
from prefect_runway.flows.events import CHARGED_EVENT
from prefect_runway.money.budget import Budget
from prefect_runway.money.cost_plan import CostPlan
from prefect_runway.testing.fixtures import _fast

REF = [{"uri": "https://example.com/ref.png", "tag": "hero"}]
#: In every prompt: the submit task's cache (and so a job) must not carry over from an
#: earlier session whose emulator had the same port.
SESSION = uuid.uuid4().hex[:8]


def _submissions(emulator: Emulator) -> int:
    return sum(emulator.stats()[p]["total_submissions"] for p in ("segmind", "aimlapi", "runway"))


def _shot(i: int, **extra: object) -> dict[str, object]:
    return {"name": f"shot-{i:02d}", "still_prompt": f"scene {i}: a harbour at dawn, @hero {SESSION}",
            "reference_images": REF, "motion_prompt": f"move {i}: slow pan", "seed": 100 + i,
            "ratio": "1280:720", "duration": 5, **extra}


@pytest.fixture()
def own_emulator():
    with Emulator(EmulatorConfig(latency=0.3, video_fps=4, runway_concurrency=8)) as emulator:
        yield emulator


def _mixed_shots(runway: str, aimlapi: str) -> list[dict[str, object]]:
    """Five shots on three providers: one duplicate, one shared still.

    The prompts are the test's own (a fresh token): the submit task's cache outlives a session.
    """
    token = uuid.uuid4().hex[:8]
    shots = [
        _shot(1),                                                  # segmind still + video
        _shot(1, name="shot-02"),                                  # identical to shot-01
        _shot(1, name="shot-03", motion_prompt="another move"),    # shares shot-01's still
        _shot(4, video_credentials=runway, duration=10),           # video on Runway, 10 s
        _shot(5, video_credentials=aimlapi),                       # video on AIMLAPI
    ]
    for shot in shots:
        shot["still_prompt"] = f"{shot['still_prompt']} ({token})"
    return shots


EXPECTED_TABLE = """\
provider  model       steps  cached  requests to pay  estimated cost  unit     USD
--------  ----------  -----  ------  ---------------  --------------  -------  ----
aimlapi   gen4_turbo  1      0       1                525000          credits  0.26
runway    gen4_turbo  1      0       1                50              credits  0.50
segmind   gen4_image  5      0       3                0.15            USD      0.15
segmind   gen4_turbo  3      0       2                0.5             USD      0.50
total                 10     0       7                                         1.41

5 shot(s), 10 step(s), 7 request(s) to pay
total aimlapi: 525000 credits
total runway: 50 credits
total segmind: 0.65 USD"""

# After shot-01 ran: its still is in the submit task's cache, not paid again (its video's
# request names the still's bytes, unknown before the run: counted as a request to pay).
EXPECTED_CACHED_TABLE = """\
provider  model       steps  cached  requests to pay  estimated cost  unit     USD
--------  ----------  -----  ------  ---------------  --------------  -------  ----
aimlapi   gen4_turbo  1      0       1                525000          credits  0.26
runway    gen4_turbo  1      0       1                50              credits  0.50
segmind   gen4_image  5      1       2                0.1             USD      0.10
segmind   gen4_turbo  3      0       2                0.5             USD      0.50
total                 10     1       6                                         1.36

5 shot(s), 10 step(s), 6 request(s) to pay
total aimlapi: 525000 credits
total runway: 50 credits
total segmind: 0.6 USD"""


async def _save_blocks(url: str, tag: str) -> dict[str, str]:
    names = {}
    for provider, cls in (("segmind", SegmindCredentials), ("runway", RunwayCredentials),
                          ("aimlapi", AimlapiCredentials)):
        block = _fast(cls, url)
        await block.save(f"money-{tag}-{provider}", overwrite=True)
        names[provider] = f"{cls.get_block_type_slug()}/money-{tag}-{provider}"
    return names


def test_plan_prints_exact_figures_for_a_mixed_storyboard_with_duplicates(
    own_emulator, tmp_path, capsys
):
    names = asyncio.run(_save_blocks(own_emulator.url, "cli"))
    path = tmp_path / "shots.yaml"
    path.write_text(yaml.safe_dump(_mixed_shots(names["runway"], names["aimlapi"])))

    assert main(["plan", str(path), "--credentials", names["segmind"]]) == 0
    assert capsys.readouterr().out.strip() == EXPECTED_TABLE
    assert _submissions(own_emulator) == 0

    # Within a budget in dollars; over it: exit 1, one line; a bad budget: exit 2.
    assert main(["plan", str(path), "--credentials", names["segmind"], "--budget", "USD 1.50"]) == 0
    assert "within the budget of USD 1.50 (1.4125)" in capsys.readouterr().out
    assert main(["plan", str(path), "--credentials", names["segmind"], "--budget", "USD 1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("prefect-runway plan: error: BudgetExceeded: the plan costs 1.4125")
    assert "\n" not in err
    assert main(["plan", str(path), "--credentials", names["segmind"], "--budget", "lots"]) == 2
    assert "budget" in capsys.readouterr().err
    assert main(["plan", str(tmp_path / "missing.yaml"), "--credentials", names["segmind"]]) == 2
    assert _submissions(own_emulator) == 0


async def test_dry_run_returns_the_plan_publishes_it_and_submits_nothing(own_emulator, tmp_path):
    names = await _save_blocks(own_emulator.url, "dry")
    shots = _mixed_shots(names["runway"], names["aimlapi"])
    state = await storyboard(shots=shots, credentials=names["segmind"], storage=str(tmp_path),
                             dry_run=True, return_state=True)
    plan = await state.aresult()
    assert isinstance(plan, CostPlan)
    assert plan.table() == EXPECTED_TABLE
    assert _submissions(own_emulator) == 0

    # shot-01 runs (a still and a video); the plan then finds its still in the cache.
    await storyboard(shots=shots[:1], credentials=names["segmind"], storage=str(tmp_path),
                     preview=None)
    assert _submissions(own_emulator) == 2
    state = await storyboard(shots=shots, credentials=names["segmind"], storage=str(tmp_path),
                             dry_run=True, return_state=True)
    plan = await state.aresult()
    assert plan.table() == EXPECTED_CACHED_TABLE
    assert _submissions(own_emulator) == 2
    async with get_client() as client:  # this run's artifacts (not the first page of all)
        artifacts = await client.read_artifacts(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
    mine = [a for a in artifacts if a.key == "cost-plan"]
    assert mine and "| segmind | gen4_image | 5 | 1 | 2 | 0.1 | USD | 0.10 |" in mine[0].data


async def test_a_plan_over_the_budget_is_refused_and_nothing_is_sent(own_emulator, tmp_path):
    credentials = _fast(SegmindCredentials, own_emulator.url)
    shots = [_shot(i) for i in range(1, 4)]  # 3 x (0.05 + 0.25) = USD 0.90
    with pytest.raises(BudgetExceeded, match="costs 0.9, over the budget of USD 0.50"):
        await storyboard(shots=shots, credentials=credentials, storage=str(tmp_path),
                         budget="USD 0.50")
    with pytest.raises(BudgetExceeded):
        await storyboard(shots=shots, credentials=credentials, storage=str(tmp_path), budget=0.5)
    with pytest.raises(InvalidRequest, match="budget"):
        await storyboard(shots=shots, credentials=credentials, storage=str(tmp_path),
                         budget="five dollars")
    assert _submissions(own_emulator) == 0
    assert own_emulator.charges() == []


async def test_a_plan_over_the_balance_is_refused_and_nothing_is_sent(tmp_path):
    with Emulator(EmulatorConfig(latency=0.3, video_fps=4, credits=0.5)) as emulator:
        credentials = _fast(SegmindCredentials, emulator.url)
        shots = [_shot(i) for i in range(1, 4)]  # USD 0.90 > 0.5
        with pytest.raises(InsufficientCredits, match="needs 0.9 USD on segmind, the balance is 0.5"):
            await storyboard(shots=shots, credentials=credentials, storage=str(tmp_path))
        assert _submissions(emulator) == 0
        assert emulator.charges() == []


async def test_a_budget_crossed_mid_run_stops_new_jobs_and_the_ledger_matches_the_charges(
    tmp_path,
):
    # The emulator charges gen4_turbo 10 credits/s where the client's table says 5: the plan
    # (4 x (5 + 25) = 120 credits) fits the budget of 130, the actual charges do not.
    config = EmulatorConfig(latency=0.3, video_fps=4, runway_concurrency=8,
                            price_overrides={"runway": {"gen4_turbo": {"amount": 10}}})
    with Emulator(config) as emulator:
        credentials = _fast(RunwayCredentials, emulator.url)
        shots = [_shot(i) for i in range(1, 5)]
        state = await storyboard(shots=shots, credentials=credentials, storage=str(tmp_path),
                                 budget=130, concurrency=2, preview=None, return_state=True)
        assert state.is_failed()
        summary = state.data.summary if hasattr(state.data, "summary") else None
        if summary is None:
            with pytest.raises(Exception) as info:
                await state.aresult()
            summary = info.value.summary
        charges = emulator.charges()

    assert summary.completed >= 1
    assert summary.not_started >= 1
    assert summary.completed + summary.not_started == 4
    for shot in summary.shots:
        if shot.status == "completed":  # every job that ran finished and was stored
            for output in (shot.still, shot.video):
                assert Path(output.location).is_file()
        else:
            assert shot.status == "not_started"
            assert shot.error.startswith("not started: its ")
            assert "budget of 130" in shot.error
            assert shot.video is None
    assert "not started" in summary.describe()
    assert "not started: over the budget" in summary.markdown()

    # The ledger (sidecars) equals the emulator's charges, job by job and in total.
    charged = {c["job_id"]: c["charged"] for c in charges}
    stored = {o.job_id: o for s in summary.shots for o in (s.still, s.video) if o is not None}
    assert set(stored) == set(charged)
    for job_id, output in stored.items():
        sidecar = json.loads(Path(output.sidecar).read_text())
        assert sidecar["cost"] == output.cost == charged[job_id]
        assert sidecar["cost_unit"] == "credits" and sidecar["cost_estimated"] is False
    spent = sum(row["spent"] for row in summary.costs)
    assert spent == pytest.approx(sum(charged.values()))
    videos = next(r for r in summary.costs if r["model"] == "gen4_turbo")
    assert videos["spent"] == 50 * sum(1 for s in summary.shots if s.video is not None)
    # What was started stayed within budget by its estimates; no job started past it.
    assert len(charged) < 8


async def test_sidecars_and_tables_carry_the_cost_and_the_charged_event_is_emitted(
    own_emulator, tmp_path
):
    since = datetime.now(timezone.utc) - timedelta(seconds=5)
    segmind = _fast(SegmindCredentials, own_emulator.url)
    runway = _fast(RunwayCredentials, own_emulator.url)
    shots = [_shot(7, video_credentials=None)]
    state = await storyboard(shots=shots, image_credentials=segmind, video_credentials=runway,
                             storage=str(tmp_path), preview=None, budget="USD 1",
                             return_state=True)
    summary = await state.aresult()
    still, video = summary.shots[0].still, summary.shots[0].video
    charged = {c["job_id"]: c["charged"] for c in own_emulator.charges()}

    # Segmind: the balance read before the run minus x-remaining-credits after the still's
    # submit (nothing else in flight), charged; Runway reports the task's cost.
    still_sidecar = json.loads(Path(still.sidecar).read_text())
    assert (still_sidecar["cost"], still_sidecar["cost_unit"], still_sidecar["cost_estimated"]) == (
        0.05, "USD", False)
    assert charged[still.job_id] == 0.05
    video_sidecar = json.loads(Path(video.sidecar).read_text())
    assert (video_sidecar["cost"], video_sidecar["cost_unit"], video_sidecar["cost_estimated"]) == (
        25, "credits", False)
    assert charged[video.job_id] == 25
    assert {(r["provider"], r["model"], r["spent"], r["planned"]) for r in summary.costs} == {
        ("segmind", "gen4_image", 0.05, 0.05), ("runway", "gen4_turbo", 25, 25)}
    assert "## Costs: spent vs plan" in summary.markdown()
    rows = {r["job"]: r for r in output_rows([still, video])}
    assert (rows[still.job_id]["cost"], rows[still.job_id]["cost_unit"],
            rows[still.job_id]["cost_estimated"]) == (0.05, "USD", False)
    assert (rows[video.job_id]["cost"], rows[video.job_id]["cost_unit"],
            rows[video.job_id]["cost_estimated"]) == (25, "credits", False)

    # The event, read back through the API (the server persists events asynchronously).
    wanted = {f"prefect-runway.generation.{still.job_id}", f"prefect-runway.generation.{video.job_id}"}
    found: dict[str, dict] = {}
    event_filter = EventFilter(
        occurred=EventOccurredFilter(since=since),
        event=EventNameFilter(name=[CHARGED_EVENT]),
        resource=EventResourceFilter(id=sorted(wanted)),
    )
    for _ in range(60):  # bounded: at most ~30 s
        async with get_client() as client:
            page = await client.read_events(filter=event_filter, limit=10)
        found = {e.resource.id: e.payload for e in page.events}
        if set(found) == wanted:
            break
        await asyncio.sleep(0.5)
    assert set(found) == wanted
    assert found[f"prefect-runway.generation.{video.job_id}"] == {
        "amount": 25.0, "unit": "credits", "estimated": False, "provider": "runway",
        "model": "gen4_turbo", "kind": "video", "job_id": video.job_id,
        "fingerprint": video.fingerprint,
    }
    assert found[f"prefect-runway.generation.{still.job_id}"]["estimated"] is False


def test_budget_parsing_names_the_field():
    assert Budget.parse("USD 5.00") == Budget(5.0, usd=True)
    assert Budget.parse("$2.5") == Budget(2.5, usd=True)
    assert Budget.parse("300") == Budget(300.0, usd=False)
    assert Budget.parse(12) == Budget(12.0, usd=False)
    for bad in ("EUR 5", -1, True, [1]):
        with pytest.raises(InvalidRequest) as info:
            Budget.parse(bad)  # type: ignore[arg-type]
        assert info.value.field == "budget"


async def test_image_to_video_refuses_over_budget_and_stops_before_a_video_past_it(tmp_path):
    config = EmulatorConfig(latency=0.3, video_fps=4,
                            price_overrides={"runway": {"gen4_image": {"amount": 30}}})
    with Emulator(config) as emulator:
        credentials = _fast(RunwayCredentials, emulator.url)
        args = dict(still_prompt=f"a harbour, @hero {SESSION}", motion_prompt="pan", credentials=credentials,
                    reference_images=REF, still_ratio="1280:720", storage=str(tmp_path),
                    preview=None)
        with pytest.raises(BudgetExceeded, match="the plan costs 30, over the budget of 29"):
            await image_to_video(**args, budget=29)  # 5 (still) + 25 (video), by the table
        assert _submissions(emulator) == 0
        # The plan fits 40, but the still is charged 30: the video would pass the budget.
        with pytest.raises(BudgetExceeded, match="the video was not started: the still cost 30"):
            await image_to_video(**args, budget=40)
        assert [(c["model"], c["charged"]) for c in emulator.charges()] == [("gen4_image", 30)]
