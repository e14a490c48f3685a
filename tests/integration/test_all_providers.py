"""Every model/provider pair through the flows, against the emulator's three protocols."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import av
import numpy as np
import pytest
from PIL import Image
from prefect import flow
from pydantic import SecretStr

from prefect_runway import (
    InvalidRequest,
    RunwayCredentials,
    SegmindCredentials,
    image_to_video,
)
from prefect_runway.emulator import Emulator, EmulatorConfig
from prefect_runway.flows import animate_image, generate_image
from prefect_runway.flows import chain as chain_flows
from prefect_runway.models import ImageRequest
from prefect_runway.tasks.generation import submit_task_for

REF = [{"uri": "https://example.com/ref.png", "tag": "hero"}]


def _video(path: str) -> tuple[float, tuple[int, int], Image.Image]:
    with av.open(path) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(video=0))
        return len(frames) / float(stream.average_rate), (stream.width, stream.height), frames[0].to_image()


def _mean_diff(a: Image.Image, b: Image.Image) -> float:
    b = b.convert("RGB").resize(a.size)
    return float(np.abs(np.asarray(a.convert("RGB"), np.int16) - np.asarray(b, np.int16)).mean())


def _credentials(kind: str, request: pytest.FixtureRequest):
    if kind == "aimlapi-legacy":
        creds = request.getfixturevalue("aimlapi_credentials")
        return creds.model_copy(update={"route": "legacy"})
    return request.getfixturevalue(f"{kind}_credentials")


@pytest.mark.parametrize(
    "image_provider, video_provider, model, ratio, size",
    [
        ("segmind", "segmind", "gen4_turbo", "1280:720", (1280, 720)),
        ("segmind", "segmind", "gen3a_turbo", "16:9", (1280, 768)),
        ("runway", "runway", "gen4_turbo", "16:9", (1280, 720)),
        ("runway", "segmind", "gen3a_turbo", "16:9", (1280, 768)),  # retired on Runway's own API
        ("runway", "aimlapi", "gen4_turbo", "16:9", None),
        ("segmind", "aimlapi", "gen3a_turbo", "16:9", None),
        ("runway", "aimlapi-legacy", "gen4_turbo", "16:9", None),
        ("segmind", "aimlapi-legacy", "gen3a_turbo", "9:16", None),
        ("segmind", "runway", "gen4_turbo", "1280:720", (1280, 720)),
    ],
)
async def test_every_pair_makes_real_media(
    request, runway_emulator, tmp_path, image_provider, video_provider, model, ratio, size
):
    """Still on one provider, animation on another (or the same): real PNG and MP4."""
    image_creds = _credentials(image_provider, request)
    video_creds = _credentials(video_provider, request)
    before = runway_emulator.stats()
    result = await image_to_video(
        still_prompt=f"pair {image_provider}->{video_provider} {model} @hero",
        motion_prompt="the camera drifts",
        reference_images=REF,
        image_credentials=image_creds,
        video_credentials=video_creds,
        video_model=model,
        still_ratio="1280:720",
        video_ratio=ratio,
        duration=5,
        seed=7,
        storage=str(tmp_path),
    )
    with Image.open(result.still.location) as still:
        assert still.size == (1280, 720)
        seconds, frame_size, first = _video(result.video.location)
        assert seconds == pytest.approx(5.0, abs=0.3)
        if size is not None:
            assert frame_size == size
        if frame_size[0] / frame_size[1] == pytest.approx(1280 / 720, rel=0.01):
            assert _mean_diff(first, still) < 12
    assert result.still.provider == image_provider.split("-")[0]
    assert result.video.provider == video_provider.split("-")[0]
    assert result.video.model == model
    after = runway_emulator.stats()
    for provider in {image_provider.split("-")[0], video_provider.split("-")[0]}:
        assert after[provider]["duplicate_submissions"] == before[provider]["duplicate_submissions"]


async def test_runway_still_with_three_references(runway_credentials, tmp_path):
    refs = [{"uri": f"https://example.com/r{i}.png", "tag": f"ref{i}"} for i in range(3)]
    out = await generate_image(
        prompt="@ref0 meets @ref1 under @ref2", reference_images=refs, ratio="1920:1080",
        credentials=runway_credentials, storage=str(tmp_path),
    )
    with Image.open(out.location) as im:
        assert im.size == (1920, 1080)


async def test_aimlapi_refuses_gen4_image_before_any_request(runway_emulator, aimlapi_credentials, tmp_path):
    before = runway_emulator.stats()["aimlapi"]["total_submissions"]
    with pytest.raises(InvalidRequest) as info:
        await generate_image(prompt="p", reference_images=REF, credentials=aimlapi_credentials,
                             storage=str(tmp_path))
    assert info.value.field == "model"
    assert runway_emulator.stats()["aimlapi"]["total_submissions"] == before


@pytest.mark.parametrize("provider", ["runway", "aimlapi"])
async def test_local_file_becomes_a_data_uri(request, provider, tmp_path):
    image = tmp_path / "frame.png"
    Image.new("RGB", (640, 360), (200, 40, 40)).save(image)
    creds = _credentials(provider, request)
    out = await animate_image(image=str(image), prompt="pulse", credentials=creds,
                              storage=str(tmp_path / "out"))
    _, _, first = _video(out.location)
    assert _mean_diff(first, Image.open(image)) < 12
    assert out.request["promptImage" if provider == "runway" else "image_url"].startswith("sha256:")


async def test_local_file_for_segmind_says_it_needs_a_url(segmind_credentials, tmp_path):
    image = tmp_path / "frame.png"
    Image.new("RGB", (640, 360)).save(image)
    with pytest.raises(InvalidRequest) as info:
        await animate_image(image=str(image), prompt="pulse", credentials=segmind_credentials,
                            storage=str(tmp_path))
    assert info.value.field == "image"
    assert "https URL" in str(info.value)


async def test_aimlapi_rejects_a_too_wide_first_frame_locally(aimlapi_credentials, runway_emulator, tmp_path):
    image = tmp_path / "banner.png"
    Image.new("RGB", (1000, 400)).save(image)  # 2.5:1
    before = runway_emulator.stats()["aimlapi"]["total_submissions"]
    with pytest.raises(InvalidRequest) as info:
        await animate_image(image=str(image), prompt="p", credentials=aimlapi_credentials,
                            storage=str(tmp_path))
    assert info.value.field == "image" and "0.5 and 2" in str(info.value)
    assert runway_emulator.stats()["aimlapi"]["total_submissions"] == before


async def test_stale_runway_still_is_passed_on_by_a_fresh_url(runway_credentials, tmp_path, monkeypatch):
    """An old still URL is refreshed from Runway (which signs new URLs on each fetch)."""
    first = await image_to_video(
        still_prompt="fresh url @hero", motion_prompt="m", credentials=runway_credentials,
        reference_images=REF, storage=str(tmp_path),
    )
    monkeypatch.setattr(chain_flows, "FRESH_URL_SECONDS", -1)

    @flow
    async def hand_over():
        from prefect_runway.tasks.collect import wait_for_generation

        gen = await submit_task_for(runway_credentials)(
            ImageRequest(prompt="fresh url @hero", reference_images=REF), runway_credentials,
        )
        result = await wait_for_generation(gen, runway_credentials)
        url = await chain_flows.still_reference(first.still, result, runway_credentials,
                                                     runway_credentials, str(tmp_path))
        return result.outputs[0], url

    old, fresh = await hand_over()
    assert fresh.startswith("http://127.0.0.1") and fresh != old


async def test_expired_segmind_still_is_handed_over_as_data_uri(tmp_path, monkeypatch):
    """Segmind forgot the still (1 h retention): the stored copy goes to Runway as a data URI."""
    with Emulator(EmulatorConfig(latency=0.2, video_fps=4)) as emu:
        kw = dict(api_key=SecretStr("k"), base_url=emu.url, poll_interval_seconds=0.1)
        segmind, runway = SegmindCredentials(**kw), RunwayCredentials(**kw)
        monkeypatch.setattr(chain_flows, "FRESH_URL_SECONDS", -1)

        @flow
        async def chain_after_expiry():
            from prefect_runway.tasks.collect import download_generation, wait_for_generation

            req = ImageRequest(prompt="expiring still @hero", reference_images=REF)
            gen = await submit_task_for(segmind)(req, segmind)
            result = await wait_for_generation(gen, segmind)
            still = (await download_generation(result, segmind, str(tmp_path)))[0]
            emu.reset()  # the provider has forgotten the job (past its retention)
            handed = await chain_flows.still_reference(still, result, segmind, runway, str(tmp_path))
            segmind_only = None
            try:
                await chain_flows.still_reference(still, result, segmind, segmind, str(tmp_path))
            except InvalidRequest as exc:
                segmind_only = exc
            return handed, segmind_only

        handed, segmind_only = await chain_after_expiry()
        assert handed.startswith("data:image/png;base64,")
        assert segmind_only is not None and "S3" in str(segmind_only)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_demo_command_runs_a_mixed_chain_into_s3(tmp_path):
    """The README's first command with a mixed chain (a Runway still animated on AIMLAPI),
    storing into S3 (moto on 127.0.0.1) named only by the environment, as a user would."""
    import boto3
    from s3_helpers import AWS_KEY_ID, AWS_SECRET, moto_server

    with moto_server() as endpoint:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=AWS_KEY_ID, aws_secret_access_key=AWS_SECRET)
        bucket = f"demo-{uuid.uuid4().hex[:8]}"  # its own: the moto server is shared
        s3.create_bucket(Bucket=bucket)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
        for key in ("SEGMIND_API_KEY", "AIMLAPI_API_KEY", "RUNWAYML_API_SECRET"):
            env.pop(key, None)
        env.update(
            PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
            AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID=AWS_KEY_ID,
            AWS_SECRET_ACCESS_KEY=AWS_SECRET, AWS_DEFAULT_REGION="us-east-1",
        )
        proc = subprocess.run(
            [sys.executable, "-m", "prefect_runway.cli", "demo", "--image-provider", "runway",
             "--video-provider", "aimlapi", "--latency", "0.3", "--fps", "4",
             "--storage", f"s3://{bucket}/renders"],
            env=env, capture_output=True, text=True, timeout=180,
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        assert "emulator" in proc.stdout
        keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert [k for k in keys if k.endswith((".png", ".mp4"))] and all(k.startswith("renders/") for k in keys)
    assert sum(k.endswith(".png") for k in keys) == 1 and sum(k.endswith(".mp4") for k in keys) == 1
    ledger = [k for k in keys if k.startswith("renders/prefect-runway-ledger/")]
    assert len(ledger) == 2  # the submission ledger lives with the outputs: one record per job
    assert sum(k.endswith(".json") for k in keys) == 2 + len(ledger)  # a sidecar beside each
    output = proc.stdout + proc.stderr
    assert "emulator-key" not in output and AWS_SECRET not in output
