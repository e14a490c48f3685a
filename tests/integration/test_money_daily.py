"""A credentials block's daily budget, across flow runs of one (UTC) day.

The spend of each day is recorded beside the submission ledger in the run's storage; a
second run the same day whose plan would pass the block's daily budget is refused before
anything is sent, and a run that crosses it mid-run stops submitting.
"""

from __future__ import annotations

import json
import uuid

import pytest
from s3_helpers import aws_credentials, get_object, list_keys, moto_url, new_bucket  # noqa: F401

from prefect_runway import BudgetExceeded, RunwayCredentials, image_to_video, storyboard
from prefect_runway.emulator import Emulator, EmulatorConfig
from prefect_runway.models import Generation, GenerationResult, JobState
from prefect_runway.money.costs import Cost
from prefect_runway.money.daily import (
    SPEND_FOLDER,
    DailyBudgets,
    block_identity,
    record_spend,
    utc_day,
)
from prefect_runway.storage.s3 import S3Storage
from prefect_runway.testing.fixtures import _fast

REF = [{"uri": "https://example.com/ref.png", "tag": "hero"}]


def _shots(token: str, *indices: int) -> list[dict[str, object]]:
    return [{"name": f"shot-{i}", "still_prompt": f"scene {i}, @hero {token}",
             "reference_images": REF, "motion_prompt": f"move {i}", "seed": i,
             "ratio": "1280:720", "duration": 5} for i in indices]


def _submissions(emulator: Emulator) -> int:
    return sum(emulator.stats()[p]["total_submissions"] for p in ("segmind", "aimlapi", "runway"))


def _recorded(tmp_path, credentials) -> dict[str, float]:
    folder = tmp_path / SPEND_FOLDER / utc_day() / block_identity(credentials)[0]
    records = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    return {r["job_id"]: r["amount"] for r in records}


async def test_a_second_run_the_same_day_over_the_daily_budget_is_refused(tmp_path):
    token = uuid.uuid4().hex[:8]
    with Emulator(EmulatorConfig(latency=0.3, video_fps=4, runway_concurrency=8)) as emulator:
        # Each shot: a 720p still (5 credits) and 5 s of gen4_turbo (25 credits).
        credentials = _fast(RunwayCredentials, emulator.url, daily_budget=70)
        first = await storyboard(shots=_shots(token, 1, 2), credentials=credentials,
                                 storage=str(tmp_path), preview=None, progress=False)
        assert first.completed == 2
        charged = {c["job_id"]: c["charged"] for c in emulator.charges()}
        assert _recorded(tmp_path, credentials) == charged
        assert sum(charged.values()) == 60
        before = _submissions(emulator)

        # Another flow run, the same day, on the same block: 60 spent + 30 planned > 70.
        with pytest.raises(BudgetExceeded, match=r"the plan costs 30 on runway at .*which "
                           r"spent 60 today .*over the daily budget of 70"):
            await storyboard(shots=_shots(token, 3), credentials=credentials,
                             storage=str(tmp_path), preview=None, progress=False)
        assert _submissions(emulator) == before == 4
        assert len(emulator.charges()) == 4

        # The cap is the block's: another block with its own budget still runs.
        other = _fast(RunwayCredentials, emulator.url.replace("127.0.0.1", "localhost"),
                      daily_budget=70)
        done = await storyboard(shots=_shots(token, 3), credentials=other,
                                storage=str(tmp_path), preview=None, progress=False)
        assert done.completed == 1


async def test_a_run_crossing_the_daily_budget_stops_submitting(tmp_path):
    # The emulator charges gen4_turbo 10 credits/s where the client's table says 5: the plan
    # fits what is left of the day, the actual charges do not.
    token = uuid.uuid4().hex[:8]
    config = EmulatorConfig(latency=0.3, video_fps=4, runway_concurrency=8,
                            price_overrides={"runway": {"gen4_turbo": {"amount": 10}}})
    with Emulator(config) as emulator:
        credentials = _fast(RunwayCredentials, emulator.url, daily_budget=130)
        await storyboard(shots=_shots(token, 1), credentials=credentials,
                         storage=str(tmp_path), preview=None, progress=False)
        assert sum(_recorded(tmp_path, credentials).values()) == 55  # 5 + 50

        # 55 spent + 2 x 30 planned = 115 fits 130. Run one chain at a time: still 1 (60),
        # video 1 charged 50 (110), still 2 (115); video 2's 25 would pass 130.
        state = await storyboard(shots=_shots(token, 2, 3), credentials=credentials,
                                 storage=str(tmp_path), preview=None, progress=False,
                                 concurrency=1, return_state=True)
        assert state.is_failed()
        with pytest.raises(Exception) as info:
            await state.aresult()
        summary = info.value.summary
        charges = emulator.charges()

    assert summary.completed == 1 and summary.not_started == 1
    skipped = next(s for s in summary.shots if s.status == "not_started")
    assert skipped.error.startswith("not started: its video would pass the daily budget of "
                                    "130 (provider's unit) of runway at ")
    assert skipped.still is not None and skipped.video is None
    assert [c["model"] for c in charges] == ["gen4_image", "gen4_turbo", "gen4_image",
                                             "gen4_turbo", "gen4_image"]
    recorded = _recorded(tmp_path, credentials)
    assert recorded == {c["job_id"]: c["charged"] for c in charges}
    assert sum(recorded.values()) == 115


async def test_image_to_video_stops_before_a_video_past_the_daily_budget(tmp_path):
    token = uuid.uuid4().hex[:8]
    config = EmulatorConfig(latency=0.3, video_fps=4,
                            price_overrides={"runway": {"gen4_image": {"amount": 30}}})
    with Emulator(config) as emulator:
        # The plan (5 + 25 by the price table) fits 40 a day; the still is charged 30.
        credentials = _fast(RunwayCredentials, emulator.url, daily_budget=40)
        with pytest.raises(BudgetExceeded, match=r"the video was not started: the still cost 30 "
                           r".*would pass .*daily budget"):
            await image_to_video(still_prompt=f"a harbour, @hero {token}", motion_prompt="pan",
                                 credentials=credentials, reference_images=REF,
                                 still_ratio="1280:720", storage=str(tmp_path), preview=None,
                                 progress=False)
        assert [(c["model"], c["charged"]) for c in emulator.charges()] == [("gen4_image", 30)]
        assert list(_recorded(tmp_path, credentials).values()) == [30]


async def test_the_days_spend_lives_in_s3_beside_the_ledger(moto_url):  # noqa: F811
    bucket = new_bucket(aws_credentials(moto_url), "spend-records", folder="outputs")
    storage = S3Storage(bucket)
    credentials = _fast(RunwayCredentials, "http://127.0.0.1:9", daily_budget="USD 1")
    entry = DailyBudgets.of([credentials], storage).entry(credentials)
    for job_id, amount in (("t-1", 25), ("t-2", 50), ("t-1", 25)):  # t-1 twice: once
        generation = Generation(provider="runway", model="gen4_turbo", kind="video",
                                job_id=job_id, fingerprint="f" * 64, base_url="http://127.0.0.1:9")
        result = GenerationResult(generation=generation, state=JobState.SUCCEEDED, outputs=["u"])
        await record_spend(credentials, storage, result, Cost(amount, "credits", False, "p"))
    assert await entry.spent() == pytest.approx(0.75)  # 75 credits in dollars
    prefix = f"outputs/{SPEND_FOLDER}/{utc_day()}/{block_identity(credentials)[0]}/"
    keys = list_keys(bucket)
    assert len(keys) == 2 and all(k.startswith(prefix) and k.endswith(".json") for k in keys)
    assert {json.loads(get_object(bucket, k))["job_id"] for k in keys} == {"t-1", "t-2"}


def test_plan_checks_a_blocks_daily_budget_against_todays_spend(tmp_path, capsys):
    import asyncio

    import yaml

    from prefect_runway.cli import main

    token = uuid.uuid4().hex[:8]
    with Emulator(EmulatorConfig(latency=0.3, video_fps=4)) as emulator:
        name = f"daily-{token}"
        block = _fast(RunwayCredentials, emulator.url, daily_budget=70)
        block.save(name, overwrite=True)  # sync here: Prefect runs it
        path = tmp_path / "shots.yaml"
        path.write_text(yaml.safe_dump(_shots(token, 1)))  # 5 + 25 credits
        args = ["plan", str(path), "--credentials", f"runway-credentials/{name}",
                "--storage", str(tmp_path)]

        assert main(args) == 0
        assert (f"runway-credentials/{name}: 0 spent today ({utc_day()} UTC), within the "
                f"daily budget of 70 (provider's unit)") in capsys.readouterr().out
        generation = Generation(provider="runway", model="gen4_turbo", kind="video",
                                job_id="earlier", fingerprint="f" * 64, base_url=emulator.url)
        earlier = GenerationResult(generation=generation, state=JobState.SUCCEEDED, outputs=["u"])
        assert asyncio.run(record_spend(block, str(tmp_path), earlier,
                                        Cost(45, "credits", False, "provider")))
        assert main(args) == 1  # 45 + 30 > 70
        err = capsys.readouterr().err
        assert "BudgetExceeded: the plan costs 30 on runway-credentials/" in err
        assert "which spent 45 today" in err
        assert _submissions(emulator) == 0
