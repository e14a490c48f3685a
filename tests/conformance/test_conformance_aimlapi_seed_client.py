"""AI/ML API has no official SDK: its docs' own example clients (seeds 003 and 004),
written the same way with httpx, must complete against the emulator."""

from __future__ import annotations

import base64
import io
import time

import httpx
import pytest
from conformance_helpers import KEYS, download
from PIL import Image, ImageDraw

from prefect_runway.emulator.media import fit, mean_abs_difference, probe_video

pytestmark = pytest.mark.timeout(60)

POLL_SECONDS = 0.1  # the seed uses 10
TIMEOUT = 30  # the seed uses 600


def mountain_landscape_url(emu) -> tuple[str, Image.Image]:
    """A still to animate: made by the emulator itself (Runway text_to_image)."""
    headers = {"Authorization": f"Bearer {KEYS['runway']}", "X-Runway-Version": "2024-11-06"}
    task_id = httpx.post(f"{emu.url}/v1/text_to_image", headers=headers, trust_env=False, json={
        "model": "gen4_image", "promptText": "a barren mountain landscape", "ratio": "1280:720",
    }).json()["id"]
    while True:
        task = httpx.get(f"{emu.url}/v1/tasks/{task_id}", headers=headers, trust_env=False).json()
        if task["status"] == "SUCCEEDED":
            url = task["output"][0]
            return url, Image.open(io.BytesIO(download(url)))
        time.sleep(0.05)


def test_seed_004_legacy_example(emu):
    image_url, image = mountain_landscape_url(emu)
    base = emu.url  # the seed: https://api.aimlapi.com

    # Creating and sending a video generation task to the server (returns a generation ID)
    def generate_video():
        url = f"{base}/v2/generate/video/runway/generation"
        payload = {
            "model": "runway/gen4_turbo",
            "prompt": "A menacing evil dragon appears in a distance above the tallest mountain",
            "ratio": "16:9",
            "image_url": image_url,
        }
        headers = {"Authorization": f"Bearer {KEYS['aimlapi']}",
                   "Content-Type": "application/json"}
        response = httpx.post(url, json=payload, headers=headers, trust_env=False)
        if response.status_code >= 400:
            print(f"Error: {response.status_code} - {response.text}")
        else:
            response_data = response.json()
            print("Generation:", response_data)
            return response_data

    # Requesting the result of the generation task from the server using the generation_id
    def retrieve_video(gen_id):
        url = f"{base}/v2/generate/video/runway/generation"
        params = {"generation_id": gen_id}
        headers = {"Authorization": f"Bearer {KEYS['aimlapi']}",
                   "Content-Type": "application/json"}
        response = httpx.get(url, params=params, headers=headers, trust_env=False)
        return response.json()

    def main():
        generation_response = generate_video()
        gen_id = generation_response.get("id")
        if gen_id:
            start_time = time.time()
            while time.time() - start_time < TIMEOUT:
                response_data = retrieve_video(gen_id)
                if response_data is None:
                    print("Error: No response from API")
                    break
                status = response_data.get("status")
                if status == "generating" or status == "queued" or status == "waiting":
                    time.sleep(POLL_SECONDS)
                else:
                    print("Generation complete:/n", response_data)
                    return response_data
            print("Timeout reached. Stopping.")
            return None

    result = main()
    assert result is not None and result["status"] == "completed"
    info = probe_video(httpx.get(result["video"][0], trust_env=False).content)
    assert (info.width, info.height) == (1280, 720)
    assert mean_abs_difference(info.first_frame, fit(image, 1280, 720)) < 5


def test_seed_003_universal_example(emu):
    image = Image.new("RGB", (1024, 768), (90, 120, 160))
    ImageDraw.Draw(image).polygon([(0, 768), (512, 200), (1024, 768)], fill=(120, 110, 100))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    data_uri = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
    headers = {"Authorization": f"Bearer {KEYS['aimlapi']}"}
    created = httpx.post(f"{emu.url}/v2/video/generations", headers=headers, trust_env=False,
                         json={"model": "runway/gen4_turbo", "prompt": "a dragon",
                               "image_url": data_uri, "aspect_ratio": "4:3", "duration": 5})
    assert created.status_code == 200, created.text
    gen_id = created.json()["id"]
    deadline = time.time() + TIMEOUT
    while time.time() < deadline:
        data = httpx.get(f"{emu.url}/v2/video/generations", params={"generation_id": gen_id},
                         headers=headers, trust_env=False).json()
        if data["status"] not in ("generating", "queued", "waiting"):
            break
        time.sleep(POLL_SECONDS)
    assert data["status"] == "completed"
    assert data["meta"]["usage"]["credits_used"] > 0
    info = probe_video(httpx.get(data["video"]["url"], trust_env=False).content)
    assert (info.width, info.height) == (1104, 832)
    assert mean_abs_difference(info.first_frame, fit(image, 1104, 832)) < 6
