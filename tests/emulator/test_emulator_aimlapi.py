"""The AI/ML API protocol over HTTP: both routes, both response shapes, errors."""

from __future__ import annotations

import pytest
from emu_helpers import (
    AIMLAPI_HEADERS,
    assert_in_order,
    data_uri,
    picture,
    png_bytes,
    serve_bytes,
    wait_until,
)

from prefect_runway.emulator.media import fit, mean_abs_difference, probe_video

pytestmark = pytest.mark.timeout(60)

LEGACY = "/v2/generate/video/runway/generation"
UNIVERSAL = "/v2/video/generations"
PENDING = ("queued", "generating", "waiting")


def poll(client, path, generation_id, timeout=15.0):
    return wait_until(
        lambda: client.get(path, params={"generation_id": generation_id}, headers=AIMLAPI_HEADERS),
        lambda r: r.json().get("status") not in PENDING,
        timeout=timeout,
    )


def test_legacy_route_end_to_end(emu, client):
    source = picture(800, 450)
    response = client.post(LEGACY, headers=AIMLAPI_HEADERS, json={
        "model": "runway/gen4_turbo", "prompt": "a dragon appears", "ratio": "16:9",
        "image_url": data_uri(source), "duration": 5, "seed": 4294967295,
    })
    assert response.status_code == 200
    assert response.json()["status"] == "queued"
    generation_id = response.json()["id"]
    final, seen = poll(client, LEGACY, generation_id)
    assert_in_order([r.json()["status"] for r in seen], ["queued", "generating", "completed"])
    body = final.json()
    assert body["status"] == "completed" and body["id"] == generation_id
    assert isinstance(body["video"], list) and len(body["video"]) == 1
    url = body["video"][0]
    assert "sig=" in url and "exp=" in url
    video = client.get(url)
    assert video.headers["content-type"] == "video/mp4"
    info = probe_video(video.content)
    assert (info.width, info.height, info.duration) == (1280, 720, 5.0)
    assert mean_abs_difference(info.first_frame, fit(source, 1280, 720)) < 5
    stats = emu.stats()["aimlapi"]
    assert stats["submissions"] == {"runway/gen4_turbo": 1}
    assert stats["status_calls"] == len(seen)
    assert stats["downloads"] == 1


def test_universal_route_shape(client):
    with serve_bytes(png_bytes(picture(600, 600))) as url:
        response = client.post(UNIVERSAL, headers=AIMLAPI_HEADERS, json={
            "model": "runway/gen4_turbo", "prompt": "spin", "image_url": url,
            "aspect_ratio": "1:1", "duration": 10,
        })
        assert response.status_code == 200, response.text
        final, _ = poll(client, UNIVERSAL, response.json()["id"])
    body = final.json()
    assert body["status"] == "completed"
    assert isinstance(body["video"], dict)
    assert body["meta"]["usage"]["credits_used"] > 0
    info = probe_video(client.get(body["video"]["url"]).content)
    assert (info.width, info.height, info.duration) == (960, 960, 10.0)


def test_gen3a_last_frame(client):
    first, last = picture(colour=(220, 30, 30)), picture(colour=(30, 220, 30))
    response = client.post(LEGACY, headers=AIMLAPI_HEADERS, json={
        "model": "gen3a_turbo", "prompt": "morph", "image_url": data_uri(first),
        "last_image_url": data_uri(last), "ratio": "9:16",
    })
    assert response.status_code == 200, response.text
    final, _ = poll(client, LEGACY, response.json()["id"])
    info = probe_video(client.get(final.json()["video"][0]).content)
    assert (info.width, info.height) == (768, 1280)
    assert mean_abs_difference(info.first_frame, fit(first, 768, 1280)) < 5
    assert mean_abs_difference(info.last_frame, fit(last, 768, 1280)) < 5


def test_failures_on_both_routes(client):
    body = {"model": "runway/gen4_turbo", "prompt": "[fail] nope",
            "image_url": data_uri(picture(64, 64))}
    legacy_id = client.post(LEGACY, headers=AIMLAPI_HEADERS, json=body).json()["id"]
    universal_id = client.post(UNIVERSAL, headers=AIMLAPI_HEADERS, json=body).json()["id"]
    legacy, _ = poll(client, LEGACY, legacy_id)
    assert legacy.status_code == 200
    assert legacy.json()["status"] == "error" and isinstance(legacy.json()["error"], str)
    universal, _ = poll(client, UNIVERSAL, universal_id)
    assert universal.json()["status"] == "error"
    assert set(universal.json()["error"]) == {"name", "message"}


def test_failure_status_word_is_configurable(emu, client):
    emu.configure(aimlapi_failure_status="failed")
    body = {"model": "gen3a_turbo", "prompt": "[fail]", "image_url": data_uri(picture(64, 64))}
    generation_id = client.post(UNIVERSAL, headers=AIMLAPI_HEADERS, json=body).json()["id"]
    final, _ = poll(client, UNIVERSAL, generation_id)
    assert final.json()["status"] == "failed"


def test_image_aspect_ratio_is_checked(client):
    too_wide = data_uri(picture(1000, 400))
    response = client.post(LEGACY, headers=AIMLAPI_HEADERS, json={
        "model": "runway/gen4_turbo", "image_url": too_wide})
    assert response.status_code == 400
    assert "image_url" in response.json()["detail"]
    with serve_bytes(png_bytes(picture(300, 700))) as url:  # 0.43: fetched, then failed
        generation_id = client.post(LEGACY, headers=AIMLAPI_HEADERS, json={
            "model": "runway/gen4_turbo", "image_url": url}).json()["id"]
        final, _ = poll(client, LEGACY, generation_id)
    assert final.json()["status"] == "error"
    assert "ratio" in final.json()["error"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (LEGACY, {"image_url": "https://a.example/x.png"}, "model"),
        (LEGACY, {"model": "runway/gen5", "image_url": "https://a.example/x.png"}, "model"),
        (LEGACY, {"model": "runway/gen4_turbo"}, "image_url"),
        (LEGACY, {"model": "runway/gen4_turbo", "image_url": "ftp://a.example/x.png"},
         "image_url"),
        (LEGACY, {"model": "runway/gen4_turbo", "image_url": "https://a.example/x.png",
                  "prompt": "x" * 1001}, "prompt"),
        (LEGACY, {"model": "runway/gen4_turbo", "image_url": "https://a.example/x.png",
                  "prompt": "\U0001f600" * 501}, "prompt"),  # 1002 UTF-16 units
        (LEGACY, {"model": "runway/gen4_turbo", "image_url": "https://a.example/x.png",
                  "ratio": "1280:720"}, "ratio"),
        (LEGACY, {"model": "gen3a_turbo", "image_url": "https://a.example/x.png",
                  "ratio": "1:1"}, "ratio"),
        (LEGACY, {"model": "runway/gen3a_turbo", "image_url": "https://a.example/x.png"},
         "model"),
        (LEGACY, {"model": "runway/gen4_turbo", "image_url": "https://a.example/x.png",
                  "duration": 6}, "duration"),
        (LEGACY, {"model": "runway/gen4_turbo", "image_url": "https://a.example/x.png",
                  "duration": "5"}, "duration"),  # an integer, not a string
        (LEGACY, {"model": "runway/gen4_turbo", "image_url": "https://a.example/x.png",
                  "seed": 4294967296}, "seed"),
        (LEGACY, {"model": "runway/gen4_turbo", "image_url": "https://a.example/x.png",
                  "last_image_url": "https://a.example/y.png"}, "last_image_url"),
        (LEGACY, {"model": "runway/gen4_turbo", "image_url": "https://a.example/x.png",
                  "aspect_ratio": "16:9"}, "aspect_ratio"),
        (UNIVERSAL, {"model": "runway/gen4_turbo", "image_url": "https://a.example/x.png",
                     "ratio": "16:9"}, "ratio"),
        (UNIVERSAL, {"model": "runway/gen4_turbo", "image_url": "https://a.example/x.png",
                     "aspect_ratio": "2:1"}, "aspect_ratio"),
    ],
)
def test_body_validation_errors(emu, client, path, body, field):
    response = client.post(path, headers=AIMLAPI_HEADERS, json=body)
    assert response.status_code == 400
    error = response.json()
    assert error["message"] == "Body validation error!"
    assert error["statusCode"] == 400 and error["path"] == path
    assert error["requestId"] and error["timestamp"]
    assert field in error["detail"]
    assert error["meta"][0]["path"] == [field]
    assert emu.stats()["aimlapi"]["errors"] == {"400": 1}


def test_auth_unknown_id_and_credits(emu, client):
    body = {"model": "runway/gen4_turbo", "image_url": "https://a.example/x.png"}
    response = client.post(LEGACY, json=body)
    assert response.status_code == 401 and response.json()["statusCode"] == 401
    response = client.get(LEGACY, params={"generation_id": "nope"}, headers=AIMLAPI_HEADERS)
    assert response.status_code == 404 and response.json()["statusCode"] == 404
    assert client.get(LEGACY, headers=AIMLAPI_HEADERS).status_code == 400
    emu.configure(credits=600_000)  # AIMLAPI credits; a 5 s gen4_turbo costs 525 000
    assert client.post(LEGACY, headers=AIMLAPI_HEADERS, json=body).status_code == 200
    response = client.post(LEGACY, headers=AIMLAPI_HEADERS, json=body)
    assert response.status_code == 403 and response.json()["statusCode"] == 403
    assert "run out of credits" in response.json()["message"]


def test_waiting_while_over_the_concurrency_limit(emu, client):
    # 2 s of latency: the first job's video is made well before the second one ends, even on
    # a loaded machine (its slot frees after its latency; "completed" also needs its media).
    emu.configure(aimlapi_concurrency=1, latency=2.0)
    body = {"model": "runway/gen4_turbo", "image_url": data_uri(picture(64, 64))}
    first = client.post(LEGACY, headers=AIMLAPI_HEADERS, json=body).json()["id"]
    second = client.post(LEGACY, headers=AIMLAPI_HEADERS, json=body).json()["id"]
    status = client.get(LEGACY, params={"generation_id": second}, headers=AIMLAPI_HEADERS)
    assert status.json()["status"] == "waiting"
    final, seen = poll(client, LEGACY, second)
    assert final.json()["status"] == "completed"
    assert_in_order([r.json()["status"] for r in seen],
                    ["waiting", "queued", "generating", "completed"])
    first_status = client.get(LEGACY, params={"generation_id": first}, headers=AIMLAPI_HEADERS)
    assert first_status.json()["status"] == "completed"
