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
import re
from uuid import UUID

import httpx
from PIL import Image
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from pydantic import SecretStr

from prefect_runway import RunwayCredentials, SegmindCredentials, image_to_video
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
