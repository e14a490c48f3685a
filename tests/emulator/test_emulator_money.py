"""Balances, charges, failure codes, quotas, uploads and the per-provider switch, over HTTP."""

from __future__ import annotations

import hashlib

import httpx
import pytest
from emu_helpers import (
    AIMLAPI_HEADERS,
    RUNWAY_HEADERS,
    RUNWAY_KEY,
    SEGMIND_HEADERS,
    data_uri,
    picture,
    png_bytes,
    wait_until,
)

from prefect_runway.emulator import Emulator, EmulatorConfig, key_id
from prefect_runway.emulator.media import probe_video

pytestmark = pytest.mark.timeout(60)

TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
IMAGE = "https://example.com/a.png"
LEGACY = "/v2/generate/video/runway/generation"
UNIVERSAL = "/v2/video/generations"
REFS = [{"uri": IMAGE, "tag": "hero"}]


def runway_task(client, endpoint, **body):
    return client.post(f"/v1/{endpoint}", headers=RUNWAY_HEADERS, json=body)


def runway_finish(client, task_id):
    final, _ = wait_until(
        lambda: client.get(f"/v1/tasks/{task_id}", headers=RUNWAY_HEADERS),
        lambda r: r.json()["status"] in TERMINAL,
    )
    return final.json()


def still(client, prompt="a hill", ratio="1280:720"):
    return runway_task(client, "text_to_image", model="gen4_image", promptText=prompt,
                       ratio=ratio)


# -- balances and charges ----------------------------------------------------------------


def test_runway_charges_match_the_balance_and_the_ledger(emu, client):
    emu.configure(credits=100)
    video = runway_task(client, "image_to_video", model="gen4_turbo", ratio="1280:720",
                        duration=4, promptImage=data_uri(picture(64, 36)))
    image = still(client, ratio="1920:1080")
    assert video.status_code == image.status_code == 200
    for response in (video, image):
        runway_finish(client, response.json()["id"])
    org = client.get("/v1/organization", headers=RUNWAY_HEADERS).json()
    assert org["creditBalance"] == 100 - 20 - 8
    charges = client.get("/_emulator/charges").json()
    assert [(c["model"], c["amount"], c["charged"], c["unit"]) for c in charges] == [
        ("gen4_turbo", 20.0, 20.0, "credits"), ("gen4_image", 8.0, 8.0, "credits"),
    ]
    assert {c["key_id"] for c in charges} == {key_id(RUNWAY_KEY)}
    assert key_id(RUNWAY_KEY) == hashlib.sha256(RUNWAY_KEY.encode()).hexdigest()[:12]
    assert charges[0]["phase"] == "succeeded" and len(charges[0]["fingerprint"]) == 64
    stats = emu.stats()["runway"]
    assert stats["accounts"][key_id(RUNWAY_KEY)] == {"spent": 28.0, "balance": 72.0}
    assert stats["credits_used"] == 28 and stats["credits_remaining"] == 72


def test_runway_refuses_what_the_balance_cannot_pay(emu, client):
    emu.configure(credits=7)
    assert still(client).status_code == 200  # 5
    response = still(client)
    assert response.status_code == 400
    assert response.json() == {"error": "You do not have enough credits to run this task."}
    assert emu.stats()["runway"]["credit_refusals"] == 1
    other = {**RUNWAY_HEADERS, "Authorization": "Bearer another-key"}
    assert client.post("/v1/text_to_image", headers=other, json={
        "model": "gen4_image", "promptText": "x", "ratio": "720:720"}).status_code == 200


def test_segmind_balance_header_and_credits_route(emu, client):
    emu.configure(credits=0.8, latency=30)  # (the jobs stay running: not refunded yet)
    response = client.post("/v2/runway-gen4-turbo", headers=SEGMIND_HEADERS, json={
        "promptText": "x", "promptImage": IMAGE, "duration": 10})
    assert response.status_code == 200
    assert float(response.headers["x-remaining-credits"]) == pytest.approx(0.3)
    credits = client.get("/v1/get-user-credits", headers=SEGMIND_HEADERS).json()
    assert credits == {"credits": 0.3, "free-credits": 0.0, "credits_used": 0.5,
                       "currency": "USD"}
    refused = client.post("/v2/runway-gen4-turbo", headers=SEGMIND_HEADERS, json={
        "promptText": "x", "promptImage": IMAGE, "duration": 10, "ratio": "720:1280"})
    assert refused.status_code == 406
    assert refused.json()["error"].startswith("Insufficient credits")
    assert client.get("/v1/get-user-credits").status_code == 401


def test_aimlapi_billing_and_credits_used(emu, client):
    body = {"model": "runway/gen4_turbo", "image_url": data_uri(picture(64, 36)),
            "duration": 10}
    gen_id = client.post(UNIVERSAL, headers=AIMLAPI_HEADERS, json=body).json()["id"]
    final, _ = wait_until(
        lambda: client.get(UNIVERSAL, params={"generation_id": gen_id}, headers=AIMLAPI_HEADERS),
        lambda r: r.json()["status"] in ("completed", "error"),
    )
    assert final.json()["meta"]["usage"]["credits_used"] == 1_050_000
    billing = client.get("/v2/billing", headers=AIMLAPI_HEADERS).json()
    start = EmulatorConfig().balances["aimlapi"]
    assert billing["balance"] == start - 1_050_000
    assert billing["lowBalance"] is False and billing["status"] == "current"


# -- failure codes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "code", "charged"),
    [
        ("a [unsafe-input] hill", "SAFETY.INPUT.TEXT", 5),
        ("a [unsafe-output] hill", "SAFETY.OUTPUT.IMAGE", 0),
        ("a [internal] hill", "INTERNAL.BAD_OUTPUT", 0),
    ],
)
def test_runway_failure_codes_and_refunds(emu, client, prompt, code, charged):
    emu.configure(credits=50)
    task = runway_finish(client, still(client, prompt).json()["id"])
    assert task["status"] == "FAILED" and task["failureCode"] == code
    assert task["failure"] and task["cost"] == {"credits": charged}
    assert client.get("/v1/organization", headers=RUNWAY_HEADERS).json()["creditBalance"] == (
        50 - charged
    )
    assert client.get("/_emulator/charges").json()[0]["refunded"] is (charged == 0)


def test_unsafe_output_passes_when_resubmitted(emu, client):
    first = runway_finish(client, still(client, "[unsafe-output]").json()["id"])
    second = runway_finish(client, still(client, "[unsafe-output]").json()["id"])
    assert (first["status"], second["status"]) == ("FAILED", "SUCCEEDED")
    twice = [runway_finish(client, still(client, "[unsafe-output:2] x").json()["id"])["status"]
             for _ in range(3)]
    assert twice == ["FAILED", "FAILED", "SUCCEEDED"]


def test_internal_first_n_fails_then_passes(emu, client):
    runs = [runway_finish(client, still(client, "[internal:1] y").json()["id"]) for _ in range(2)]
    assert [(r["status"], r.get("failureCode")) for r in runs] == [
        ("FAILED", "INTERNAL.BAD_OUTPUT"), ("SUCCEEDED", None)]
    always = [runway_finish(client, still(client, "[internal] z").json()["id"])["status"]
              for _ in range(2)]
    assert always == ["FAILED", "FAILED"]


def test_video_unsafe_output_code(emu, client):
    response = runway_task(client, "image_to_video", model="gen4.5", ratio="1280:720",
                           duration=2, promptText="[unsafe-output]", promptImage=IMAGE)
    assert runway_finish(client, response.json()["id"])["failureCode"] == "SAFETY.OUTPUT.VIDEO"


def test_segmind_and_aimlapi_failure_shapes(emu, client):
    request_id = client.post("/v2/runway-gen4-turbo", headers=SEGMIND_HEADERS, json={
        "promptText": "[unsafe-output]", "promptImage": IMAGE}).json()["request_id"]
    final, _ = wait_until(
        lambda: client.get(f"/v2/requests/{request_id}/status", headers=SEGMIND_HEADERS),
        lambda r: r.json()["status"] in ("COMPLETED", "FAILED"),
    )
    assert final.status_code == 422 and "Output blocked" in final.json()["error"]
    gen_id = client.post(UNIVERSAL, headers=AIMLAPI_HEADERS, json={
        "model": "runway/gen4_turbo", "image_url": IMAGE, "prompt": "[internal]"}).json()["id"]
    final, _ = wait_until(
        lambda: client.get(UNIVERSAL, params={"generation_id": gen_id}, headers=AIMLAPI_HEADERS),
        lambda r: r.json()["status"] in ("completed", "error"),
    )
    assert final.json()["error"]["name"] == "InternalError"
    assert final.json()["meta"]["usage"]["credits_used"] == 0


# -- throttling and quotas ---------------------------------------------------------------


def test_per_model_concurrency_throttles_then_runs(emu, client):
    emu.configure(model_concurrency={"gen4_image": 1}, latency=0.5)
    first = still(client).json()["id"]
    second = still(client).json()["id"]
    other = runway_task(client, "text_to_image", model="gen4_image_turbo", promptText="x",
                        ratio="720:720", referenceImages=REFS).json()["id"]
    statuses = {task_id: client.get(f"/v1/tasks/{task_id}", headers=RUNWAY_HEADERS)
                .json()["status"] for task_id in (first, second, other)}
    assert statuses[second] == "THROTTLED"
    assert statuses[first] != "THROTTLED" and statuses[other] != "THROTTLED"
    assert runway_finish(client, second)["status"] == "SUCCEEDED"
    tier = client.get("/v1/organization", headers=RUNWAY_HEADERS).json()["tier"]
    assert tier["models"]["gen4_image"]["maxConcurrentGenerations"] == 1
    assert tier["models"]["gen4_turbo"]["maxConcurrentGenerations"] == 4  # runway_concurrency


def test_daily_quota_answers_429(emu, client):
    emu.configure(daily_limits={"gen4_image": 2, "runway-gen4-image": 1})
    assert still(client).status_code == still(client).status_code == 200
    refused = still(client)
    assert refused.status_code == 429 and "daily" in refused.json()["error"]
    org = client.get("/v1/organization", headers=RUNWAY_HEADERS).json()
    assert org["tier"]["models"]["gen4_image"]["maxDailyGenerations"] == 2
    assert org["usage"]["models"]["gen4_image"] == {"dailyGenerations": 2}
    assert org["tier"]["maxMonthlyCreditSpend"] == 1_000_000
    body = {"promptText": "x", "referenceImages": REFS}
    assert client.post("/v2/runway-gen4-image", headers=SEGMIND_HEADERS,
                       json=body).status_code == 200
    assert client.post("/v2/runway-gen4-image", headers=SEGMIND_HEADERS,
                       json=body).status_code == 429
    assert emu.stats()["runway"]["quota_refusals"] == 1


# -- uploads -----------------------------------------------------------------------------


def _upload(client, data: bytes, headers=RUNWAY_HEADERS) -> str:
    form = client.post("/v1/uploads", headers=headers,
                       json={"filename": "still.png", "type": "ephemeral"}).json()
    assert set(form) == {"runwayUri", "uploadUrl", "fields"}
    response = httpx.post(form["uploadUrl"], data=form["fields"],
                          files={"file": ("still.png", data, "image/png")}, trust_env=False)
    assert response.status_code == 204, response.text
    return form["runwayUri"]


def test_upload_then_animate_the_runway_uri(emu, client):
    uri = _upload(client, png_bytes(picture(640, 360, colour=(10, 200, 10))))
    assert uri.startswith("runway://")
    response = runway_task(client, "image_to_video", model="gen4_turbo", ratio="1280:720",
                           duration=2, promptImage=uri)
    assert response.status_code == 200, response.text
    task = runway_finish(client, response.json()["id"])
    assert task["status"] == "SUCCEEDED", task
    info = probe_video(client.get(task["output"][0]).content)
    assert info.duration == pytest.approx(2.0)
    assert info.first_frame.getpixel((5, 5))[1] > 150  # green: the uploaded image
    assert emu.stats()["runway"]["uploads"] == 1


def test_upload_rules(emu, client):
    form = client.post("/v1/uploads", headers=RUNWAY_HEADERS,
                       json={"filename": "x.png", "type": "ephemeral"}).json()
    # not posted yet: a task on it is refused, naming the field
    response = runway_task(client, "text_to_image", model="gen4_image_turbo", promptText="x",
                           ratio="720:720", referenceImages=[{"uri": form["runwayUri"]}])
    assert response.status_code == 400 and "referenceImages[0].uri" in response.json()["error"]
    bad = httpx.post(form["uploadUrl"], data={**form["fields"], "token": "forged"},
                     files={"file": ("x.png", b"123")}, trust_env=False)
    assert bad.status_code == 403
    assert client.post("/v1/uploads", headers=RUNWAY_HEADERS,
                       json={"filename": "x.png", "type": "permanent"}).status_code == 400
    # another key cannot use my upload
    uri = _upload(client, png_bytes(picture(64, 64)))
    other = {**RUNWAY_HEADERS, "Authorization": "Bearer someone-else"}
    response = client.post("/v1/image_to_video", headers=other, json={
        "model": "gen4_turbo", "ratio": "1280:720", "promptImage": uri})
    assert response.status_code == 400 and "another organization" in response.json()["error"]


# -- one switch per provider ---------------------------------------------------------------


def test_provider_switch_at_run_time(emu, client):
    emu.set_faults(providers={"segmind": "unavailable", "aimlapi": "empty"})
    down = client.post("/v2/runway-gen4-turbo", headers=SEGMIND_HEADERS,
                       json={"promptText": "x", "promptImage": IMAGE})
    assert down.status_code == 503 and down.headers["retry-after"]
    assert client.get("/v2/requests/abc/status", headers=SEGMIND_HEADERS).status_code == 503
    empty = client.post(UNIVERSAL, headers=AIMLAPI_HEADERS,
                        json={"model": "runway/gen4_turbo", "image_url": IMAGE})
    assert empty.status_code == 403 and "run out of credits" in empty.json()["message"]
    assert client.get("/v2/billing", headers=AIMLAPI_HEADERS).json()["balance"] == 0
    assert still(client).status_code == 200  # Runway serves
    stats = emu.stats()
    assert stats["aimlapi"]["empty"] and stats["segmind"]["faults"] == {"503": 2}
    emu.set_faults(providers={"runway": "submits_unavailable"})
    assert still(client).status_code == 503
    assert client.get("/v1/organization", headers=RUNWAY_HEADERS).status_code == 200
    emu.clear_faults()
    assert still(client).status_code == 200
    assert client.post(UNIVERSAL, headers=AIMLAPI_HEADERS, json={
        "model": "runway/gen4_turbo", "image_url": IMAGE}).status_code == 200


def test_provider_switch_from_the_start():
    with Emulator(EmulatorConfig(latency=0.1), faults={"providers": {"runway": "empty"}}) as emu:
        with httpx.Client(base_url=emu.url, trust_env=False, timeout=10) as http:
            response = http.post("/v1/text_to_image", headers=RUNWAY_HEADERS, json={
                "model": "gen4_image", "promptText": "x", "ratio": "720:720"})
            assert response.status_code == 400 and "credits" in response.json()["error"]
            org = http.get("/v1/organization", headers=RUNWAY_HEADERS).json()
            assert org["creditBalance"] == 0
            assert http.post("/v2/runway-gen4-image", headers=SEGMIND_HEADERS, json={
                "promptText": "x", "referenceImages": REFS}).status_code == 200


def test_upload_is_byte_exact_and_takes_a_12_mb_image(emu, client):
    import os

    from PIL import Image

    noise = Image.frombytes("RGB", (2048, 2048), os.urandom(2048 * 2048 * 3))
    data = png_bytes(noise)
    assert len(data) > 12 * 1024 * 1024  # over the 5 MB a data URI may carry
    uri = _upload(client, data)
    assert emu.backend.upload_bytes(uri) == data
    response = runway_task(client, "image_to_video", model="gen4_turbo", ratio="960:960",
                           duration=2, promptImage=[{"uri": uri, "position": "first"}])
    assert response.status_code == 200, response.text
    assert runway_finish(client, response.json()["id"])["status"] == "SUCCEEDED"
    assert emu.stats()["runway"]["upload_bytes"] == len(data)


def test_upload_expires_after_its_ttl():
    from prefect_runway.emulator import Backend, ManualClock
    from prefect_runway.emulator.backend import UploadError

    clock = ManualClock()
    backend = Backend(EmulatorConfig(upload_ttl=60), clock=clock)
    upload = backend.create_upload("k", "a.png")
    backend.complete_upload(upload.id, upload.token, b"bytes")
    assert backend.upload_bytes(f"runway://uploads/{upload.id}", "k") == b"bytes"
    clock.advance(61)
    with pytest.raises(UploadError, match="expired"):
        backend.upload_bytes(f"runway://uploads/{upload.id}", "k")
