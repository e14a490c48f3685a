"""What a person sees in the UI after the run: every picture renders, with nothing left running.

The chain runs on a local directory against an emulator that is then stopped, as after the
demo (and as a real provider's URL expires after 1-48 h). The artifacts are read back through
the Prefect API: every image reference must be inline (a ``data:`` URI that decodes as a
picture) or an http(s) URL that still answers; no ``file://`` link and no provider URL.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
from pathlib import Path
from uuid import UUID

import httpx
import pytest
from PIL import Image
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.logging.handlers import APILogHandler
from pydantic import SecretStr

from prefect_runway import (
    InvalidRequest,
    RunwayCredentials,
    SegmindCredentials,
    generate_image,
    image_to_video,
)
from prefect_runway.emulator import Emulator, EmulatorConfig

REF = [{"uri": "https://example.com/ref.png", "tag": "hero"}]
IMAGE_REFS = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)|<img[^>]+src=\"([^\"]+)\"")


def image_references(artifact) -> list[str]:
    if artifact.type == "image":
        return [artifact.data]
    if artifact.type == "markdown":
        return [a or b for a, b in IMAGE_REFS.findall(artifact.data)]
    return []


def assert_renders(src: str) -> None:
    if src.startswith("data:"):
        header, _, payload = src.partition(",")
        assert header in ("data:image/jpeg;base64", "data:image/gif;base64"), header
        with Image.open(io.BytesIO(base64.b64decode(payload))) as picture:
            picture.verify()
        return
    assert src.startswith(("http://", "https://")), src
    response = httpx.get(src, timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("image/")


async def test_local_storage_artifacts_render_after_the_emulator_is_gone(tmp_path):
    with Emulator(EmulatorConfig(latency=0.3, video_fps=4)) as emu:
        still_creds = SegmindCredentials(api_key=SecretStr("k"), base_url=emu.url,
                                         poll_interval_seconds=0.2)
        video_creds = RunwayCredentials(api_key=SecretStr("k"), base_url=emu.url,
                                        poll_interval_seconds=0.2)
        result = await image_to_video(
            still_prompt="a harbour at dawn & @hero", motion_prompt="slow pan",
            image_credentials=still_creds, video_credentials=video_creds, reference_images=REF,
            seed=31, storage=str(tmp_path), name="harbour",
        )
        emulator_url = emu.url
    async with get_client() as client:
        artifacts = await client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(result.still.flow_run_id)])))
    everything = json.dumps([a.model_dump(mode="json") for a in artifacts])
    assert "file://" not in everything
    keys = {a.key: a for a in artifacts}
    assert {"still-harbour", "preview-harbour", "summary-image-to-video",
            "outputs-image-to-video", "image-to-video-progress"} == set(keys)
    assert float(keys["image-to-video-progress"].data) == 100.0
    refs = [src for a in artifacts for src in image_references(a)]
    # the still, the preview, and both again in the summary
    assert len(refs) == 4
    for src in refs:
        assert not src.startswith(emulator_url)  # never the provider's temporary URL
        assert_renders(src)
    summary = keys["summary-image-to-video"].data
    assert "| shot | kind | provider/model | seconds | cost | size | link |" in summary
    assert "&amp;" not in everything
    rows = json.loads(keys["outputs-image-to-video"].data)
    assert [list(r)[:7] for r in rows] == [
        ["shot", "kind", "provider/model", "seconds", "cost", "size", "link"]] * 2
    assert [(r["shot"], r["kind"], r["provider/model"]) for r in rows] == [
        ("harbour", "image", "segmind/gen4_image"), ("harbour", "video", "runway/gen4_turbo")]
    assert all(len(r["link"]) < 120 for r in rows)


async def _artifacts_of(flow_run_id: str) -> dict:
    async with get_client() as client:
        artifacts = await client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)])))
    return {a.key: a for a in artifacts}


async def test_a_unicode_name_names_everything_safely_and_is_paid_once(
    segmind_credentials, runway_emulator, tmp_path,
):
    stats = runway_emulator.stats
    before = stats()["segmind"]["total_submissions"]
    kwargs = dict(prompt="a café at dusk, @hero", credentials=segmind_credentials,
                  reference_images=REF, seed=7, storage=str(tmp_path),
                  key_template="{name}-{kind}-{fingerprint:.8}.{ext}")
    still = await generate_image(name="café", **kwargs)
    assert still.key.startswith("cafe-image-") and Path(still.location).is_file()
    keys = await _artifacts_of(still.flow_run_id)
    assert set(keys) == {"still-cafe", "summary-gen4-image-still", "outputs-gen4-image-still"}
    assert "'café'" in keys["still-cafe"].description  # the name as given, where it is shown
    assert "café" in keys["summary-gen4-image-still"].data
    # A name with no ASCII form gets a slug of its own; the re-run of the first pays nothing.
    tokyo = await generate_image(name="東京", **kwargs)
    (key,) = [k for k in await _artifacts_of(tokyo.flow_run_id) if k.startswith("still-")]
    assert re.fullmatch(r"still-[a-z0-9]{8}", key), key  # 8 hex digits of its sha256
    again = await generate_image(name="café", **kwargs)
    assert again.sha256 == still.sha256
    assert stats()["segmind"]["total_submissions"] == before + 1

    # What cannot be shown safely is refused before anything is sent.
    for name in ("two\nlines", "bell\x07", "x" * 201, "\u202eevil"):
        with pytest.raises(InvalidRequest) as info:
            await generate_image(name=name, **kwargs)
        assert info.value.field == "name", info.value
    assert stats()["segmind"]["total_submissions"] == before + 1


async def test_an_artifact_that_cannot_be_published_never_fails_a_paid_run(
    segmind_credentials, runway_emulator, tmp_path, monkeypatch,
):
    from prefect_runway.flows import artifacts

    async def refused(*args, **kwargs):
        raise RuntimeError("the artifacts API is down")

    for name in ("acreate_markdown_artifact", "acreate_image_artifact", "acreate_table_artifact"):
        monkeypatch.setattr(artifacts, name, refused)
    still = await generate_image(prompt=f"a harbour {tmp_path.name} @hero", name="harbour",
                                 credentials=segmind_credentials, reference_images=REF,
                                 storage=str(tmp_path))
    assert Path(still.location).is_file()  # paid, stored, returned
    await APILogHandler.aflush()
    async with get_client() as client:
        logs = await client.read_logs(log_filter=LogFilter(
            flow_run_id=LogFilterFlowRunId(any_=[UUID(still.flow_run_id)])))
    warnings = [log.message for log in logs if log.level == logging.WARNING]
    assert any("Could not publish an artifact (publish_still: RuntimeError" in m for m in warnings)
    assert any("publish_outputs" in m and "outputs are stored" in m for m in warnings)


def test_demo_with_a_unicode_name_finishes(tmp_path, monkeypatch, capsys):
    """`prefect-runway demo --name café`: the still was paid, then the run died on its
    artifact key."""
    from prefect_runway import cli

    for name in ("SEGMIND_API_KEY", "AIMLAPI_API_KEY", "RUNWAYML_API_SECRET"):
        monkeypatch.delenv(name, raising=False)
    code = cli.main(["demo", "--name", "café", "--output", str(tmp_path / "out"),
                     "--latency", "0.3", "--fps", "4"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "video: " in out and (tmp_path / "out").is_dir()
