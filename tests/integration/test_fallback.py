"""Provider fallback end to end: the emulator's one switch per provider takes Segmind down or
empties its account while AIMLAPI serves; the flows fall over only where Segmind provably
did not take the job, say so in the run's log (read back through the Prefect API), the
sidecar and the summary, and never after a lost answer."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import httpx
import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.logging.handlers import APILogHandler
from pydantic import SecretStr

from prefect_runway import (
    AimlapiCredentials,
    InvalidRequest,
    RunwayCredentials,
    SegmindCredentials,
    SubmissionUncertain,
    image_to_video,
    storyboard,
)
from prefect_runway.emulator import Emulator, EmulatorConfig
from prefect_runway.tasks.ledger import ledger_of
from prefect_runway.tasks.ledger_records import Intent

REF = [{"uri": "https://example.com/ref.png", "tag": "hero"}]
VIDEO_MODELS = ("gen4_turbo", "gen3a_turbo", "gen3_alphaturbo")


@pytest.fixture()
def emu():
    with Emulator(EmulatorConfig(latency=0.3, video_fps=4, runway_concurrency=8)) as emulator:
        yield emulator


def _creds(cls: type, emu: Emulator) -> object:
    return cls(api_key=SecretStr("fallback-key"), base_url=emu.url, poll_interval_seconds=0.1,
               max_poll_interval_seconds=0.3, wait_timeout_seconds=60)


def _switch(emu: Emulator, **plan: object) -> None:
    """Set the fault plan the way an operator does: POST /_emulator/faults."""
    httpx.post(f"{emu.url}/_emulator/faults", json=plan, timeout=10).raise_for_status()


def _stats(emu: Emulator) -> dict:
    return httpx.get(f"{emu.url}/_emulator/stats", timeout=10).json()


def _video_jobs(stats: dict, provider: str) -> int:
    # By each provider's model id: gen4_turbo, runway/gen4_turbo (AIMLAPI), runway-gen4-turbo
    # (a Segmind slug).
    return sum(n for model, n in stats[provider]["submissions"].items()
               if any(m in model.replace("-", "_") for m in VIDEO_MODELS))


async def _logs(flow_run_id: uuid.UUID) -> list[tuple[int, str]]:
    await APILogHandler.aflush()
    async with get_client() as client:
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
        )
    return [(log.level, log.message) for log in logs]


async def _no_open_intent(storage: Path) -> None:
    """Every ledger record is a job or cleared: nothing blocks a later run."""
    ledger = ledger_of(str(storage))
    records = [await ledger.get(scope) for scope in ledger.backend.scopes()]
    assert records and not [r for r in records if isinstance(r, Intent)], records


async def _chain_on_segmind_with_fallback(emu: Emulator, tmp_path: Path, prompt: str, **extra):
    """Still on Runway, video on Segmind with AIMLAPI as the fallback."""
    return await image_to_video(
        still_prompt=f"{prompt} @hero", motion_prompt="waves roll in",
        reference_images=REF, image_credentials=_creds(RunwayCredentials, emu),
        video_credentials=_creds(SegmindCredentials, emu),
        video_fallback=[_creds(AimlapiCredentials, emu)], still_ratio="1280:720", duration=5,
        storage=str(tmp_path), name="harbour", return_state=True, **extra,
    )


async def test_segmind_down_past_its_retries_aimlapi_serves_the_video(emu, tmp_path):
    _switch(emu, providers={"segmind": "unavailable"}, retry_after=0)  # retried at once
    state = await _chain_on_segmind_with_fallback(emu, tmp_path, f"outage {uuid.uuid4().hex[:6]}",
                                                  check_balance=False)
    assert state.is_completed(), state.message
    result = await state.aresult()

    stats = _stats(emu)
    assert _video_jobs(stats, "segmind") == 0 and stats["segmind"]["billable"] == {}
    assert stats["segmind"]["faults"]["503"] >= 2  # refused, retried, refused: past its budget
    assert _video_jobs(stats, "aimlapi") == 1 and stats["aimlapi"]["duplicate_submissions"] == 0
    assert result.video.provider == "aimlapi" and result.still.provider == "runway"
    assert Path(result.video.location).stat().st_size > 0

    # The sidecar says which provider was tried and why it was skipped.
    sidecar = json.loads(Path(result.video.sidecar).read_text())
    assert [(s["provider"], s["reason"], s["stage"]) for s in sidecar["fallback"]] == [
        ("segmind", "unavailable", "submit")]
    assert "503" in sidecar["fallback"][0]["error"]
    assert json.loads(Path(result.still.sidecar).read_text())["fallback"] is None
    # ... and so does the outputs table.
    from prefect_runway.flows.artifacts import output_rows

    rows = {r["kind"]: r for r in output_rows([result.still, result.video])}
    assert rows["video"]["fallback"] == "segmind unavailable" and rows["image"]["fallback"] == ""

    # The run's log says so at WARNING, with the reason.
    logs = await _logs(state.state_details.flow_run_id)
    said = [(level, m) for level, m in logs if "falls back to aimlapi" in m]
    assert len(said) == 1, logs
    assert said[0][0] == 30 and "segmind refused the video 'harbour' (unavailable" in said[0][1]
    # The refused submit left no intent that would block a later run.
    await _no_open_intent(tmp_path)


async def test_segmind_out_of_credits_aimlapi_serves_the_video(emu, tmp_path):
    _switch(emu, providers={"segmind": "empty"})
    prompt = f"empty account {uuid.uuid4().hex[:6]}"
    state = await _chain_on_segmind_with_fallback(emu, tmp_path, prompt)
    assert state.is_completed(), state.message
    result = await state.aresult()

    stats = _stats(emu)
    assert stats["segmind"]["empty"] and stats["segmind"]["credits_remaining"] == 0
    assert stats["segmind"]["errors"].get("406") == 1  # Segmind's answer: 406, not retried
    assert _video_jobs(stats, "segmind") == 0 and _video_jobs(stats, "aimlapi") == 1
    assert result.video.provider == "aimlapi"
    sidecar = json.loads(Path(result.video.sidecar).read_text())
    assert [(s["provider"], s["reason"]) for s in sidecar["fallback"]] == [
        ("segmind", "insufficient_credits")]
    assert "InsufficientCredits" in sidecar["fallback"][0]["error"]

    logs = await _logs(state.state_details.flow_run_id)
    text = "\n".join(m for _, m in logs)
    # The balance check saw it first and let the run through because the video has a fallback.
    assert any(level == 30 and "will fall back to aimlapi if segmind refuses" in m
               for level, m in logs), text
    assert any(level == 30 and "(insufficient_credits" in m and "falls back to aimlapi" in m
               for level, m in logs), text
    await _no_open_intent(tmp_path)

    # A re-run: Segmind refuses again (no intent of the first run blocks it), and the
    # fallback's submit is an ordinary one: cached, so AIMLAPI's job is reused, not paid again.
    again = await _chain_on_segmind_with_fallback(emu, tmp_path, prompt)
    assert again.is_completed(), again.message
    rerun = await again.aresult()
    assert rerun.video.job_id == result.video.job_id
    stats = _stats(emu)
    assert _video_jobs(stats, "aimlapi") == 1 and stats["segmind"]["errors"].get("406") == 2


async def test_a_reason_left_out_of_fallback_on_is_no_fallback(emu, tmp_path):
    from prefect_runway import InsufficientCredits

    _switch(emu, providers={"segmind": "empty"})
    state = await _chain_on_segmind_with_fallback(emu, tmp_path, f"strict {uuid.uuid4().hex[:6]}",
                                                  fallback_on=["unavailable"])
    with pytest.raises(InsufficientCredits) as info:
        await state.aresult()
    assert info.value.provider == "segmind"
    # Refused by the balance check, before anything was sent; AIMLAPI never asked.
    stats = _stats(emu)
    assert stats["runway"]["total_submissions"] == 0
    assert stats["segmind"]["errors"] == {} and stats["aimlapi"]["total_submissions"] == 0


async def test_a_lost_answer_on_segmind_never_falls_back(emu, tmp_path):
    # Segmind takes the job, then the connection drops before its answer.
    _switch(emu, scripted=[{"route": "segmind.submit", "nth": 1, "fault": "reset_after"}])
    state = await _chain_on_segmind_with_fallback(emu, tmp_path, f"lost {uuid.uuid4().hex[:6]}")
    assert state.is_failed()
    with pytest.raises(SubmissionUncertain):
        await state.aresult()

    stats = _stats(emu)
    assert _video_jobs(stats, "segmind") == 1  # the one job Segmind did take
    assert stats["aimlapi"]["total_submissions"] == 0  # never paid twice
    logs = await _logs(state.state_details.flow_run_id)
    assert any("Not falling back from segmind" in m for _, m in logs)
    assert not any("falls back to" in m for _, m in logs)


async def test_a_duration_the_fallback_does_not_take_fails_before_anything_is_sent(emu, tmp_path):
    # Runway takes 3 s clips of gen4_turbo; Segmind, the fallback, takes 5 or 10 only.
    with pytest.raises(InvalidRequest) as info:
        await image_to_video(
            still_prompt="three seconds @hero", motion_prompt="drift", reference_images=REF,
            credentials=_creds(RunwayCredentials, emu),
            video_fallback=[_creds(SegmindCredentials, emu)], duration=3,
            storage=str(tmp_path),
        )
    assert info.value.field == "duration" and info.value.provider == "segmind"
    assert info.value.allowed == [5, 10] and "video_fallback[0]" in str(info.value)
    # Not one request reached the emulator (nor a balance read).
    seen = httpx.get(f"{emu.url}/_emulator/faults", timeout=10).json()["calls"]
    assert seen == {}
    stats = _stats(emu)
    assert all(stats[p]["total_submissions"] == 0 for p in ("segmind", "aimlapi", "runway"))


async def test_an_unknown_fallback_reason_is_refused_before_anything_is_sent(emu, tmp_path):
    with pytest.raises(InvalidRequest) as info:
        await image_to_video(
            still_prompt="p @hero", motion_prompt="m", reference_images=REF,
            credentials=_creds(SegmindCredentials, emu), fallback_on=["outage"],
            video_fallback=[_creds(AimlapiCredentials, emu)], storage=str(tmp_path),
        )
    assert info.value.field == "fallback_on" and "unavailable" in info.value.allowed
    assert httpx.get(f"{emu.url}/_emulator/faults", timeout=10).json()["calls"] == {}


async def test_a_storyboard_shot_falls_over_and_the_summary_says_so(emu, tmp_path):
    tag = uuid.uuid4().hex[:8]
    await _creds(AimlapiCredentials, emu).save(f"fb-aimlapi-{tag}", overwrite=True)
    await _creds(RunwayCredentials, emu).save(f"fb-runway-{tag}", overwrite=True)
    shots = tmp_path / "shots.yaml"
    shots.write_text(yaml.safe_dump({
        "defaults": {"reference_images": REF, "ratio": "1280:720", "duration": 5},
        "shots": [
            {"name": "harbour", "still_prompt": f"harbour {tag} @hero",
             "motion_prompt": "gulls", "video_fallback": [f"aimlapi-credentials/fb-aimlapi-{tag}"]},
            {"name": "lighthouse", "still_prompt": f"lighthouse {tag} @hero",
             "motion_prompt": "waves", "video_credentials": f"runway-credentials/fb-runway-{tag}"},
        ],
    }))
    _switch(emu, providers={"segmind": "submits_unavailable"}, retry_after=0)
    state = await storyboard(
        shots=str(shots), image_credentials=_creds(RunwayCredentials, emu),
        video_credentials=_creds(SegmindCredentials, emu), storage=str(tmp_path / "out"),
        check_balance=False, progress=False, return_state=True,
    )
    assert state.is_completed(), state.message
    summary = await state.aresult()
    harbour, lighthouse = summary.shots
    assert harbour.ok and harbour.video.provider == "aimlapi"
    assert harbour.fallbacks() == ["video on aimlapi after fallback (segmind unavailable)"]
    assert lighthouse.ok and lighthouse.video.provider == "runway" and lighthouse.fallbacks() == []
    assert "(1 on a fallback provider)" in summary.describe()
    markdown = summary.markdown()
    assert "video on aimlapi after fallback (segmind unavailable)" in markdown
    sidecar = json.loads(Path(harbour.video.sidecar).read_text())
    assert sidecar["fallback"][0]["provider"] == "segmind"

    stats = _stats(emu)
    assert _video_jobs(stats, "segmind") == 0
    assert _video_jobs(stats, "aimlapi") == 1 and _video_jobs(stats, "runway") == 1
    logs = await _logs(state.state_details.flow_run_id)
    assert sum("falls back to aimlapi" in m for _, m in logs) == 1


async def test_a_fallback_that_cannot_take_a_shot_names_its_row_before_anything_is_sent(emu, tmp_path):
    from prefect_runway import InvalidShot

    with pytest.raises(InvalidShot) as info:
        await storyboard(
            shots=[{"name": "short", "still_prompt": "s @hero", "reference_images": REF,
                    "motion_prompt": "m", "duration": 4}],
            credentials=_creds(RunwayCredentials, emu),
            video_fallback=[_creds(AimlapiCredentials, emu)], storage=str(tmp_path),
        )
    assert info.value.row == 1 and info.value.field == "duration"
    assert info.value.provider == "aimlapi" and "video_fallback[0]" in str(info.value)
    assert httpx.get(f"{emu.url}/_emulator/faults", timeout=10).json()["calls"] == {}


async def test_a_model_the_provider_retired_starts_on_the_fallback(emu, tmp_path):
    # gen3a_turbo is retired on Runway's own API; Segmind still serves it. Known from the
    # catalogue: Runway is never asked for the video.
    state = await image_to_video(
        still_prompt=f"retired {uuid.uuid4().hex[:6]} @hero", motion_prompt="drift",
        reference_images=REF, credentials=_creds(RunwayCredentials, emu),
        video_fallback=[_creds(SegmindCredentials, emu)], video_model="gen3a_turbo",
        video_ratio="16:9", storage=str(tmp_path), return_state=True,
    )
    assert state.is_completed(), state.message
    result = await state.aresult()
    assert result.video.provider == "segmind" and result.video.model == "gen3a_turbo"
    assert [(s["provider"], s["reason"], s["stage"]) for s in result.video.fallback] == [
        ("runway", "model_unsupported", "plan")]
    sidecar = json.loads(Path(result.video.sidecar).read_text())
    assert sidecar["fallback"] == result.video.fallback
    stats = _stats(emu)
    assert _video_jobs(stats, "runway") == 0 and stats["runway"]["errors"] == {}
    assert _video_jobs(stats, "segmind") == 1


async def test_a_storyboard_shot_whose_provider_retired_the_model_starts_on_the_fallback(
    emu, tmp_path
):
    # The storyboard's form of the test above: the shot is planned on its route's first
    # provider that serves the model, not refused as an InvalidShot for Runway's retirement.
    tag = uuid.uuid4().hex[:6]
    state = await storyboard(
        shots=[{"name": "retired", "still_prompt": f"retired {tag} @hero", "reference_images": REF,
                "motion_prompt": "drift", "video_model": "gen3a_turbo", "video_ratio": "16:9"},
               {"name": "current", "still_prompt": f"current {tag} @hero", "reference_images": REF,
                "motion_prompt": "drift", "video_ratio": "16:9"}],
        credentials=_creds(RunwayCredentials, emu),
        video_fallback=[_creds(SegmindCredentials, emu)], storage=str(tmp_path),
        check_balance=False, progress=False, return_state=True,
    )
    assert state.is_completed(), state.message
    retired, current = (await state.aresult()).shots
    assert retired.video.provider == "segmind" and retired.video.model == "gen3a_turbo"
    assert [(s["provider"], s["reason"], s["stage"]) for s in retired.video.fallback] == [
        ("runway", "model_unsupported", "plan")]
    assert retired.fallbacks() == ["video on segmind after fallback (runway model_unsupported)"]
    assert current.video.provider == "runway" and current.fallbacks() == []
    stats = _stats(emu)
    assert _video_jobs(stats, "runway") == 1 and stats["runway"]["errors"] == {}
    assert _video_jobs(stats, "segmind") == 1


def test_prefect_runway_plan_prices_a_retired_models_shot_on_its_fallback(emu, tmp_path, capsys):
    from prefect_runway.cli import main

    tag = uuid.uuid4().hex[:6]
    runway, segmind = f"runway-credentials/plan-{tag}", f"segmind-credentials/plan-{tag}"
    _creds(RunwayCredentials, emu).save(f"plan-{tag}", overwrite=True)  # sync outside a loop
    _creds(SegmindCredentials, emu).save(f"plan-{tag}", overwrite=True)
    shots = tmp_path / "shots.yaml"
    shots.write_text(yaml.safe_dump({"shots": [
        {"name": "retired", "still_prompt": "harbour @hero", "reference_images": REF,
         "motion_prompt": "drift", "video_model": "gen3a_turbo", "video_ratio": "16:9",
         "video_fallback": [segmind]},
    ]}))
    assert main(["plan", str(shots), "--credentials", runway]) == 0
    table = capsys.readouterr().out
    assert re.search(r"^segmind\s+gen3a_turbo\s+1\s", table, re.M), table
    assert re.search(r"^runway\s+gen4_image\s+1\s", table, re.M), table
    assert "runway    gen3a_turbo" not in table
    assert _video_jobs(_stats(emu), "segmind") == 0  # priced, nothing sent
