"""The image-to-video pipeline on Segmind's protocol, end to end against the emulator.

Everything here runs for real over loopback: the emulator on 127.0.0.1, the Prefect test
server, the flows and tasks, httpx, Pillow and PyAV.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from pydantic import SecretStr

from prefect_runway import SegmindCredentials, StoredOutput, image_to_video
from prefect_runway.emulator import Emulator, EmulatorConfig
from prefect_runway.errors import AuthenticationError, GenerationFailed, InvalidRequest
from prefect_runway.flows import animate_image, generate_image

REF = [{"uri": "https://example.com/ref.png", "tag": "hero"}]


def _seen(emulator: Emulator, provider: str = "segmind") -> int:
    """Every request the emulator saw for a provider: submissions, polls, errors."""
    s = emulator.stats()[provider]
    return s["total_submissions"] + s["status_calls"] + s["result_calls"] + sum(s["errors"].values())


def _first_frame(path: str) -> Image.Image:
    with av.open(path) as container:
        frame = next(container.decode(video=0))
        return frame.to_image()


def _video_seconds(path: str) -> float:
    with av.open(path) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        return frames / float(stream.average_rate)


async def test_image_to_video_makes_real_png_and_mp4(runway_emulator, segmind_credentials, tmp_path):
    result = await image_to_video(
        still_prompt="a lighthouse at dusk @hero",
        motion_prompt="slow dolly in",
        credentials=segmind_credentials,
        reference_images=REF,
        still_ratio="1280:720",
        duration=5,
        seed=101,
        storage=str(tmp_path),
    )
    with Image.open(result.still.location) as still:
        assert still.format == "PNG"
        assert still.size == (1280, 720)
        still_rgb = still.convert("RGB")
    assert result.video.media_type == "video/mp4"
    assert _video_seconds(result.video.location) == pytest.approx(5.0, abs=0.3)
    first = _first_frame(result.video.location).convert("RGB")
    assert first.size == (1280, 720)
    diff = np.abs(np.asarray(first, dtype=np.int16) - np.asarray(still_rgb, dtype=np.int16)).mean()
    assert diff < 12, f"first frame differs from the still by {diff:.1f} on average"
    # Sidecars sit beside the outputs and describe them, with no secret.
    for out in (result.still, result.video):
        sidecar = Path(out.location + ".json").read_text()
        assert StoredOutput.model_validate_json(sidecar).sha256 == out.sha256
        assert "emulator-test-key" not in sidecar
    assert json.loads(Path(result.video.sidecar).read_text())["request"]["promptImage"].startswith("sha256:")
    # The still as an image artifact, and a markdown artifact linking both outputs.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as client:
        artifacts = await client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[result.still.flow_run_id])))
    # Local storage: the still and the preview inlined where the UI renders them, no file://.
    still = next(a for a in artifacts if a.key and a.key.startswith("still-"))
    assert still.type == "markdown" and "](data:image/jpeg;base64," in still.data
    preview = next(a for a in artifacts if a.key and a.key.startswith("preview-"))
    assert "](data:image/gif;base64," in preview.data
    summary = [a.data for a in artifacts if a.type == "markdown" and a.key.startswith("summary")]
    assert summary and result.still.location in summary[0] and result.video.location in summary[0]
    assert "file://" not in json.dumps([a.model_dump(mode="json") for a in artifacts])


async def test_running_twice_submits_each_job_once(runway_emulator, segmind_credentials, tmp_path):
    kwargs = dict(
        still_prompt="twice-run harbour @hero", motion_prompt="pan left",
        credentials=segmind_credentials, reference_images=REF, seed=202, storage=str(tmp_path),
    )
    before = runway_emulator.stats()["segmind"]
    first = await image_to_video(**kwargs)
    second = await image_to_video(**kwargs)
    after = runway_emulator.stats()["segmind"]
    assert after["total_submissions"] - before["total_submissions"] == 2  # one still, one video
    for fp in (first.still.fingerprint, first.video.fingerprint):
        assert fp == second.still.fingerprint or fp == second.video.fingerprint
    assert after["duplicate_submissions"] == before["duplicate_submissions"]
    # The second run found both outputs stored and verified: no new downloads.
    assert after["downloads"] - before["downloads"] == 2
    assert second.video.sha256 == first.video.sha256
    # ...and says where their sidecars are (it printed "sidecars: None, None" before).
    assert (second.still.sidecar, second.video.sidecar) == (first.still.sidecar, first.video.sidecar)
    assert all(Path(s).is_file() for s in (second.still.sidecar, second.video.sidecar))


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(ratio="4:5"), "ratio"),
        (dict(seed=0), "seed"),
        (dict(seed=100_000), "seed"),
        (dict(duration=7), "duration"),
        (dict(prompt="x" * 1001), "prompt"),
        (dict(prompt=""), "prompt"),
        (dict(image="http://example.com/still.png"), "image"),
        (dict(image="data:image/png;base64,iVBORw0KGgo="), "image"),
        (dict(image="ftp://example.com/still.png"), "image"),
        (dict(model="gen5_ultra"), "model"),
        (dict(model="gen3a_turbo", ratio="1584:672"), "ratio"),
    ],
)
async def test_invalid_video_input_is_rejected_before_any_request(
    runway_emulator, segmind_credentials, tmp_path, kwargs, field
):
    args = dict(image="https://example.com/still.png", prompt="move", credentials=segmind_credentials,
                storage=str(tmp_path))
    args.update(kwargs)
    before = _seen(runway_emulator)
    with pytest.raises(InvalidRequest) as info:
        await animate_image(**args)
    assert info.value.field == field
    assert _seen(runway_emulator) == before


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(reference_images=[]), "reference_images"),
        (dict(reference_images=[{"uri": "https://e.com/a.png", "tag": f"ref{i}"} for i in range(4)]),
         "reference_images"),
        (dict(reference_images=REF * 2), "reference_images.tag"),
        (dict(reference_images=[{"uri": "https://e.com/a.png", "tag": "9lives"}]), "reference_images.tag"),
        (dict(ratio="5:4"), "ratio"),
        (dict(prompt="   "), "prompt"),
    ],
)
async def test_invalid_image_input_is_rejected_before_any_request(
    runway_emulator, segmind_credentials, tmp_path, kwargs, field
):
    args = dict(prompt="a still", reference_images=REF, credentials=segmind_credentials,
                storage=str(tmp_path))
    args.update(kwargs)
    before = _seen(runway_emulator)
    with pytest.raises(InvalidRequest) as info:
        await generate_image(**args)
    assert info.value.field == field
    assert field in str(info.value)
    assert _seen(runway_emulator) == before


async def test_failed_job_raises_typed_error_with_provider_message_and_is_not_retried(
    runway_emulator, segmind_credentials, tmp_path
):
    before = runway_emulator.stats()["segmind"]
    with pytest.raises(GenerationFailed) as info:
        await generate_image(
            prompt="a still that breaks [fail]", reference_images=REF,
            credentials=segmind_credentials, storage=str(tmp_path),
        )
    assert info.value.provider == "segmind"
    assert info.value.job_id
    assert info.value.detail  # the provider's own message
    after = runway_emulator.stats()["segmind"]
    assert after["total_submissions"] - before["total_submissions"] == 1
    assert after["downloads"] == before["downloads"]


async def test_wrong_key_gives_auth_error_and_is_not_retried(tmp_path):
    with Emulator(EmulatorConfig(latency=0.2, video_fps=4, api_keys=frozenset({"the-right-key"}))) as emu:
        creds = SegmindCredentials(api_key=SecretStr("the-wrong-key"), base_url=emu.url,
                                   poll_interval_seconds=0.1)
        with pytest.raises(AuthenticationError) as info:
            await generate_image(prompt="p", reference_images=REF, credentials=creds,
                                 storage=str(tmp_path))
        assert "the-wrong-key" not in str(info.value)
        stats = emu.stats()["segmind"]
        assert stats["errors"] == {"401": 1}
        assert stats["total_submissions"] == 0
