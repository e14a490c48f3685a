"""The Segmind protocol over HTTP: submit, poll, result, media, errors."""

from __future__ import annotations

import io
import time

import pytest
from emu_helpers import (
    SEGMIND_HEADERS,
    assert_in_order,
    data_uri,
    picture,
    png_bytes,
    serve_bytes,
    wait_until,
)
from PIL import Image

from prefect_runway.emulator.media import fit, mean_abs_difference, probe_video

pytestmark = pytest.mark.timeout(60)

REFS = [{"uri": "https://example.com/ref.png", "tag": "subject"}]


def submit(client, slug, **body):
    return client.post(f"/v2/{slug}", headers=SEGMIND_HEADERS, json=body)


def finish(client, request_id, timeout=15.0):
    """Poll the status URL until terminal; returns (final status response, statuses seen)."""
    final, seen = wait_until(
        lambda: client.get(f"/v2/requests/{request_id}/status", headers=SEGMIND_HEADERS),
        lambda r: r.json()["status"] in ("COMPLETED", "FAILED"),
        timeout=timeout,
    )
    return final, [r.json()["status"] for r in seen]


def make_still(client, **body):
    body = {"promptText": "a red kite over dunes", "referenceImages": REFS, **body}
    request_id = submit(client, "runway-gen4-image", **body).json()["request_id"]
    finish(client, request_id)
    return client.get(f"/v2/requests/{request_id}", headers=SEGMIND_HEADERS).json()["output"]


def test_still_submit_poll_result_download(emu, client):
    response = submit(client, "runway-gen4-image", promptText="a red kite", referenceImages=REFS,
                      ratio="1920:1080")
    assert response.status_code == 200
    body = response.json()
    request_id = body["request_id"]
    assert body["status"] == "QUEUED"
    assert body["status_url"] == f"{emu.url}/v2/requests/{request_id}/status"
    assert body["poll_url"] == body["status_url"]
    assert body["response_url"] == f"{emu.url}/v2/requests/{request_id}"

    pending = client.get(body["response_url"], headers=SEGMIND_HEADERS)
    assert pending.status_code == 202 and pending.json()["status"] in ("QUEUED", "PROCESSING")

    final, statuses = finish(client, request_id)
    assert_in_order(statuses, ["QUEUED", "PROCESSING", "COMPLETED"])
    assert statuses[-1] == "COMPLETED"
    assert set(final.json()) >= {"status", "request_id", "status_url", "response_url", "metrics"}

    result = client.get(body["response_url"], headers=SEGMIND_HEADERS)
    assert result.status_code == 200
    result = result.json()
    assert result["status"] == "COMPLETED"
    assert result["request_id"] == request_id
    assert result["metrics"]["inference_time"] > 0
    media = client.get(result["output"])  # plain URL, no key needed
    assert media.status_code == 200
    assert media.headers["content-type"] == "image/png"
    assert int(media.headers["content-length"]) == len(media.content)
    assert Image.open(io.BytesIO(media.content)).size == (1920, 1080)

    stats = emu.stats()["segmind"]
    assert stats["submissions"] == {"runway-gen4-image": 1}
    assert stats["status_calls"] == len(statuses)
    assert stats["result_calls"] == 2
    assert stats["downloads"] == 1


@pytest.mark.parametrize(
    ("slug", "extra", "size", "duration"),
    [
        ("runway-gen4-turbo", {}, (1280, 720), 5.0),
        ("runway-gen4-turbo", {"ratio": "832:1104", "duration": 10}, (832, 1104), 10.0),
        ("runway-gen3-alphaturbo", {"ratio": "9:16", "duration": "5"}, (768, 1280), 5.0),
    ],
)
def test_video_first_frame_is_the_input_image(client, slug, extra, size, duration):
    still_url = make_still(client)
    still = Image.open(io.BytesIO(client.get(still_url).content))
    response = submit(client, slug, promptText="slow push in", promptImage=still_url, seed=56698,
                      **extra)
    assert response.status_code == 200, response.text
    request_id = response.json()["request_id"]
    final, _ = finish(client, request_id)
    assert final.json()["status"] == "COMPLETED"
    output = client.get(f"/v2/requests/{request_id}", headers=SEGMIND_HEADERS).json()["output"]
    video = client.get(output)
    assert video.headers["content-type"] == "video/mp4"
    info = probe_video(video.content)
    assert (info.width, info.height) == size
    assert info.duration == pytest.approx(duration)
    assert info.frames == round(duration * 4)
    assert mean_abs_difference(info.first_frame, fit(still, *size)) < 5


def test_video_from_another_loopback_server(client):
    source = picture(900, 500)
    with serve_bytes(png_bytes(source)) as url:
        request_id = submit(client, "runway-gen4-turbo", promptText="pan", promptImage=url)
        request_id = request_id.json()["request_id"]
        final, _ = finish(client, request_id)
    assert final.json()["status"] == "COMPLETED"
    output = client.get(f"/v2/requests/{request_id}", headers=SEGMIND_HEADERS).json()["output"]
    info = probe_video(client.get(output).content)
    assert mean_abs_difference(info.first_frame, fit(source, 1280, 720)) < 5


def test_non_loopback_image_fails_the_job_with_422(client):
    response = submit(client, "runway-gen4-turbo", promptText="pan",
                      promptImage="https://example.com/cat.png")
    request_id = response.json()["request_id"]
    final, _ = finish(client, request_id)
    assert final.status_code == 422
    assert final.json()["status"] == "FAILED"
    assert "non-loopback" in final.json()["error"]


def test_fail_marker_is_failed_422_on_both_gets(emu, client):
    request_id = submit(client, "runway-gen4-image", promptText="a kite [fail]",
                        referenceImages=REFS).json()["request_id"]
    final, _ = finish(client, request_id)
    assert final.status_code == 422
    body = final.json()
    assert body["status"] == "FAILED" and body["error"] and body["request_id"] == request_id
    result = client.get(f"/v2/requests/{request_id}", headers=SEGMIND_HEADERS)
    assert result.status_code == 422
    assert result.json()["status"] == "FAILED" and result.json()["error"]
    assert emu.stats()["segmind"]["errors"]["422"] >= 2


@pytest.mark.parametrize(
    ("slug", "body", "field"),
    [
        ("runway-gen4-image", {"referenceImages": REFS}, "promptText"),
        ("runway-gen4-image", {"promptText": "x"}, "referenceImages"),
        ("runway-gen4-image", {"promptText": "x", "referenceImages": [{"uri": "https://a/b"}]},
         "referenceImages[0].tag"),
        ("runway-gen4-image", {"promptText": "x", "referenceImages": REFS, "ratio": "16:9"},
         "ratio"),
        ("runway-gen4-turbo", {"promptText": "x"}, "promptImage"),
        ("runway-gen4-turbo", {"promptText": "x", "promptImage": "http://example.com/a.png"},
         "promptImage"),
        ("runway-gen4-turbo", {"promptText": "x", "promptImage": data_uri(picture(32, 32))},
         "promptImage"),
        ("runway-gen4-turbo", {"promptImage": "https://a.example/b.png"}, "promptText"),
        ("runway-gen4-turbo", {"promptText": "x", "promptImage": "https://a.example/b.png",
                               "duration": 7}, "duration"),
        ("runway-gen4-turbo", {"promptText": "x", "promptImage": "https://a.example/b.png",
                               "seed": 0}, "seed"),
        ("runway-gen4-turbo", {"promptText": "x", "promptImage": "https://a.example/b.png",
                               "ratio": "1920:1080"}, "ratio"),
        ("runway-gen3-alphaturbo", {"promptText": "x", "promptImage": "https://a.example/b.png",
                                    "ratio": "1280:720"}, "ratio"),
    ],
)
def test_bad_parameters_are_400_naming_the_field(emu, client, slug, body, field):
    response = submit(client, slug, **body)
    assert response.status_code == 400
    assert field in response.json()["error"]
    assert emu.stats()["segmind"]["total_submissions"] == 0


def test_invalid_json_is_400(client):
    response = client.post("/v2/runway-gen4-image", headers=SEGMIND_HEADERS, content=b"{nope")
    assert response.status_code == 400


def test_auth(emu, client):
    assert client.post("/v2/runway-gen4-image", json={}).status_code == 401
    emu.configure(api_keys=frozenset({"good"}))
    body = {"promptText": "x", "referenceImages": REFS}
    bad = client.post("/v2/runway-gen4-image", headers={"x-api-key": "bad"}, json=body)
    assert bad.status_code == 401 and "error" in bad.json()
    good = client.post("/v2/runway-gen4-image", headers={"x-api-key": "good"}, json=body)
    assert good.status_code == 200
    request_id = good.json()["request_id"]
    assert client.get(f"/v2/requests/{request_id}/status").status_code == 401
    assert emu.stats()["segmind"]["errors"]["401"] == 3


def test_unknown_slug_and_id_are_404(client):
    assert submit(client, "runway-gen5", promptText="x").status_code == 404
    assert client.get("/v2/requests/nope/status", headers=SEGMIND_HEADERS).status_code == 404
    assert client.get("/v2/requests/nope", headers=SEGMIND_HEADERS).status_code == 404


def test_results_expire(emu, client):
    emu.configure(expiry=1.5)
    still_url = make_still(client)
    assert client.get(still_url).status_code == 200
    request_id = submit(client, "runway-gen4-image", promptText="x",
                        referenceImages=REFS).json()["request_id"]
    time.sleep(1.6)
    assert client.get(f"/v2/requests/{request_id}/status", headers=SEGMIND_HEADERS).status_code == 404
    assert client.get(f"/v2/requests/{request_id}", headers=SEGMIND_HEADERS).status_code == 404
    assert client.get(still_url).status_code == 404


def test_expire_marker_vanishes_once_complete(client):
    request_id = submit(client, "runway-gen4-image", promptText="x [expire]",
                        referenceImages=REFS).json()["request_id"]
    _, seen = wait_until(
        lambda: client.get(f"/v2/requests/{request_id}/status", headers=SEGMIND_HEADERS),
        lambda r: r.status_code == 404,
    )
    assert {r.json().get("status") for r in seen[:-1]} <= {"QUEUED", "PROCESSING"}


def test_insufficient_credits_is_406(emu, client):
    emu.configure(credits=0.1)  # USD; a 720p still costs 0.05
    body = {"promptText": "x", "referenceImages": REFS}
    first = submit(client, "runway-gen4-image", **body)
    assert first.status_code == 200 and first.headers["x-remaining-credits"] == "0.05"
    assert submit(client, "runway-gen4-image", **body).status_code == 200
    response = submit(client, "runway-gen4-image", **body)
    assert response.status_code == 406 and "credits" in response.json()["error"].lower()


def test_sync_v1_returns_the_media_bytes(emu, client):
    emu.configure(credits=1)
    response = client.post("/v1/runway-gen4-image", headers=SEGMIND_HEADERS,
                           json={"promptText": "x", "referenceImages": REFS, "ratio": "720:1280"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert float(response.headers["x-remaining-credits"]) == 0.95
    assert Image.open(io.BytesIO(response.content)).size == (720, 1280)
