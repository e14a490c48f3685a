"""Runway's API over HTTP: tasks, THROTTLED, cancel/delete, fresh signed URLs, errors."""

from __future__ import annotations

import io

import pytest
from emu_helpers import RUNWAY_HEADERS, RUNWAY_KEY, assert_in_order, data_uri, picture, wait_until
from PIL import Image

from prefect_runway.emulator.media import fit, mean_abs_difference, probe_video

pytestmark = pytest.mark.timeout(60)

TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


def create(client, endpoint, **body):
    return client.post(f"/v1/{endpoint}", headers=RUNWAY_HEADERS, json=body)


def task(client, task_id):
    return client.get(f"/v1/tasks/{task_id}", headers=RUNWAY_HEADERS)


def finish(client, task_id, timeout=15.0):
    return wait_until(lambda: task(client, task_id), lambda r: r.json()["status"] in TERMINAL,
                      timeout=timeout)


def test_text_to_image_then_image_to_video(emu, client):
    response = create(client, "text_to_image", model="gen4_image", promptText="a harbour",
                      ratio="1808:768", seed=3,
                      referenceImages=[{"uri": data_uri(picture(64, 64)), "tag": "boat_1"}])
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"id", "estimatedCost"}
    assert response.json()["estimatedCost"] == {"credits": 8}
    final, seen = finish(client, response.json()["id"])
    assert_in_order([r.json()["status"] for r in seen], ["PENDING", "RUNNING", "SUCCEEDED"])
    for pending in (r.json() for r in seen if r.json()["status"] != "SUCCEEDED"):
        assert pending["estimatedCost"] == {"credits": 8}
        if pending["status"] == "RUNNING":
            assert 0 <= pending["progress"] <= 1
    body = final.json()
    assert body["status"] == "SUCCEEDED"
    assert body["createdAt"].endswith("Z")
    assert body["cost"] == {"credits": 8}
    still = Image.open(io.BytesIO(client.get(body["output"][0]).content))
    assert still.size == (1808, 768)

    response = create(client, "image_to_video", model="gen4_turbo", ratio="1584:672",
                      duration=5, promptText="drift", promptImage=body["output"][0])
    final, _ = finish(client, response.json()["id"])
    assert final.json()["status"] == "SUCCEEDED"
    info = probe_video(client.get(final.json()["output"][0]).content)
    assert (info.width, info.height, info.duration) == (1584, 672, 5.0)
    assert mean_abs_difference(info.first_frame, fit(still, 1584, 672)) < 5
    stats = emu.stats()["runway"]
    assert stats["submissions"] == {"gen4_image": 1, "gen4_turbo": 1}
    assert stats["downloads"] == 2


@pytest.mark.parametrize("model", ["gen3a_turbo", "gen4_aleph"])
def test_retired_models_are_refused_with_the_replacement(emu, client, model):
    first = picture(colour=(200, 0, 0))
    response = create(client, "image_to_video", model=model, duration=5, ratio="1280:768",
                      promptText="fade", promptImage=data_uri(first))
    assert response.status_code == 400
    body = response.json()
    assert "retired" in body["error"] and "2026-07-30" in body["error"]
    assert "gen4.5" in body["error"]
    assert body["issues"][0]["path"] == ["model"]
    assert emu.stats()["runway"]["total_submissions"] == 0


def test_gen4_5_and_gen4_turbo_make_videos_of_the_asked_length(client):
    still = data_uri(picture(640, 360))
    ids = {
        ("gen4.5", 7): create(client, "image_to_video", model="gen4.5", duration=7,
                              ratio="960:960", promptText="orbit", promptImage=still,
                              contentModeration={"publicFigureThreshold": "low"}),
        ("gen4_turbo", 3): create(client, "image_to_video", model="gen4_turbo", duration=3,
                                  ratio="1280:720", promptImage=[{"uri": still,
                                                                  "position": "first"}]),
    }
    for (model, seconds), response in ids.items():
        assert response.status_code == 200, response.text
        credits = {"gen4.5": 12, "gen4_turbo": 5}[model] * seconds
        assert response.json()["estimatedCost"] == {"credits": credits}
        final, _ = finish(client, response.json()["id"])
        assert final.json()["cost"] == {"credits": credits}
        info = probe_video(client.get(final.json()["output"][0]).content)
        assert info.duration == pytest.approx(seconds)


def test_gen4_image_turbo_costs_2_credits(client):
    response = create(client, "text_to_image", model="gen4_image_turbo", promptText="@hero",
                      ratio="1920:1080", referenceImages=[{"uri": IMAGE, "tag": "hero"}],
                      contentModeration={"publicFigureThreshold": "auto"})
    assert response.status_code == 200, response.text
    final, _ = finish(client, response.json()["id"])
    assert final.json()["cost"] == {"credits": 2}
    assert Image.open(io.BytesIO(client.get(final.json()["output"][0]).content)).size == (
        1920, 1080)


def test_every_get_gives_fresh_signed_urls(client):
    """(Their expiry is tested on a manual clock in test_emulator_phases.py.)"""
    response = create(client, "text_to_image", model="gen4_image", promptText="x",
                      ratio="720:720")
    final, _ = finish(client, response.json()["id"])
    first_url = final.json()["output"][0]
    second_url = task(client, response.json()["id"]).json()["output"][0]
    assert first_url != second_url
    assert first_url.split("?")[0] == second_url.split("?")[0]
    assert client.get(first_url).status_code == 200
    assert client.get(second_url).status_code == 200
    assert client.get(first_url.split("?")[0]).status_code == 403  # unsigned
    assert client.get(first_url.replace("sig=", "sig=f")).status_code == 403  # tampered
    later = first_url.replace("exp=", "exp=9")  # a longer life needs a new signature
    assert client.get(later).status_code == 403


def test_expire_marker_hands_out_dead_urls(client):
    response = create(client, "text_to_image", model="gen4_image", promptText="x [expire]",
                      ratio="720:720")
    final, _ = finish(client, response.json()["id"])
    assert final.json()["status"] == "SUCCEEDED"
    assert client.get(final.json()["output"][0]).status_code == 403


def test_failed_task_has_failure_and_code(client):
    response = create(client, "image_to_video", model="gen4_turbo", ratio="1280:720",
                      promptText="[fail]", promptImage=data_uri(picture(64, 64)))
    final, _ = finish(client, response.json()["id"])
    body = final.json()
    assert body["status"] == "FAILED"
    assert body["failure"] and body["failureCode"] == "SAFETY.INPUT.TEXT"
    assert "output" not in body


def test_unreachable_image_fails_with_asset_code(client):
    response = create(client, "image_to_video", model="gen4_turbo", ratio="1280:720",
                      promptImage="https://example.com/a.png")
    final, _ = finish(client, response.json()["id"])
    assert final.json()["failureCode"] == "ASSET.INVALID"
    assert "non-loopback" in final.json()["failure"]


def test_throttled_over_the_concurrency_limit(emu, client):
    emu.configure(runway_concurrency=1, latency=1.0)
    ids = [create(client, "text_to_image", model="gen4_image", promptText=f"n{n}",
                  ratio="720:720").json()["id"] for n in range(2)]
    assert task(client, ids[0]).json()["status"] in ("PENDING", "RUNNING")
    throttled = task(client, ids[1]).json()
    assert throttled["status"] == "THROTTLED"
    assert "estimatedCost" in throttled
    # a different key has its own slots
    other = client.post("/v1/text_to_image", headers={**RUNWAY_HEADERS, "Authorization": "Bearer other"},
                        json={"model": "gen4_image", "promptText": "x", "ratio": "720:720"})
    other_status = client.get(f"/v1/tasks/{other.json()['id']}",
                              headers={**RUNWAY_HEADERS, "Authorization": "Bearer other"})
    assert other_status.json()["status"] in ("PENDING", "RUNNING")
    final, seen = finish(client, ids[1])
    statuses = [r.json()["status"] for r in seen]
    assert statuses[0] == "THROTTLED" and final.json()["status"] == "SUCCEEDED"
    assert_in_order(statuses, ["THROTTLED", "PENDING", "RUNNING", "SUCCEEDED"])


def test_delete_cancels_then_deletes(emu, client):
    emu.configure(latency=5)
    task_id = create(client, "text_to_image", model="gen4_image", promptText="x",
                     ratio="720:720").json()["id"]
    response = client.delete(f"/v1/tasks/{task_id}", headers=RUNWAY_HEADERS)
    assert response.status_code == 204 and response.content == b""
    body = task(client, task_id).json()
    assert body["status"] == "CANCELLED" and body["cost"] == {"credits": 0}
    assert client.delete(f"/v1/tasks/{task_id}", headers=RUNWAY_HEADERS).status_code == 204
    assert task(client, task_id).status_code == 404
    assert client.delete(f"/v1/tasks/{task_id}", headers=RUNWAY_HEADERS).status_code == 404
    stats = emu.stats()["runway"]
    assert (stats["cancels"], stats["deletes"]) == (1, 1)


def test_delete_a_finished_task(client):
    task_id = create(client, "text_to_image", model="gen4_image", promptText="x",
                     ratio="720:720").json()["id"]
    final, _ = finish(client, task_id)
    url = final.json()["output"][0]
    assert client.delete(f"/v1/tasks/{task_id}", headers=RUNWAY_HEADERS).status_code == 204
    assert task(client, task_id).status_code == 404
    assert client.get(url).status_code == 404


def test_headers_are_required(client):
    body = {"model": "gen4_image", "promptText": "x", "ratio": "720:720"}
    assert client.post("/v1/text_to_image", json=body).status_code == 401
    no_version = client.post("/v1/text_to_image", json=body,
                             headers={"Authorization": f"Bearer {RUNWAY_KEY}"})
    assert no_version.status_code == 400 and "X-Runway-Version" in no_version.json()["error"]
    wrong = client.post("/v1/text_to_image", json=body,
                        headers={**RUNWAY_HEADERS, "X-Runway-Version": "2023-01-01"})
    assert wrong.status_code == 400
    assert client.get("/v1/tasks/nope", headers=RUNWAY_HEADERS).status_code == 404


IMAGE = "https://example.com/a.png"


@pytest.mark.parametrize(
    ("endpoint", "body", "field"),
    [
        ("image_to_video", {"model": "gen4_turbo", "promptImage": IMAGE}, "ratio"),
        ("image_to_video", {"model": "gen4_turbo", "promptImage": IMAGE, "ratio": "1280:768"},
         "ratio"),
        ("image_to_video", {"model": "gen4.5", "promptImage": IMAGE, "ratio": "1280:720",
                            "promptText": "x"}, "duration"),
        ("image_to_video", {"model": "gen4.5", "promptImage": IMAGE, "ratio": "1280:720",
                            "duration": 5}, "promptText"),
        ("image_to_video", {"model": "gen4.5", "promptImage": IMAGE, "ratio": "1280:720",
                            "duration": 11, "promptText": "x"}, "duration"),
        ("image_to_video", {"model": "gen4_turbo", "promptImage": IMAGE, "ratio": "1280:720",
                            "contentModeration": {"publicFigureThreshold": "high"}},
         "contentModeration.publicFigureThreshold"),
        ("image_to_video", {"model": "gen4_turbo", "promptImage": "runway://", "ratio":
                            "1280:720"}, "promptImage"),
        ("image_to_video", {"model": "gen4_turbo", "promptImage": "runway://uploads/nope",
                            "ratio": "1280:720"}, "promptImage"),
        ("text_to_image", {"model": "gen4_image_turbo", "promptText": "x", "ratio": "720:720"},
         "referenceImages"),
        ("text_to_image", {"model": "gen4_image_turbo", "promptText": "x", "ratio": "720:720",
                           "referenceImages": []}, "referenceImages"),
        ("text_to_image", {"model": "gen4_image_turbo", "promptText": "x", "ratio": "1280:768",
                           "referenceImages": [{"uri": IMAGE}]}, "ratio"),
        ("image_to_video", {"model": "gen5", "promptImage": IMAGE}, "model"),
        ("image_to_video", {"model": "gen4_turbo", "ratio": "1280:720"}, "promptImage"),
        ("image_to_video", {"model": "gen4_turbo", "ratio": "1280:720",
                            "promptImage": "http://example.com/a.png"}, "promptImage"),
        ("image_to_video", {"model": "gen4_turbo", "ratio": "1280:720",
                            "promptImage": [{"uri": IMAGE, "position": "last"}]},
         "promptImage[0].position"),
        ("image_to_video", {"model": "gen4_turbo", "ratio": "1280:720", "promptImage": IMAGE,
                            "duration": 1}, "duration"),
        ("image_to_video", {"model": "gen4_turbo", "ratio": "1280:720", "promptImage": IMAGE,
                            "seed": -1}, "seed"),
        ("image_to_video", {"model": "gen4_turbo", "ratio": "1280:720", "promptImage": IMAGE,
                            "promptText": "y" * 1001}, "promptText"),
        ("image_to_video", {"model": "gen4_turbo", "ratio": "1280:720",
                            "promptImage": "data:image/png;base64," + "A" * (7 * 1024 * 1024)},
         "promptImage"),
        ("text_to_image", {"model": "gen4_image", "ratio": "720:720"}, "promptText"),
        ("text_to_image", {"model": "gen4_image", "promptText": "x"}, "ratio"),
        ("text_to_image", {"model": "gen4_image", "promptText": "x", "ratio": "1280:768"},
         "ratio"),
        ("text_to_image", {"model": "gen4_image", "promptText": "x", "ratio": "720:720",
                           "referenceImages": [{"uri": IMAGE, "tag": "ab"}]},
         "referenceImages[0].tag"),
        ("text_to_image", {"model": "gen4_image", "promptText": "x", "ratio": "720:720",
                           "referenceImages": [{"uri": IMAGE, "tag": "1abc"}]},
         "referenceImages[0].tag"),
        ("text_to_image", {"model": "gen4_image", "promptText": "x", "ratio": "720:720",
                           "referenceImages": [{"uri": IMAGE, "tag": f"t{n}xx"} for n in range(4)]},
         "referenceImages"),
    ],
)
def test_validation_errors_name_the_field(emu, client, endpoint, body, field):
    response = create(client, endpoint, **body)
    assert response.status_code == 400
    assert field in response.json()["error"]
    assert response.json()["issues"][0]["message"]
    assert emu.stats()["runway"]["total_submissions"] == 0


def test_credits(emu, client):
    emu.configure(credits=5)
    body = {"model": "gen4_image", "promptText": "x", "ratio": "720:720"}
    assert create(client, "text_to_image", **body).status_code == 200
    response = create(client, "text_to_image", **body)
    assert response.status_code == 400 and "credits" in response.json()["error"]


def test_gen3a_turbo_served_again_when_not_retired(emu, client):
    """`runway_retired=frozenset()` emulates Runway before 2026-07-30 (gen3a's 4.18 rules)."""
    emu.configure(runway_retired=frozenset())
    first, last = picture(colour=(200, 0, 0)), picture(colour=(0, 0, 200))
    response = create(client, "image_to_video", model="gen3a_turbo", duration=5,
                      promptText="fade", promptImage=[
        {"uri": data_uri(first), "position": "first"}, {"uri": data_uri(last), "position": "last"},
    ])
    assert response.status_code == 200, response.text
    final, _ = finish(client, response.json()["id"])
    info = probe_video(client.get(final.json()["output"][0]).content)
    assert (info.width, info.height) == (1280, 768)  # gen3a_turbo's default ratio
    assert mean_abs_difference(info.last_frame, fit(last, 1280, 768)) < 5
    assert final.json()["cost"] == {"credits": 25}  # priced like gen4_turbo while served
    assert create(client, "image_to_video", model="gen3a_turbo", duration=3, promptText="x",
                  promptImage=IMAGE).status_code == 400  # 5 or 10 only
