"""Models of Runway's API hub through the public flows against the emulator: veo3.1 with a
first and a last frame, stored with its sidecar; a bad option refused before anything is sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from prefect_runway.emulator.media import mean_abs_difference, probe_video
from prefect_runway.errors import InvalidRequest
from prefect_runway.flows import animate_image


def _frame(path: Path, colour: tuple[int, int, int]) -> str:
    Image.new("RGB", (640, 360), colour).save(path)
    return str(path)


def _new_submissions(before: dict[str, int], emulator) -> dict[str, int]:
    """The submissions per model since ``before`` (models with none left out)."""
    after = emulator.stats()["runway"]["submissions"]
    return {m: n - before.get(m, 0) for m, n in after.items() if n - before.get(m, 0)}


async def test_veo_first_and_last_frame_through_animate_image(runway_credentials, runway_emulator,
                                                              tmp_path):
    first = _frame(tmp_path / "first.png", (240, 40, 40))
    last = _frame(tmp_path / "last.png", (40, 40, 240))
    before = runway_emulator.stats()["runway"]["submissions"]
    out = await animate_image(image=first, last_image=last, model="veo3.1", duration=4,
                              ratio="1280:720", prompt="the light turns",
                              credentials=runway_credentials, storage=str(tmp_path / "out"))
    info = probe_video(Path(out.location).read_bytes())
    assert (info.width, info.height, info.duration) == (1280, 720, 4.0)
    # decoded: the video starts on the first frame and ends on the last
    assert mean_abs_difference(info.first_frame, Image.new("RGB", (1280, 720), (240, 40, 40))) < 8
    assert mean_abs_difference(info.last_frame, Image.new("RGB", (1280, 720), (40, 40, 240))) < 8
    sidecar = json.loads(Path(out.sidecar).read_text())
    assert sidecar["model"] == "veo3.1"
    assert [p["position"] for p in sidecar["request"]["promptImage"]] == ["first", "last"]
    # audio left unset is priced as on (40 credits a second): what the emulator charged
    assert (sidecar["cost"], sidecar["cost_unit"], sidecar["cost_estimated"]) == (160, "credits", False)
    # exactly one job, this one (the session's emulator also counts other tests' jobs)
    assert _new_submissions(before, runway_emulator) == {"veo3.1": 1}


async def test_a_length_veo_does_not_take_is_refused_before_anything_is_sent(
        runway_credentials, runway_emulator, tmp_path):
    before = runway_emulator.stats()["runway"]["total_submissions"]
    with pytest.raises(InvalidRequest) as caught:
        await animate_image(image=_frame(tmp_path / "a.png", (1, 2, 3)), model="veo3.1",
                            duration=5, credentials=runway_credentials, storage=str(tmp_path))
    assert (caught.value.field, caught.value.allowed) == ("duration", [4, 6, 8])
    assert runway_emulator.stats()["runway"]["total_submissions"] == before


async def test_video_options_reach_the_request_the_price_and_the_sidecar(
        runway_credentials, runway_emulator, tmp_path):
    from prefect_runway.flows import image_to_video

    before = runway_emulator.stats()["runway"]["submissions"]
    done = await image_to_video(
        still_prompt="a lighthouse at dusk", motion_prompt="the beam turns", seed=7,
        credentials=runway_credentials, storage=str(tmp_path / "out"),
        still={"ratio": "1280:720"},
        video={"model": "veo3.1", "duration": 4, "options": {"audio": False}},
        run={"preview": None, "check_balance": False})
    assert done.video is not None
    sidecar = json.loads(Path(done.video.sidecar).read_text())
    assert sidecar["request"]["audio"] is False
    # audio off is veo3.1's lower price (20 credits a second), as the emulator charged it
    assert (sidecar["cost"], sidecar["cost_estimated"]) == (80, False)
    assert _new_submissions(before, runway_emulator) == {"gen4_image": 1, "veo3.1": 1}


async def test_a_shot_option_the_model_lacks_is_refused_before_anything_is_sent(
        runway_credentials, runway_emulator, tmp_path):
    from prefect_runway.errors import InvalidShot
    from prefect_runway.flows import storyboard

    shots = [{"name": "ok", "still_prompt": "a harbour", "motion_prompt": "pan",
              "video_model": "veo3.1", "duration": 4, "ratio": "1280:720",
              "video_options": {"audio": True}},
             {"name": "bad", "still_prompt": "a market", "video_model": "veo3.1",
              "duration": 4, "ratio": "1280:720", "video_options": {"loop": True}}]
    before = runway_emulator.stats()["runway"]["total_submissions"]
    with pytest.raises(InvalidShot) as caught:
        await storyboard(shots=shots, credentials=runway_credentials, storage=str(tmp_path))
    assert caught.value.field == "video_options.loop"
    assert "'audio', 'negative_prompt'" in str(caught.value)
    assert runway_emulator.stats()["runway"]["total_submissions"] == before


async def test_a_storyboard_shot_runs_with_its_video_options(runway_credentials, runway_emulator,
                                                             tmp_path):
    from prefect_runway.flows import storyboard

    shots = [{"name": "quiet", "still_prompt": "a harbour", "motion_prompt": "pan", "seed": 3,
              "video_model": "veo3.1", "duration": 4, "ratio": "1280:720",
              "video_options": '{"audio": false, "negative_prompt": "rain"}'}]  # a CSV cell
    summary = await storyboard(shots=shots, credentials=runway_credentials,
                               storage=str(tmp_path), preview=None, check_balance=False)
    video = summary.shots[0].video
    sidecar = json.loads(Path(video.sidecar).read_text())
    assert (sidecar["request"]["audio"], sidecar["request"]["negativePrompt"]) == (False, "rain")
    assert sidecar["cost"] == 80


async def test_a_group_option_the_model_lacks_is_refused_before_anything_is_sent(
        runway_credentials, runway_emulator, tmp_path):
    from prefect_runway.flows import image_to_video

    before = runway_emulator.stats()["runway"]["total_submissions"]
    with pytest.raises(InvalidRequest) as caught:
        await image_to_video(still_prompt="a lighthouse", motion_prompt="pan",
                             credentials=runway_credentials, storage=str(tmp_path),
                             video_model="veo3.1", duration=4, video_options={"loop": True})
    assert (caught.value.field, caught.value.allowed) == ("options.loop",
                                                          ["audio", "negative_prompt"])
    assert runway_emulator.stats()["runway"]["total_submissions"] == before
