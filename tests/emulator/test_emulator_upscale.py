"""Runway's ``POST /v1/video_upscale`` in the emulator: a made video read back from its URL,
a data URI or an upload, upscaled or retimed into a real MP4, billed per second; bodies the
SDK's types refuse, and outputs it cannot make, refused with Runway's error shape."""

from __future__ import annotations

import base64

import pytest
from emu_helpers import RUNWAY_HEADERS, picture, wait_until

from prefect_runway.emulator import media

pytestmark = pytest.mark.timeout(60)

UPSCALER = "magnific_video_upscaler_creative"


def _clip(seconds: float = 2.0) -> bytes:
    return media.make_video(picture(640, 360), 640, 360, seconds, 4)


def _data_uri(data: bytes) -> str:
    return "data:video/mp4;base64," + base64.b64encode(data).decode()


def _made(client, **body) -> tuple[dict, media.VideoInfo]:
    """Submit, wait, download and decode the output."""
    response = client.post("/v1/video_upscale", headers=RUNWAY_HEADERS, json=body)
    assert response.status_code == 200, response.text
    final, _ = wait_until(
        lambda: client.get(f"/v1/tasks/{response.json()['id']}", headers=RUNWAY_HEADERS),
        lambda r: r.json()["status"] in ("SUCCEEDED", "FAILED"))
    task = final.json()
    assert task["status"] == "SUCCEEDED", task
    return task, media.probe_video(client.get(task["output"][0]).content)


@pytest.mark.parametrize(("resolution", "size"), [
    ("720p", (1280, 720)), ("1k", (1920, 1080)), (None, (2560, 1440))])
def test_an_upscale_is_a_larger_mp4_of_the_same_length_billed_per_second(
        client, resolution, size):
    body = {"model": UPSCALER, "videoUri": _data_uri(_clip()), "creativity": 30}
    if resolution:
        body["resolution"] = resolution
    task, made = _made(client, **body)
    assert (made.width, made.height) == size and made.codec == "h264"
    assert made.duration == pytest.approx(2.0, abs=0.05) and made.fps == 4
    assert task["cost"] == {"credits": 20}  # the stand-in: 10 credits a second


def test_enhance_frame_rate_makes_the_asked_rate_from_an_upload(emu, client):
    opened = client.post("/v1/uploads", headers=RUNWAY_HEADERS,
                         json={"filename": "clip.mp4", "type": "ephemeral"}).json()
    posted = client.post(opened["uploadUrl"], data=opened["fields"],
                         files={"file": ("clip.mp4", _clip(), "video/mp4")})
    assert posted.status_code == 204
    task, made = _made(client, model="enhance_frame_rate", videoUri=opened["runwayUri"],
                       targetFramerate="59_94")
    assert (made.width, made.height) == (640, 360)
    assert made.fps == pytest.approx(59.94, abs=0.01) and made.frames == 120
    assert task["cost"] == {"credits": 8}


@pytest.mark.parametrize(("body", "path", "words"), [
    ({"model": "enhance_frame_rate"}, ["targetFramerate"], "is required"),
    ({"model": "enhance_frame_rate", "targetFramerate": 60}, ["targetFramerate"], "one of"),
    ({"model": UPSCALER, "resolution": "8k"}, ["resolution"], "one of"),
    ({"model": UPSCALER, "sharpen": 101}, ["sharpen"], "between 0 and 100"),
    ({"model": UPSCALER, "outputFormat": "prores"}, ["outputFormat"], "not a known field"),
    ({"model": "gen4.5"}, ["model"], "one of"),
])
def test_bodies_the_sdk_refuses_are_refused_before_a_task(emu, client, body, path, words):
    response = client.post("/v1/video_upscale", headers=RUNWAY_HEADERS,
                           json={"videoUri": _data_uri(_clip(1.0)), **body})
    assert response.status_code == 400
    answer = response.json()
    assert answer["error"].startswith("Validation of body failed") and words in answer["error"]
    assert answer["issues"][0]["path"] == path
    assert emu.stats()["runway"]["total_submissions"] == 0


@pytest.mark.parametrize(("uri", "words"), [
    ("runway://uploads/none", "upload"), ("data:video/mp4;base64,AAAA", "not a readable video")])
def test_a_source_that_cannot_be_read_is_refused(emu, client, uri, words):
    response = client.post("/v1/video_upscale", headers=RUNWAY_HEADERS,
                           json={"model": UPSCALER, "videoUri": uri})
    assert response.status_code == 400 and words in response.json()["error"]
    assert response.json()["issues"][0]["path"] == ["videoUri"]
    assert emu.stats()["runway"]["total_submissions"] == 0


def test_an_output_larger_than_it_makes_is_refused_with_runways_error(emu, client):
    long_clip = media.make_video(picture(1280, 720), 1280, 720, 20.0, 4)
    response = client.post("/v1/video_upscale", headers=RUNWAY_HEADERS,
                           json={"model": "enhance_frame_rate", "videoUri": _data_uri(long_clip),
                                 "targetFramerate": "120"})
    assert response.status_code == 400  # 2400 frames of 1280x720: past what it makes
    assert "more than the emulator makes" in response.json()["error"]
    assert emu.stats()["runway"]["total_submissions"] == 0
