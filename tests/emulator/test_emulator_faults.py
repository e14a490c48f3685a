"""Injected faults: scripted, rate limit, random; resets and truncated bodies."""

from __future__ import annotations

import httpx
import pytest
from emu_helpers import AIMLAPI_HEADERS, RUNWAY_HEADERS, SEGMIND_HEADERS, wait_until

from prefect_runway.emulator import FaultPlan

pytestmark = pytest.mark.timeout(60)

BODY = {"promptText": "faults", "referenceImages": [{"uri": "https://a.example/b", "tag": "abc"}]}


def submit(client):
    return client.post("/v2/runway-gen4-image", headers=SEGMIND_HEADERS, json=BODY)


def test_scripted_status_fault_on_the_nth_call(emu, client):
    emu.set_faults(scripted=[{"route": "segmind.status", "nth": 2, "fault": "503", "times": 2}])
    request_id = submit(client).json()["request_id"]
    codes = [client.get(f"/v2/requests/{request_id}/status", headers=SEGMIND_HEADERS)
             for _ in range(4)]
    assert [r.status_code for r in codes] == [200, 503, 503, 200]
    assert codes[1].headers["retry-after"] == "1"
    assert codes[1].json() == {"error": "Service temporarily unavailable"}
    stats = emu.stats()["segmind"]
    assert stats["faults"] == {"503": 2}
    assert stats["errors"] == {"503": 2}
    assert stats["status_calls"] == 2  # the faulted calls never reached the handler


@pytest.mark.parametrize(("retry_after", "sent"), [(0, "0"), (0.2, "1"), (2.5, "3")])
def test_retry_after_is_the_plans_in_whole_seconds(emu, client, retry_after, sent):
    emu.set_faults(scripted=[{"route": "segmind.submit", "fault": "429"}], retry_after=retry_after)
    assert submit(client).headers["retry-after"] == sent


def test_faults_use_each_providers_error_shape(emu, client):
    emu.set_faults(scripted=[{"route": "*", "fault": "429", "times": 10}])
    runway = client.get("/v1/tasks/x", headers=RUNWAY_HEADERS)
    assert runway.status_code == 429 and runway.json() == {"error": "Too many requests"}
    aimlapi = client.get("/v2/video/generations", params={"generation_id": "x"},
                         headers={"Authorization": "Bearer k"})
    assert aimlapi.status_code == 429 and aimlapi.json()["statusCode"] == 429


def test_reset_before_the_handler_creates_nothing(emu, client):
    emu.set_faults(scripted=[{"route": "segmind.submit", "fault": "reset"}])
    with pytest.raises(httpx.TransportError):
        submit(client)
    assert emu.stats()["segmind"]["total_submissions"] == 0
    assert submit(client).status_code == 200


def test_reset_after_the_handler_is_an_ambiguous_submit(emu, client):
    emu.set_faults(scripted=[{"route": "segmind.submit", "fault": "reset_after"}])
    with pytest.raises(httpx.TransportError):
        submit(client)
    stats = emu.stats()["segmind"]
    assert stats["total_submissions"] == 1  # the job exists and is billable
    submit(client)
    assert emu.stats()["segmind"]["duplicate_submissions"] == 1


def test_truncated_download_then_resume_with_range(emu, client):
    request_id = submit(client).json()["request_id"]
    final, _ = wait_until(
        lambda: client.get(f"/v2/requests/{request_id}", headers=SEGMIND_HEADERS),
        lambda r: r.status_code == 200,
    )
    url = final.json()["output"]
    emu.set_faults(scripted=[{"route": "media.download", "fault": "truncate"}])
    received = bytearray()
    with pytest.raises(httpx.RemoteProtocolError):
        with client.stream("GET", url) as response:
            total = int(response.headers["content-length"])
            for chunk in response.iter_bytes():
                received.extend(chunk)
    assert 0 < len(received) < total
    rest = client.get(url, headers={"Range": f"bytes={len(received)}-"})
    assert rest.status_code == 206
    whole = bytes(received) + rest.content
    assert len(whole) == total
    assert whole == client.get(url).content


def test_rate_limit_per_key(emu, client):
    emu.set_faults(rate_limit_per_key=0.5, rate_limit_burst=2)  # one token back per 2 s
    codes = [client.get("/v2/requests/x/status", headers=SEGMIND_HEADERS).status_code
             for _ in range(4)]
    assert codes == [404, 404, 429, 429]
    limited = client.get("/v2/requests/x/status", headers=SEGMIND_HEADERS)
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 2
    other_key = client.get("/v2/requests/x/status", headers={"x-api-key": "another"})
    assert other_key.status_code == 404  # buckets are per key


def test_random_faults_are_seeded(emu, client):
    plan = FaultPlan(random={"429": 0.3, "502": 0.2, "reset": 0.1}, seed=11)

    def run():
        emu.reset()
        emu.set_faults(plan)
        outcomes = []
        for _ in range(25):
            try:
                outcomes.append(client.get("/v2/requests/x/status",
                                           headers=SEGMIND_HEADERS).status_code)
            except httpx.TransportError:
                outcomes.append("reset")
        return outcomes

    first = run()
    assert first == run()
    assert {429, 502, "reset", 404} <= set(first)


def test_faults_over_http_and_validation(emu, client):
    plan = {"scripted": [{"route": "runway.status", "fault": "500"}], "seed": 2}
    response = client.post("/_emulator/faults", json=plan)
    assert response.status_code == 200
    assert response.json()["plan"]["scripted"][0]["fault"] == "500"
    assert client.get("/v1/tasks/x", headers=RUNWAY_HEADERS).status_code == 500
    assert client.get("/_emulator/faults").json()["injected"] == {"500": 1}
    assert client.post("/_emulator/faults", json={"random": {"teapot": 0.5}}).status_code == 400
    assert client.post("/_emulator/faults", json={"random": {"500": 0.9, "502": 0.2}}
                       ).status_code == 400
    client.delete("/_emulator/faults")
    assert client.get("/v1/tasks/x", headers=RUNWAY_HEADERS).status_code == 404
    # control routes are never faulted
    emu.set_faults(scripted=[{"route": "*", "fault": "500", "times": 100}])
    assert client.get("/_emulator/stats").status_code == 200


# -- one switch per provider (issue 15: fallback is tested end to end against these) -------

IMAGE = "https://example.com/a.png"
#: provider -> (submit, a status read, the balance read), each (method, path, json or params).
PROVIDER_ROUTES = {
    "segmind": (
        ("POST", "/v2/runway-gen4-turbo", {"promptText": "x", "promptImage": IMAGE}),
        ("GET", "/v2/requests/abc/status", None),
        ("GET", "/v1/get-user-credits", None),
    ),
    "aimlapi": (
        ("POST", "/v2/video/generations", {"model": "runway/gen4_turbo", "image_url": IMAGE}),
        ("GET", "/v2/video/generations?generation_id=abc", None),
        ("GET", "/v2/billing", None),
    ),
    "runway": (
        ("POST", "/v1/image_to_video", {"model": "gen4_turbo", "ratio": "1280:720",
                                         "promptImage": IMAGE, "promptText": "x"}),
        ("GET", "/v1/tasks/abc", None),
        ("GET", "/v1/organization", None),
    ),
}
HEADERS = {"segmind": SEGMIND_HEADERS, "aimlapi": AIMLAPI_HEADERS, "runway": RUNWAY_HEADERS}


def _call(client, provider, index):
    method, path, body = PROVIDER_ROUTES[provider][index]
    return client.request(method, path, headers=HEADERS[provider], json=body)


@pytest.mark.parametrize("provider", sorted(PROVIDER_ROUTES))
def test_one_switch_takes_one_provider_down_on_every_route(emu, client, provider):
    response = client.post("/_emulator/faults", json={"providers": {provider: "unavailable"}})
    assert response.status_code == 200
    for index in range(3):
        down = _call(client, provider, index)
        assert down.status_code == 503 and down.headers["retry-after"] == "1", (index, down.text)
    assert emu.stats()[provider]["total_submissions"] == 0
    for other in sorted(set(PROVIDER_ROUTES) - {provider}):  # the others serve
        assert _call(client, other, 0).status_code == 200, other
        assert _call(client, other, 2).status_code == 200, other


@pytest.mark.parametrize("provider, status, words", [
    ("segmind", 406, "Insufficient credits"),  # Segmind's 406 {"error": ...}
    ("aimlapi", 403, "run out of credits"),     # AIMLAPI's 403 {message, statusCode, ...}
    ("runway", 400, "enough credits"),         # Runway's 400 {"error": ...}
])
def test_one_switch_empties_one_account_with_its_providers_own_answer(
    emu, client, provider, status, words
):
    client.post("/_emulator/faults", json={"providers": {provider: "empty"}}).raise_for_status()
    refused = _call(client, provider, 0)
    assert refused.status_code == status and words in refused.text
    assert emu.stats()[provider]["total_submissions"] == 0
    assert emu.stats()[provider]["credit_refusals"] == 1
    assert emu.stats()[provider]["credits_remaining"] == 0 and emu.stats()[provider]["empty"]
    for other in sorted(set(PROVIDER_ROUTES) - {provider}):
        assert _call(client, other, 0).status_code == 200, other


@pytest.mark.parametrize("provider", sorted(PROVIDER_ROUTES))
async def test_the_client_reads_each_empty_answer_as_insufficient_credits(emu, provider):
    """The engine (the flows' one client) maps each provider's answer to the typed error the
    fallback policy moves on from."""
    from pydantic import SecretStr

    from prefect_runway import VideoRequest
    from prefect_runway.engine import GenerationClient
    from prefect_runway.errors import InsufficientCredits
    from prefect_runway.providers import get_provider

    emu.set_faults(providers={provider: "empty"})
    api = get_provider(provider)
    request = VideoRequest(image=IMAGE, prompt="x", model="gen4_turbo", duration=5)
    async with GenerationClient(api, SecretStr("k"), emu.url) as engine:
        with pytest.raises(InsufficientCredits) as info:
            await engine.submit(api.prepare(request, emu.url))
    assert info.value.provider == provider and info.value.status_code == {
        "segmind": 406, "aimlapi": 403, "runway": 400}[provider]
