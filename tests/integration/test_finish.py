"""The chain's finishing step against the emulator, through ``image_to_video``: the video
upscaled (or retimed) once, stored beside it with its lineage; bad options refused first."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
)
from s3_helpers import aws_credentials, get_object, moto_url, new_bucket  # noqa: F401

from prefect_runway import RunwayCredentials
from prefect_runway.emulator import Emulator, EmulatorConfig
from prefect_runway.emulator.media import probe_video
from prefect_runway.errors import BudgetExceeded, InvalidRequest, InvalidShot
from prefect_runway.flows import image_to_video, storyboard
from prefect_runway.testing.fixtures import _fast

UPSCALER = "magnific_video_upscaler_creative"
#: In every prompt: the submit task's cache outlives a session (an emulator on the same port).
SESSION = uuid.uuid4().hex[:8]


def _runway(emulator) -> dict:
    return emulator.stats()["runway"]


async def _chain(credentials, storage, finish: dict | None,
                 still_prompt: str = "a lighthouse at dusk", **extra):
    """The chain on Runway: a 1280x720 still, 2 s of gen4_turbo, then ``finish``."""
    return await image_to_video(
        still_prompt=f"{still_prompt} {SESSION}", motion_prompt="slow dolly in", seed=7,
        credentials=credentials, storage=str(storage) if isinstance(storage, Path) else storage,
        still={"ratio": "1280:720"},
        video={"model": "gen4_turbo", "duration": 2, "finish": finish}, **extra)


async def test_an_upscale_is_stored_beside_the_video_with_its_lineage_once(
        runway_credentials, runway_emulator, tmp_path):
    before = _runway(runway_emulator)
    out = await _chain(runway_credentials, tmp_path / "out",
                       {"model": UPSCALER, "options": {"resolution": "2k", "flavor": "natural"}})
    assert out.finished is not None and out.video is not None
    video, finished = probe_video(Path(out.video.location).read_bytes()), probe_video(
        Path(out.finished.location).read_bytes())
    assert (video.width, video.height) == (1280, 720)
    assert (finished.width, finished.height) == (2560, 1440)  # 2k: 1440 lines
    assert finished.duration == pytest.approx(video.duration, abs=0.1)
    assert Path(out.finished.location).parent == Path(out.video.location).parent
    assert out.finished.location != out.video.location
    sidecar = json.loads(Path(out.finished.sidecar).read_text())
    assert sidecar["lineage"] == {"key": out.video.key, "location": out.video.location,
                                  "sha256": out.video.sha256}
    assert sidecar["model"] == UPSCALER and sidecar["sha256"] == out.finished.sha256
    assert sidecar["request"]["videoUri"] == f"sha256:{out.video.sha256}"
    assert sidecar["request"]["resolution"] == "2k"
    assert (sidecar["cost"], sidecar["cost_unit"]) == (20, "credits")  # 10 a second, 2 s
    after = _runway(runway_emulator)
    assert after["submissions"].get(UPSCALER, 0) - before["submissions"].get(UPSCALER, 0) == 1
    assert after["total_submissions"] - before["total_submissions"] == 3  # still, video, finish
    async with get_client() as client:  # the run's progress: three steps
        artifacts = await client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[uuid.UUID(out.still.flow_run_id)])))
    [progress] = [a for a in artifacts if a.type == "progress"]
    assert progress.description.endswith("3 of 3 finished: still done, video done, finish done")

    again = await _chain(runway_credentials, tmp_path / "out",
                         {"model": UPSCALER, "options": {"resolution": "2k", "flavor": "natural"}})
    assert again.finished is not None and again.finished.sha256 == out.finished.sha256
    rerun = _runway(runway_emulator)
    assert rerun["total_submissions"] == after["total_submissions"]  # nothing sent again
    assert rerun["credits_used"] == after["credits_used"]  # nothing paid again


async def test_enhance_frame_rate_gives_the_asked_rate_through_an_upload(
        runway_credentials, runway_emulator, tmp_path):
    before = _runway(runway_emulator)
    out = await _chain(runway_credentials, tmp_path / "fps",
                       {"model": "enhance_frame_rate", "options": {"target_framerate": "24"}},
                       still_prompt="a lighthouse retimed", run={"upload": True})
    assert out.finished is not None and out.video is not None
    video = probe_video(Path(out.video.location).read_bytes())
    finished = probe_video(Path(out.finished.location).read_bytes())
    assert video.fps == 4  # the emulator's videos
    assert finished.fps == 24 and (finished.width, finished.height) == (video.width, video.height)
    assert finished.frames == round(video.duration * 24)
    after = _runway(runway_emulator)
    assert after["uploads"] - before["uploads"] == 2  # the still, then the video
    assert json.loads(Path(out.finished.sidecar).read_text())["lineage"]["sha256"] == \
        out.video.sha256


@pytest.mark.parametrize(("finish", "field", "allowed"), [
    ({"model": UPSCALER, "options": {"resolution": "8k"}}, "video.finish.options.resolution",
     ["720p", "1k", "2k", "4k"]),
    ({"model": UPSCALER, "options": {"creativity": 140}}, "video.finish.options.creativity", "0-100"),
    ({"model": "enhance_frame_rate"}, "video.finish.options.target_framerate",
     ["24", "25", "30", "48", "50", "60", "120", "23_98", "29_97", "59_94"]),
    ({"model": "gen4.5"}, "video.finish.model", [UPSCALER, "enhance_frame_rate"]),
])
async def test_bad_finishing_options_are_refused_before_anything_is_billed(
        runway_credentials, runway_emulator, tmp_path, finish, field, allowed):
    before = _runway(runway_emulator)
    with pytest.raises(InvalidRequest) as caught:
        await _chain(runway_credentials, tmp_path, finish)
    assert (caught.value.field, caught.value.allowed) == (field, allowed)
    after = _runway(runway_emulator)
    for counter in ("total_submissions", "credits_used", "uploads"):
        assert after[counter] == before[counter]


async def test_a_finishing_step_on_segmind_is_refused_naming_the_field(
        runway_credentials, segmind_credentials, runway_emulator, tmp_path):
    before = _runway(runway_emulator)["total_submissions"]
    with pytest.raises(InvalidRequest) as caught:
        await _chain(runway_credentials, tmp_path,
                     {"model": UPSCALER, "credentials": segmind_credentials})
    assert caught.value.field == "video.finish.model" and caught.value.provider == "segmind"
    assert "runway" in str(caught.value.allowed)
    assert _runway(runway_emulator)["total_submissions"] == before


async def test_a_budget_refuses_an_upscale_with_no_price_unless_the_block_gives_one(
        runway_credentials, runway_emulator, tmp_path):
    before = _runway(runway_emulator)["total_submissions"]
    finish = {"model": UPSCALER, "options": {"resolution": "720p"}}
    with pytest.raises(BudgetExceeded) as caught:
        await _chain(runway_credentials, tmp_path, finish, budget="USD 5",
                     still_prompt="a lighthouse on a budget")
    assert UPSCALER in str(caught.value)
    assert _runway(runway_emulator)["total_submissions"] == before

    priced = runway_credentials.model_copy(
        update={"prices": {UPSCALER: {"amount": 10, "per": "second"}}})
    out = await _chain(priced, tmp_path, finish, budget="USD 5",
                       still_prompt="a lighthouse on a budget")
    assert out.finished is not None and out.finished.cost == 20


async def test_a_storyboard_shot_with_an_upscale_stores_it_beside_its_video(
        runway_credentials, runway_emulator, tmp_path):
    shot = {"name": "harbour", "still_prompt": f"a harbour at dawn, the shot's own {SESSION}",
            "motion_prompt": "slow pan", "ratio": "1280:720", "video_model": "gen4_turbo",
            "duration": 2, "finish_model": UPSCALER, "finish_options": {"resolution": "720p"}}
    before = _runway(runway_emulator)
    summary = await storyboard(shots=[shot], credentials=runway_credentials,
                               storage=str(tmp_path))
    (result,) = summary.shots
    assert result.status == "completed" and result.finished is not None
    assert result.finished.lineage == {"key": result.video.key,
                                       "location": result.video.location,
                                       "sha256": result.video.sha256}
    assert result.finished.key.startswith("harbour-video-")  # the storyboard's key template
    finished = probe_video(Path(result.finished.location).read_bytes())
    assert (finished.width, finished.height) == (1280, 720)  # 720p of a 1280x720 video
    after = _runway(runway_emulator)
    assert after["submissions"].get(UPSCALER, 0) - before["submissions"].get(UPSCALER, 0) == 1
    assert {(c["model"], c["jobs"]) for c in summary.costs} >= {(UPSCALER, 1)}
    async with get_client() as client:  # the run's graph names the finishing step as such
        runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[UUID(result.video.flow_run_id)])))
    names = {t.name for t in runs}
    assert {"submit video 'harbour' on runway", "submit finish 'harbour' on runway"} <= names

    bad = {**shot, "name": "bad", "finish_options": {"resolution": "8k"}}
    with pytest.raises(InvalidShot) as caught:
        await storyboard(shots=[shot, bad], credentials=runway_credentials,
                         storage=str(tmp_path))
    assert (caught.value.row, caught.value.field) == (2, "finish_options.resolution")
    assert _runway(runway_emulator)["total_submissions"] == after["total_submissions"]


async def test_from_s3_the_video_is_handed_over_as_a_presigned_url_and_paid_once(
        runway_credentials, runway_emulator, moto_url):  # noqa: F811
    bucket = new_bucket(aws_credentials(moto_url), "runway-finish", "clips")
    finish = {"model": UPSCALER, "options": {"resolution": "720p", "sharpen": 10}}
    before = _runway(runway_emulator)
    out = await _chain(runway_credentials, bucket, finish, still_prompt="a lighthouse in S3")
    assert out.finished is not None and out.video is not None
    assert out.finished.location.startswith("s3://runway-finish/clips/")
    finished = probe_video(get_object(bucket, f"clips/{out.finished.key}"))
    assert (finished.width, finished.height) == (1280, 720)
    sidecar = json.loads(get_object(bucket, f"clips/{out.finished.key}.json"))
    assert sidecar["lineage"]["key"] == out.video.key
    assert sidecar["request"]["videoUri"] == f"sha256:{out.video.sha256}"  # not the URL
    after = _runway(runway_emulator)
    assert after["uploads"] == before["uploads"]  # a presigned URL: nothing uploaded
    assert after["total_submissions"] - before["total_submissions"] == 3

    again = await _chain(runway_credentials, bucket, finish, still_prompt="a lighthouse in S3")
    assert again.finished is not None and again.finished.sha256 == out.finished.sha256
    rerun = _runway(runway_emulator)
    assert rerun["total_submissions"] == after["total_submissions"]
    assert rerun["credits_used"] == after["credits_used"]


async def test_an_upscale_past_the_budget_once_the_video_cost_more_names_the_stored_video(
        tmp_path):
    config = EmulatorConfig(latency=0.3, video_fps=4,
                            price_overrides={"runway": {"gen4_turbo": {"amount": 20}}})
    with Emulator(config) as emulator:
        credentials = _fast(RunwayCredentials, emulator.url).model_copy(
            update={"prices": {UPSCALER: {"amount": 10, "per": "second"}}})
        # Planned: 5 (still) + 10 (2 s of video) + 20 (2 s upscaled) = 35; the video costs 40.
        with pytest.raises(BudgetExceeded, match="the finished video was not started: the video "
                           "cost 40 credits and it would pass the budget of 40") as caught:
            await _chain(credentials, tmp_path, {"model": UPSCALER}, budget=40)
        stored = str(caught.value).rsplit("stored at ", 1)[1]
        assert Path(stored).is_file() and probe_video(Path(stored).read_bytes()).width == 1280
        assert [c["model"] for c in emulator.charges()] == ["gen4_image", "gen4_turbo"]
