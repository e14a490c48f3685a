"""The `segmind` SDK 1.3.0 against the emulator: submit_async/wait, run, run_sync, errors."""

from __future__ import annotations

import io

import pytest
import segmind
from conformance_helpers import KEYS, download
from PIL import Image
from segmind import InferenceFailed, SegmindClient
from segmind.exceptions import SegmindError
from segmind.v2 import AsyncJob

from prefect_runway.emulator.media import fit, mean_abs_difference, probe_video

pytestmark = pytest.mark.timeout(60)

REFS = [{"uri": "https://segmind-inference-inputs.s3.amazonaws.com/beach.png", "tag": "model"}]


@pytest.fixture
def client(emu):
    sdk = SegmindClient(api_key=KEYS["segmind"], base_url=f"{emu.url}/v1")
    yield sdk
    sdk._client.close()


def test_sdk_version():
    assert segmind.__version__ == "1.3.0"


def test_base_url_v1_maps_to_the_v2_routes(emu, client):
    job = client.submit_async("runway-gen4-image", promptText="x", referenceImages=REFS)
    assert isinstance(job, AsyncJob)
    assert job.status_url == f"{emu.url}/v2/requests/{job.request_id}/status"
    assert job.response_url == f"{emu.url}/v2/requests/{job.request_id}"
    assert job.status()["status"] in ("QUEUED", "PROCESSING")


def test_all_three_slugs_complete_with_downloadable_media(emu, client):
    # seed 001: gen4-image with reference images
    still_job = client.submit_async(
        "runway-gen4-image",
        promptText="photo of a model wearing a cloth and standing in a garden.",
        referenceImages=REFS,
        ratio="1280:720",
    )
    still_result = still_job.wait(timeout=30, interval=0.1)
    assert still_result["status"] == "COMPLETED"
    assert still_result["metrics"]["inference_time"] > 0
    still = Image.open(io.BytesIO(download(still_result["output"])))
    assert still.size == (1280, 720)

    # seeds 000 and 002: payloads shaped exactly like the docs' examples
    for slug, ratio, size in (
        ("runway-gen4-turbo", "1280:720", (1280, 720)),
        ("runway-gen3-alphaturbo", "16:9", (1280, 768)),
    ):
        payload = {
            "promptText": "as the camera pans the bridge",
            "promptImage": still_result["output"],
            "seed": 56698,
            "ratio": ratio,
            "duration": "5",
        }
        result = client.submit_async(slug, **payload).wait(timeout=30, interval=0.1)
        assert result["status"] == "COMPLETED"
        info = probe_video(download(result["output"]))
        assert (info.width, info.height) == size
        assert info.duration == pytest.approx(5.0)
        assert mean_abs_difference(info.first_frame, fit(still, *size)) < 5

    assert emu.stats()["segmind"]["submissions"] == {
        "runway-gen4-image": 1, "runway-gen4-turbo": 1, "runway-gen3-alphaturbo": 1}


def test_failed_surfaces_as_inference_failed(client):
    job = client.submit_async("runway-gen4-image", promptText="[fail] x", referenceImages=REFS)
    with pytest.raises(InferenceFailed) as caught:
        job.wait(timeout=30, interval=0.1)
    assert caught.value.detail
    assert caught.value.status_body["status"] == "FAILED"
    # result() tolerates the 422 and returns the FAILED body too
    assert job.result()["status"] == "FAILED"


def test_bad_parameters_and_keys_raise_segmind_error(emu):
    client = SegmindClient(api_key=KEYS["segmind"], base_url=f"{emu.url}/v1")
    with pytest.raises(SegmindError) as caught:
        client.submit_async("runway-gen4-turbo", promptText="x",
                            promptImage="https://a.example/b.png", ratio="16:9")
    assert caught.value.status == 400 and "ratio" in caught.value.detail
    stranger = SegmindClient(api_key="not-a-key", base_url=f"{emu.url}/v1")
    with pytest.raises(SegmindError) as caught:
        stranger.submit_async("runway-gen4-image", promptText="x", referenceImages=REFS)
    assert caught.value.status == 401
    gone = AsyncJob(request_id="gone", status_url=f"{emu.url}/v2/requests/gone/status",
                    response_url=f"{emu.url}/v2/requests/gone", submit_response={},
                    _client=client)
    with pytest.raises(SegmindError) as caught:
        gone.status()
    assert caught.value.status == 404


def test_run_one_liner_and_run_sync(emu, client):
    result = client.run("runway-gen4-image", promptText="x", referenceImages=REFS,
                        ratio="1080:1920")  # default 1.0 s polling
    assert result["status"] == "COMPLETED"
    assert Image.open(io.BytesIO(download(result["output"]))).size == (1080, 1920)
    response = client.run_sync("runway-gen4-image", promptText="y", referenceImages=REFS)
    assert response.headers["content-type"] == "image/png"
    assert "x-remaining-credits" in response.headers
    assert Image.open(io.BytesIO(response.content)).size == (1280, 720)
