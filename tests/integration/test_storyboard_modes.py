"""The storyboard's two other modes through the public flow, against the emulator: a shot with
no still (text-to-video) beside a still -> video shot, and continuity, each shot starting on
the previous shot's last frame (decoded and compared); reruns pay nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from s3_helpers import aws_credentials, get_object, moto_url, new_bucket  # noqa: F401

from prefect_runway import RunwayCredentials, SegmindCredentials, storyboard
from prefect_runway.emulator import Emulator, EmulatorConfig
from prefect_runway.emulator.media import mean_abs_difference, probe_video
from prefect_runway.errors import InvalidRequest, InvalidShot
from prefect_runway.money.cost_plan import CostPlan
from prefect_runway.testing.fixtures import _fast


@pytest.fixture()
def own_emulator():
    """An emulator of the test's own, so its counters are the test's alone."""
    with Emulator(EmulatorConfig(latency=0.3, video_fps=4, runway_concurrency=8)) as emulator:
        yield emulator


def _runway(emulator: Emulator) -> dict:
    return emulator.stats()["runway"]


def _sidecar(output) -> dict:
    return json.loads(Path(output.sidecar).read_text())


STILL_SHOT = {"name": "harbour", "still_prompt": "a harbour at dawn", "motion_prompt": "slow pan",
              "video_model": "gen4_turbo", "ratio": "1280:720", "duration": 2, "seed": 1}
TEXT_SHOT = {"name": "gulls", "motion_prompt": "gulls over the harbour, seen from the pier",
             "video_model": "gen4.5", "ratio": "1280:720", "duration": 3, "seed": 2}


async def test_a_text_to_video_shot_beside_a_still_shot(own_emulator, tmp_path):
    credentials = _fast(RunwayCredentials, own_emulator.url)
    shots = [STILL_SHOT, TEXT_SHOT]
    run = {"preview": None, "check_balance": False}

    plan = await storyboard(shots=shots, credentials=credentials, storage=str(tmp_path),
                            run={**run, "dry_run": True})
    assert isinstance(plan, CostPlan)
    assert (plan.shots, plan.steps) == (2, 3)  # the text-to-video shot is one step
    rows = {r.model: (r.steps, r.requests, r.amount) for r in plan.rows}
    assert rows == {"gen4_image": (1, 1, 5), "gen4_turbo": (1, 1, 10), "gen4.5": (1, 1, 36)}
    assert _runway(own_emulator)["total_submissions"] == 0

    summary = await storyboard(shots=shots, credentials=credentials, storage=str(tmp_path),
                               run=run)
    assert (summary.total, summary.completed, summary.generated) == (2, 2, 2)
    still_shot, text_shot = summary.shots
    assert still_shot.still is not None and still_shot.video.model == "gen4_turbo"
    assert text_shot.still is None and text_shot.video.model == "gen4.5"
    for video in (still_shot.video, text_shot.video):
        data = Path(video.location).read_bytes()
        assert hashlib.sha256(data).hexdigest() == video.sha256 == _sidecar(video)["sha256"]
    info = probe_video(Path(text_shot.video.location).read_bytes())
    assert (info.width, info.height, info.duration) == (1280, 720, 3.0)
    sidecar = _sidecar(text_shot.video)
    assert "promptImage" not in sidecar["request"]
    assert sidecar["request"]["promptText"] == TEXT_SHOT["motion_prompt"]
    assert (sidecar["cost"], sidecar["cost_estimated"]) == (36, False)  # 12 credits a second
    stats = _runway(own_emulator)
    # one job per step: one gen4.5 job, the text-to-video one (its body had no image)
    assert stats["submissions"] == {"gen4_image": 1, "gen4_turbo": 1, "gen4.5": 1}
    assert stats["duplicate_submissions"] == 0
    assert stats["credits_used"] == 5 + 10 + 36
    assert [row["model"] for row in summary.costs] == ["gen4.5", "gen4_image", "gen4_turbo"]

    again = await storyboard(shots=shots, credentials=credentials, storage=str(tmp_path),
                             run=run)
    assert [s.video.sha256 for s in again.shots] == [s.video.sha256 for s in summary.shots]
    rerun = _runway(own_emulator)
    assert rerun["total_submissions"] == stats["total_submissions"]  # nothing sent again
    assert rerun["credits_used"] == stats["credits_used"]  # nothing paid again
    assert rerun["downloads"] == stats["downloads"]
    # and the plan of a rerun knows the text-to-video job is made
    plan = await storyboard(shots=shots, credentials=credentials, storage=str(tmp_path),
                            run={**run, "dry_run": True})
    assert {r.model: (r.cached, r.requests) for r in plan.rows}["gen4.5"] == (1, 0)


@pytest.mark.parametrize("bad, field, allowed", [
    ({"ratio": "1104:832"}, "ratio", ["1280:720", "720:1280"]),  # gen4.5's image_to_video ratio
    ({"video_model": "veo3.1", "duration": 5}, "duration", [4, 6, 8]),
    ({"video_model": "gen4_turbo"}, "still_prompt", None),  # no still, and no text_to_video model
    ({"motion_prompt": ""}, "motion_prompt", None),
])
async def test_a_bad_text_to_video_shot_is_refused_before_anything_is_billed(
        own_emulator, tmp_path, bad, field, allowed):
    credentials = _fast(RunwayCredentials, own_emulator.url)
    with pytest.raises(InvalidShot) as caught:
        await storyboard(shots=[STILL_SHOT, {**TEXT_SHOT, **bad}], credentials=credentials,
                         storage=str(tmp_path))
    assert (caught.value.row, caught.value.field) == (2, field)
    if allowed is not None:
        assert caught.value.allowed == allowed
    if field == "still_prompt":
        assert "text_to_video video_model: gen4.5, veo3.1" in str(caught.value)
    assert _runway(own_emulator)["total_submissions"] == 0
    assert _runway(own_emulator)["credits_used"] == 0


async def test_text_to_video_elsewhere_and_under_review_are_refused(own_emulator, tmp_path):
    segmind = _fast(SegmindCredentials, own_emulator.url)
    runway = _fast(RunwayCredentials, own_emulator.url)
    with pytest.raises(InvalidShot) as caught:  # Segmind has no text_to_video
        await storyboard(shots=[TEXT_SHOT], credentials=segmind, storage=str(tmp_path))
    assert (caught.value.row, caught.value.field) == (1, "video_model")
    with pytest.raises(InvalidRequest) as refused:  # no still for a person to approve
        await storyboard(shots=[STILL_SHOT, TEXT_SHOT], credentials=runway, review=True,
                         storage=str(tmp_path))
    assert refused.value.field == "review" and "'gulls' (row 2)" in str(refused.value)
    stats = own_emulator.stats()
    assert stats["runway"]["total_submissions"] == stats["segmind"]["total_submissions"] == 0


CONTINUED = [
    {"name": "dawn", "still_prompt": "a lighthouse at dawn", "motion_prompt": "slow dolly in",
     "video_model": "gen4_turbo", "ratio": "1280:720", "duration": 2, "seed": 5},
    {"name": "noon", "motion_prompt": "the light turns", "video_model": "gen4_turbo",
     "ratio": "1280:720", "duration": 2, "seed": 6},
    # a still prompt on a continued shot is not used: it starts on the last frame too
    {"name": "dusk", "still_prompt": "unused", "motion_prompt": "gulls circle",
     "video_model": "gen4.5", "ratio": "1280:720", "duration": 2, "seed": 7},
]


async def test_continuity_each_shot_starts_on_the_last_frame_before_it(own_emulator, tmp_path):
    credentials = _fast(RunwayCredentials, own_emulator.url)
    run = {"continuity": True, "preview": None, "check_balance": False}

    plan = await storyboard(shots=CONTINUED, credentials=credentials, storage=str(tmp_path),
                            run={**run, "dry_run": True})
    assert (plan.shots, plan.steps) == (3, 4)  # one still; three videos

    summary = await storyboard(shots=CONTINUED, credentials=credentials,
                               storage=str(tmp_path), run=run)
    assert (summary.total, summary.completed) == (3, 3)
    assert [s.still is not None for s in summary.shots] == [True, False, False]
    videos = [s.video for s in summary.shots]
    infos = [probe_video(Path(v.location).read_bytes()) for v in videos]
    for before, after in zip(infos[:-1], infos[1:], strict=True):  # decoded: the cut is seamless
        assert mean_abs_difference(after.first_frame, before.last_frame) < 4
        assert mean_abs_difference(after.first_frame, before.first_frame) > 1  # it moved on
    for previous, video in zip(videos[:-1], videos[1:], strict=True):
        lineage = _sidecar(video)["first_frame"]
        frame = Path(tmp_path / lineage["frame"]).read_bytes()
        assert lineage["video"] == previous.key and lineage["video_sha256"] == previous.sha256
        assert lineage["frame"] == previous.key + ".last-frame.png"
        assert hashlib.sha256(frame).hexdigest() == lineage["frame_sha256"]
    assert _sidecar(videos[0]).get("first_frame") is None
    stats = _runway(own_emulator)
    assert stats["submissions"] == {"gen4_image": 1, "gen4_turbo": 2, "gen4.5": 1}
    assert stats["duplicate_submissions"] == 0

    again = await storyboard(shots=CONTINUED, credentials=credentials, storage=str(tmp_path),
                             run=run)
    assert [s.video.sha256 for s in again.shots] == [v.sha256 for v in videos]
    assert [_sidecar(s.video).get("first_frame") for s in again.shots] == [
        _sidecar(v).get("first_frame") for v in videos]  # the same frames, byte for byte
    rerun = _runway(own_emulator)
    assert rerun["total_submissions"] == stats["total_submissions"]  # nothing sent again
    assert rerun["credits_used"] == stats["credits_used"]
    assert rerun["uploads"] == stats["uploads"]


async def test_with_continuity_a_failed_shot_stops_the_shots_after_it(own_emulator, tmp_path):
    credentials = _fast(RunwayCredentials, own_emulator.url)
    shots = [dict(shot) for shot in CONTINUED]
    shots[1]["motion_prompt"] += " [fail]"  # the emulator fails this job
    state = await storyboard(shots=shots, credentials=credentials, storage=str(tmp_path),
                             run={"continuity": True, "preview": None, "check_balance": False},
                             return_state=True)
    assert state.is_failed()
    summary = (await state.result(raise_on_failure=False)).summary
    assert [s.status for s in summary.shots] == ["completed", "failed", "failed"]
    assert summary.shots[2].error.startswith("InvalidRequest: run.continuity: not started")
    # the third shot sent nothing: no gen4.5 job
    assert _runway(own_emulator)["submissions"] == {"gen4_image": 1, "gen4_turbo": 2}


async def test_continuity_needs_a_way_to_hand_the_frame_on(own_emulator, tmp_path):
    # Segmind takes images by https URL only; local storage makes none: refused up front.
    credentials = _fast(SegmindCredentials, own_emulator.url)
    shots = [{**shot, "video_model": "gen4_turbo", "ratio": "16:9", "duration": 5,
              "reference_images": [{"uri": "https://example.com/ref.png", "tag": "hero"}],
              "still_prompt": "a lighthouse, @hero"} for shot in CONTINUED]
    with pytest.raises(InvalidRequest) as caught:
        await storyboard(shots=shots, credentials=credentials, storage=str(tmp_path),
                         run={"continuity": True, "check_balance": False})
    assert caught.value.field == "run.continuity" and "s3://" in str(caught.value.allowed)
    assert own_emulator.stats()["segmind"]["total_submissions"] == 0


async def test_continuity_on_segmind_hands_the_frame_over_as_a_presigned_s3_url(
        own_emulator, moto_url):  # noqa: F811
    # Segmind takes images by https URL only: the frame goes as a presigned URL of the PNG
    # stored in S3, which the emulator fetches over loopback.
    credentials = _fast(SegmindCredentials, own_emulator.url)
    bucket = new_bucket(aws_credentials(moto_url), "continuity", "sequences")
    shots = [{"name": name, "motion_prompt": f"move {i}", "video_model": "gen4_turbo",
              "ratio": "16:9", "duration": 5, "seed": 20 + i} for i, name in enumerate(
                  ("first", "second"))]
    shots[0].update(still_prompt="a lighthouse, @hero",
                    reference_images=[{"uri": "https://example.com/ref.png", "tag": "hero"}])
    run = {"continuity": True, "preview": None, "check_balance": False}
    summary = await storyboard(shots=shots, credentials=credentials, storage=bucket, run=run)
    assert summary.completed == 2
    first, second = (probe_video(get_object(bucket, f"sequences/{s.video.key}"))
                     for s in summary.shots)
    assert mean_abs_difference(second.first_frame, first.last_frame) < 4
    video = summary.shots[1].video
    lineage = json.loads(get_object(bucket, f"sequences/{video.key}.json"))["first_frame"]
    frame = get_object(bucket, f"sequences/{lineage['frame']}")
    assert hashlib.sha256(frame).hexdigest() == lineage["frame_sha256"]
    stats = own_emulator.stats()["segmind"]
    assert stats["total_submissions"] == 3  # a still, two videos

    await storyboard(shots=shots, credentials=credentials, storage=bucket, run=run)
    assert own_emulator.stats()["segmind"]["total_submissions"] == 3  # a rerun pays nothing
