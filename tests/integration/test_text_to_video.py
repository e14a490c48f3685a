"""The ``text_to_video`` flow against the emulator: a prompt becomes a verified MP4 with its
sidecar, once; a bad ratio and an unpriced model under a budget are refused before sending."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefect_runway.emulator.media import probe_video
from prefect_runway.errors import InvalidRequest, NotStarted
from prefect_runway.flows import text_to_video


def _runway(emulator) -> dict:
    return emulator.stats()["runway"]


async def test_a_prompt_becomes_a_stored_video_once(runway_credentials, runway_emulator,
                                                    tmp_path):
    before = _runway(runway_emulator)
    out = await text_to_video(prompt="a harbour at dawn, gulls overhead", model="gen4.5",
                              ratio="720:1280", duration=3, seed=11,
                              credentials=runway_credentials, storage=str(tmp_path / "out"))
    data = Path(out.location).read_bytes()
    info = probe_video(data)
    assert (info.width, info.height, info.duration) == (720, 1280, 3.0)
    sidecar = json.loads(Path(out.sidecar).read_text())
    assert sidecar["model"] == "gen4.5" and sidecar["kind"] == "video"
    assert "promptImage" not in sidecar["request"]
    assert sidecar["request"]["promptText"] == "a harbour at dawn, gulls overhead"
    assert (sidecar["cost"], sidecar["cost_unit"]) == (36, "credits")  # 12 credits a second
    assert out.sha256 and sidecar["sha256"] == out.sha256
    after = _runway(runway_emulator)
    assert after["submissions"].get("gen4.5", 0) - before["submissions"].get("gen4.5", 0) == 1
    assert after["credits_used"] - before["credits_used"] == 36

    again = await text_to_video(prompt="a harbour at dawn, gulls overhead", model="gen4.5",
                                ratio="720:1280", duration=3, seed=11,
                                credentials=runway_credentials, storage=str(tmp_path / "out"))
    assert again.sha256 == out.sha256
    rerun = _runway(runway_emulator)
    assert rerun["total_submissions"] == after["total_submissions"]  # nothing sent again
    assert rerun["credits_used"] == after["credits_used"]  # nothing paid again
    assert rerun["duplicate_submissions"] == after["duplicate_submissions"]


async def test_a_ratio_the_model_lacks_is_refused_before_anything_is_sent(
        runway_credentials, runway_emulator, tmp_path):
    before = _runway(runway_emulator)["total_submissions"]
    with pytest.raises(InvalidRequest) as caught:
        await text_to_video(prompt="a market", model="gen4.5", ratio="1104:832",
                            credentials=runway_credentials, storage=str(tmp_path))
    assert (caught.value.field, caught.value.allowed) == ("ratio", ["1280:720", "720:1280"])
    with pytest.raises(InvalidRequest) as caught:
        await text_to_video(prompt="a market", model="veo3.1", duration=4,
                            options={"loop": True}, credentials=runway_credentials,
                            storage=str(tmp_path))
    assert (caught.value.field, caught.value.allowed) == ("options.loop",
                                                          ["audio", "negative_prompt"])
    assert _runway(runway_emulator)["total_submissions"] == before


async def test_a_budget_refuses_a_model_with_no_known_price(runway_credentials, runway_emulator,
                                                            tmp_path):
    before = _runway(runway_emulator)["total_submissions"]
    with pytest.raises(NotStarted) as caught:
        await text_to_video(prompt="a market", model="kling2.5_turbo_pro", duration=5,
                            ratio="1280:720", budget=500, credentials=runway_credentials,
                            storage=str(tmp_path))
    assert caught.value.unpriced
    assert _runway(runway_emulator)["total_submissions"] == before
