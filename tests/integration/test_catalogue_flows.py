"""Issue 17 through the flows: uploads, a retired model, failure codes, THROTTLED time.

Real runs against the emulator on 127.0.0.1 (the session's Prefect test harness, the flows,
the tasks, httpx). What the provider was asked is read from the emulator's counters and its
charges list, as deltas around each run (the emulator is shared by the session). Each test
uses prompts of its own, so the emulator's per-prompt failure markers start fresh.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import uuid
from typing import Any

import httpx
import pytest
from PIL import Image
from pydantic import SecretStr

from prefect_runway import animate_image, image_to_video
from prefect_runway.blocks import RunwayCredentials
from prefect_runway.blocks.requests import prepare
from prefect_runway.errors import (
    ContentRejected,
    GenerationInternalError,
    GenerationTimedOut,
    ModelRetired,
    OutputRejected,
)
from prefect_runway.models import VideoRequest, bytes_to_data_uri
from prefect_runway.testing.fixtures import EMULATOR_KEY

REF = [{"uri": "https://example.com/ref.png", "tag": "hero"}]


def _png(width: int, height: int, *, noise: bool) -> bytes:
    """A PNG; with ``noise``, random pixels so that it does not compress."""
    if noise:
        image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    else:
        image = Image.new("RGB", (width, height), (40, 90, 160))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _runway(emulator: Any) -> dict[str, Any]:
    return emulator.stats()["runway"]


def _submissions(emulator: Any, model: str = "gen4_turbo") -> int:
    return _runway(emulator)["submissions"].get(model, 0)


def _small_image(tmp_path) -> str:
    path = tmp_path / "first-frame.png"
    path.write_bytes(_png(128, 72, noise=False))
    return str(path)


def _prompt(marker: str = "") -> str:
    return f"a lighthouse at dusk {uuid.uuid4().hex[:8]} {marker}".strip()


@pytest.fixture()
def sent(monkeypatch) -> list[httpx.Request]:
    """Every request our httpx clients send (observed on the way out; sent unchanged)."""
    requests: list[httpx.Request] = []
    send = httpx.AsyncClient.send

    async def recording_send(self, request, **kwargs):
        requests.append(request)
        return await send(self, request, **kwargs)

    monkeypatch.setattr(httpx.AsyncClient, "send", recording_send)
    return requests


# ---- uploads -----------------------------------------------------------------------------

async def test_a_12mb_local_still_is_animated_on_runway_via_an_upload(
    runway_credentials, runway_emulator, tmp_path, sent
):
    data = _png(2048, 2048, noise=True)
    assert len(data) > 12_000_000  # too long for a 5 MB data URI
    still = tmp_path / "big-still.png"
    still.write_bytes(data)
    before = _runway(runway_emulator)
    prompt = _prompt()

    video = await animate_image(
        image=str(still), credentials=runway_credentials, prompt=prompt, duration=3,
        storage=str(tmp_path / "out"), preview=None,
    )

    after = _runway(runway_emulator)
    assert after["uploads"] - before["uploads"] == 1
    assert after["upload_bytes"] - before["upload_bytes"] == len(data)
    assert after["submissions"]["gen4_turbo"] - before["submissions"].get("gen4_turbo", 0) == 1
    assert video.media_type == "video/mp4" and video.size > 0
    assert (tmp_path / "out" / video.key).is_file()
    # The request is known by the image's sha256, not by the upload's URI.
    digest = hashlib.sha256(data).hexdigest()
    elsewhere = prepare(VideoRequest(
        image="runway://uploads/some-other-upload.png", image_sha256=digest, prompt=prompt,
        duration=3,
    ), runway_credentials)
    assert video.fingerprint == elsewhere.fingerprint
    # The file went to the presigned form without the API key; the API calls carried it.
    opened = [r for r in sent if r.url.path == "/v1/uploads"]
    posted = [r for r in sent if r.url.path.startswith("/_emulator/uploads/")]
    assert len(opened) == 1 and len(posted) == 1
    assert opened[0].headers["authorization"] == f"Bearer {EMULATOR_KEY}"
    assert "authorization" not in posted[0].headers
    assert EMULATOR_KEY not in str(posted[0].headers) and EMULATOR_KEY not in str(posted[0].url)
    assert posted[0].headers["content-type"].startswith("multipart/form-data")


async def test_upload_true_uploads_an_image_that_would_fit_a_data_uri(
    runway_credentials, runway_emulator, tmp_path
):
    image = _small_image(tmp_path)
    prompt = _prompt()
    before = _runway(runway_emulator)

    video = await animate_image(
        image=image, credentials=runway_credentials, prompt=prompt, duration=2,
        storage=str(tmp_path / "out"), preview=None, upload=True,
    )

    after = _runway(runway_emulator)
    assert after["uploads"] - before["uploads"] == 1
    assert video.media_type == "video/mp4"
    # Uploaded or inline, the same image makes the same request.
    inline = prepare(VideoRequest(image=image, prompt=prompt, duration=2),
                     runway_credentials)
    assert video.fingerprint == inline.fingerprint


async def test_image_to_video_hands_the_stored_still_over_by_upload(
    runway_credentials, runway_emulator, tmp_path
):
    before = _runway(runway_emulator)

    result = await image_to_video(
        still_prompt=_prompt("@hero"), motion_prompt="slow push in", credentials=runway_credentials,
        reference_images=REF, still_ratio="1280:720", duration=2,
        storage=str(tmp_path / "out"), preview=None, upload=True,
    )

    after = _runway(runway_emulator)
    assert after["uploads"] - before["uploads"] == 1
    assert after["upload_bytes"] - before["upload_bytes"] == result.still.size
    assert result.video.request["promptImage"] == f"sha256:{result.still.sha256}"


# ---- retired models ----------------------------------------------------------------------

async def test_a_retired_model_is_refused_with_zero_requests(
    runway_credentials, runway_emulator, tmp_path
):
    before = runway_emulator.stats()

    with pytest.raises(ModelRetired) as caught:
        await image_to_video(
            still_prompt=_prompt("@hero"), motion_prompt="pan", credentials=runway_credentials,
            reference_images=REF, video_model="gen3a_turbo", storage=str(tmp_path / "out"),
        )

    assert "gen4_turbo" in str(caught.value)  # names the replacement
    assert runway_emulator.stats() == before


async def test_gen3a_turbo_keeps_working_on_segmind(segmind_credentials, runway_emulator, tmp_path):
    before = runway_emulator.stats()["segmind"]["submissions"]

    result = await image_to_video(
        still_prompt=_prompt("@hero"), motion_prompt="pan", credentials=segmind_credentials,
        reference_images=REF, video_model="gen3a_turbo", storage=str(tmp_path / "out"),
        preview=None,
    )

    after = runway_emulator.stats()["segmind"]["submissions"]
    assert result.video.model == "gen3a_turbo"
    assert sum(after.values()) - sum(before.values()) == 2


# ---- failure codes -----------------------------------------------------------------------

async def test_an_input_rejected_by_moderation_is_final(runway_credentials, runway_emulator, tmp_path):
    before = _submissions(runway_emulator)

    with pytest.raises(ContentRejected) as caught:
        await animate_image(
            image=_small_image(tmp_path), credentials=runway_credentials,
            prompt=_prompt("[unsafe-input]"), duration=2, storage=str(tmp_path / "out"),
            retry_unsafe_output=3,
        )

    assert caught.value.failure_code == "SAFETY.INPUT.TEXT"
    assert caught.value.charged is True
    assert _submissions(runway_emulator) - before == 1


async def test_an_output_rejected_by_moderation_fails_without_opt_in(
    runway_credentials, runway_emulator, tmp_path
):
    before = _submissions(runway_emulator)

    with pytest.raises(OutputRejected) as caught:
        await animate_image(
            image=_small_image(tmp_path), credentials=runway_credentials,
            prompt=_prompt("[unsafe-output]"), duration=2, storage=str(tmp_path / "out"),
        )

    assert caught.value.failure_code == "SAFETY.OUTPUT.VIDEO"
    assert _submissions(runway_emulator) - before == 1


async def test_an_output_rejected_by_moderation_is_retried_with_a_new_seed_when_asked(
    runway_credentials, runway_emulator, tmp_path, caplog
):
    first = len(runway_emulator.charges())
    image = _small_image(tmp_path)
    prompt = _prompt("[unsafe-output]")

    with caplog.at_level(logging.WARNING):
        video = await animate_image(
            image=image, credentials=runway_credentials, prompt=prompt, duration=2, seed=7,
            storage=str(tmp_path / "out"), preview=None, retry_unsafe_output=1,
        )

    charges = runway_emulator.charges()[first:]
    assert [c["phase"] for c in charges] == ["failed", "succeeded"]
    assert charges[0]["fingerprint"] != charges[1]["fingerprint"]
    original = prepare(VideoRequest(image=image, prompt=prompt, duration=2, seed=7),
                       runway_credentials)
    assert video.fingerprint != original.fingerprint
    assert video.request["seed"] != 7
    assert any("new seed" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


async def test_an_internal_failure_is_resubmitted_once(runway_credentials, runway_emulator, tmp_path):
    first = len(runway_emulator.charges())

    video = await animate_image(
        image=_small_image(tmp_path), credentials=runway_credentials,
        prompt=_prompt("[internal:1]"), duration=2, storage=str(tmp_path / "out"), preview=None,
    )

    charges = runway_emulator.charges()[first:]
    assert [c["phase"] for c in charges] == ["failed", "succeeded"]
    assert charges[0]["refunded"] and charges[0]["charged"] == 0
    assert charges[0]["fingerprint"] == charges[1]["fingerprint"]  # the same request again
    assert video.job_id == charges[1]["job_id"]


async def test_an_internal_failure_is_resubmitted_only_once(
    runway_credentials, runway_emulator, tmp_path
):
    before = _submissions(runway_emulator)

    with pytest.raises(GenerationInternalError) as caught:
        await animate_image(
            image=_small_image(tmp_path), credentials=runway_credentials,
            prompt=_prompt("[internal]"), duration=2, storage=str(tmp_path / "out"),
        )

    assert caught.value.failure_code == "INTERNAL.BAD_OUTPUT"
    assert _submissions(runway_emulator) - before == 2


async def test_internal_resubmission_can_be_turned_off(runway_credentials, runway_emulator, tmp_path):
    before = _submissions(runway_emulator)

    with pytest.raises(GenerationInternalError):
        await animate_image(
            image=_small_image(tmp_path), credentials=runway_credentials,
            prompt=_prompt("[internal]"), duration=2, storage=str(tmp_path / "out"),
            resubmit_internal=False,
        )

    assert _submissions(runway_emulator) - before == 1


# ---- THROTTLED ---------------------------------------------------------------------------

@pytest.fixture()
def one_slot(runway_emulator):
    """gen4_turbo with one slot per key; restored afterwards."""
    config = runway_emulator.config
    runway_emulator.configure(model_concurrency={**config.model_concurrency, "gen4_turbo": 1})
    yield runway_emulator
    runway_emulator.configure(model_concurrency=config.model_concurrency, latency=config.latency)


async def _hold_the_slot(emulator, credentials, image: str, seconds: float):
    """Submit a gen4_turbo job that runs ``seconds`` (the job's latency is fixed when made)."""
    latency = emulator.config.latency
    emulator.configure(latency=seconds)
    try:
        async with credentials.get_client() as client:
            return await client.submit(VideoRequest(image=image, prompt=_prompt(), duration=2))
    finally:
        emulator.configure(latency=latency)


def _strict(url: str, **extra: Any) -> RunwayCredentials:
    """Runway credentials with a 1 s wait deadline."""
    return RunwayCredentials(
        api_key=SecretStr(EMULATOR_KEY), base_url=url, poll_interval_seconds=0.1,
        max_poll_interval_seconds=0.2, adaptive_polling=False, wait_timeout_seconds=1, **extra,
    )


async def test_throttled_time_does_not_eat_the_wait_deadline(one_slot, tmp_path, caplog):
    credentials = _strict(one_slot.url, queue_timeout_seconds=60)
    image = bytes_to_data_uri(_png(128, 72, noise=False), "image/png")
    holder = await _hold_the_slot(one_slot, credentials, image, seconds=4.0)

    with caplog.at_level(logging.INFO, logger="prefect_runway.engine.client"):
        video = await animate_image(
            image=image, credentials=credentials, prompt=_prompt(), duration=2,
            storage=str(tmp_path / "out"), preview=None,
        )

    assert video.job_id != holder.job_id
    messages = [r.getMessage() for r in caplog.records if video.job_id in r.getMessage()]
    assert any("is THROTTLED" in m and "concurrency" in m for m in messages)
    assert any("left THROTTLED" in m for m in messages)


async def test_a_job_throttled_past_queue_timeout_times_out(one_slot, tmp_path):
    credentials = _strict(one_slot.url)
    image = bytes_to_data_uri(_png(128, 72, noise=False), "image/png")
    await _hold_the_slot(one_slot, credentials, image, seconds=4.0)

    async with credentials.get_client() as client:
        job = await client.submit(VideoRequest(image=image, prompt=_prompt(), duration=2))
        with pytest.raises(GenerationTimedOut) as caught:
            await client.wait(job, timeout=60, queue_timeout=0.5)

    assert "THROTTLED" in str(caught.value)
    assert caught.value.job_id == job.job_id


async def test_a_data_uri_too_long_for_runway_is_uploaded_automatically(
    runway_credentials, runway_emulator
):
    """What ``image_to_video`` hands Runway when a locally stored still must go inline."""
    from prefect_runway.blocks.requests import upload_images

    data = _png(1400, 1400, noise=True)  # ~5.9 MB: over the 5 MB data-URI limit
    request = VideoRequest(image=bytes_to_data_uri(data, "image/png"), prompt="p", duration=2)
    before = _runway(runway_emulator)

    uploaded = await upload_images(request, runway_credentials)

    assert _runway(runway_emulator)["uploads"] - before["uploads"] == 1
    assert uploaded.image.startswith("runway://")
    assert uploaded.image_sha256 == hashlib.sha256(data).hexdigest()
    # Nothing to upload for a URL, and nothing for a provider without an upload route.
    url = VideoRequest(image="https://example.com/a.png", prompt="p", duration=2)
    assert await upload_images(url, runway_credentials, upload=True) == url
