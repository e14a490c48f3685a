"""Every protocol's status vocabulary, step by step, over HTTP on a manual clock (no sleeps
decide the outcome, so these hold on a loaded machine)."""

from __future__ import annotations

import httpx
import pytest
from emu_helpers import (
    AIMLAPI_HEADERS,
    RUNWAY_HEADERS,
    SEGMIND_HEADERS,
    data_uri,
    picture,
    wait_until,
)

from prefect_runway.emulator import Emulator, EmulatorConfig, ManualClock

pytestmark = pytest.mark.timeout(60)

LEGACY = "/v2/generate/video/runway/generation"


def test_phases_expiry_and_url_lifetimes_follow_the_emulator_clock():
    clock = ManualClock()
    config = EmulatorConfig(latency=10, video_fps=2, runway_concurrency=1, expiry=3600,
                            output_url_ttl=86400)
    with Emulator(config, clock=clock) as emu, httpx.Client(base_url=emu.url,
                                                           trust_env=False) as client:
        segmind_id = client.post("/v2/runway-gen4-image", headers=SEGMIND_HEADERS, json={
            "promptText": "x", "referenceImages": [{"uri": "https://a.example/b", "tag": "abc"}],
        }).json()["request_id"]
        aimlapi_id = client.post(LEGACY, headers=AIMLAPI_HEADERS, json={
            "model": "runway/gen4_turbo", "image_url": data_uri(picture(64, 64)), "duration": 5,
        }).json()["id"]
        runway_ids = [
            client.post("/v1/text_to_image", headers=RUNWAY_HEADERS, json={
                "model": "gen4_image", "promptText": f"n{n}", "ratio": "720:720"}).json()["id"]
            for n in range(2)
        ]

        def states():
            segmind = client.get(f"/v2/requests/{segmind_id}/status", headers=SEGMIND_HEADERS)
            aimlapi = client.get(LEGACY, params={"generation_id": aimlapi_id},
                                 headers=AIMLAPI_HEADERS)
            runway = [client.get(f"/v1/tasks/{task_id}", headers=RUNWAY_HEADERS).json()["status"]
                      for task_id in runway_ids]
            return (segmind.json().get("status") if segmind.status_code != 404 else 404,
                    aimlapi.json()["status"], *runway)

        assert states() == ("QUEUED", "queued", "PENDING", "THROTTLED")
        clock.advance(5)
        assert states() == ("PROCESSING", "generating", "RUNNING", "THROTTLED")
        progress = client.get(f"/v1/tasks/{runway_ids[0]}", headers=RUNWAY_HEADERS).json()
        assert progress["progress"] == pytest.approx(0.375)  # (5 - 2) / (10 - 2)
        clock.advance(5)
        # latency is over; each job completes as soon as its media has been made
        wait_until(lambda: httpx.Response(200, json=list(states())),
                   lambda r: r.json()[:3] == ["COMPLETED", "completed", "SUCCEEDED"])
        assert states()[3] == "PENDING"  # the slot freed at t=10: it started then
        clock.advance(10)
        wait_until(lambda: httpx.Response(200, json=list(states())),
                   lambda r: r.json()[3] == "SUCCEEDED")

        output = client.get(f"/v1/tasks/{runway_ids[0]}", headers=RUNWAY_HEADERS).json()["output"]
        assert client.get(output[0]).status_code == 200
        clock.advance(86400)
        assert client.get(output[0]).status_code == 403
        fresh = client.get(f"/v1/tasks/{runway_ids[0]}", headers=RUNWAY_HEADERS).json()["output"]
        assert client.get(fresh[0]).status_code == 200
        # Segmind results were kept `expiry` seconds after submission
        assert states()[0] == 404
