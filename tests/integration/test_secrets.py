"""A known key, DEBUG logging everywhere (httpx and httpcore included), flows on all three
providers: the key appears in no log line, artifact, flow-run parameter, persisted result or
file — and signed output URLs are logged without their signatures."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.settings import PREFECT_HOME
from pydantic import SecretStr

from prefect_runway import AimlapiCredentials, RunwayCredentials, SegmindCredentials, image_to_video
from prefect_runway.emulator import Emulator, EmulatorConfig

CANARY = "sk-LEAK-CANARY-7d41c9e2a0"
REF = [{"uri": "https://example.com/ref.png", "tag": "hero"}]


def _files_containing(root: Path, needle: bytes) -> list[Path]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            try:
                if needle in path.read_bytes():
                    hits.append(path)
            except OSError:
                pass
    return hits


async def test_the_key_is_never_written_anywhere(tmp_path, caplog):
    with Emulator(EmulatorConfig(latency=0.2, video_fps=2)) as emu:
        kw = dict(api_key=SecretStr(CANARY), base_url=emu.url, poll_interval_seconds=0.1)
        segmind, aimlapi, runway = SegmindCredentials(**kw), AimlapiCredentials(**kw), RunwayCredentials(**kw)
        for name in ("httpx", "httpcore", "prefect", "prefect_runway", ""):
            logging.getLogger(name).setLevel(logging.DEBUG)
        caplog.set_level(logging.DEBUG)
        runs = []
        for image_creds, video_creds in ((segmind, aimlapi), (runway, runway), (segmind, segmind)):
            state = await image_to_video(
                still_prompt="secret keeping @hero", motion_prompt="drift", reference_images=REF,
                image_credentials=image_creds, video_credentials=video_creds,
                storage=str(tmp_path / "out"), return_state=True,
            )
            result = await state.aresult()
            runs.append(state.state_details.flow_run_id)
        # Also an error path: a wrong key's rejection must not echo the key either.
        emu.configure(api_keys=frozenset({"the-only-valid-key"}))
        bad = await image_to_video(
            still_prompt="rejected @hero", motion_prompt="m", reference_images=REF,
            credentials=segmind, storage=str(tmp_path / "out"), return_state=True,
        )
        assert bad.is_failed()
        runs.append(bad.state_details.flow_run_id)

    # Logs, at DEBUG, from every logger.
    assert caplog.records, "nothing was logged"
    assert not [r for r in caplog.records if CANARY in r.getMessage()]
    assert CANARY not in caplog.text
    # Signed output URLs (Runway's, AIMLAPI's) appear in logs only without their query string.
    assert "sig=" not in caplog.text and "exp=" not in caplog.text
    # The flow runs' parameters and artifacts, as the Prefect API keeps them.
    async with get_client() as client:
        flow_runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=runs)))
        assert len(flow_runs) == 4
        for fr in flow_runs:
            assert CANARY not in fr.model_dump_json()
        artifacts = await client.read_artifacts(  # these runs' (not the first page of all)
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=runs)))
        assert artifacts
        for artifact in artifacts:
            assert CANARY not in artifact.model_dump_json()
    # Every file: outputs, sidecars, previews, and Prefect's persisted results and cache.
    assert _files_containing(tmp_path, CANARY.encode()) == []
    assert _files_containing(Path(os.path.expanduser(str(PREFECT_HOME.value()))), CANARY.encode()) == []
    assert result.video.sidecar and Path(result.video.sidecar).exists()


def test_reprs_and_dumps_hide_the_key():
    creds = RunwayCredentials(api_key=SecretStr(CANARY))
    assert CANARY not in repr(creds) and CANARY not in str(creds)
    assert CANARY not in creds.model_dump_json()
    client = creds.get_client()
    assert CANARY not in repr(client)


async def test_a_short_key_leaves_the_answers_as_they_came(tmp_path):
    """A one-letter key is no secret to scrub: every answer is parsed as the provider sent
    it (the key ``u`` is in every output URL, upload URL and upload URI the emulator hands
    out; replacing it with ``***`` broke the upload, the poll and the download)."""
    from prefect_runway import animate_image, generate_image
    from prefect_runway.emulator import media

    with Emulator(EmulatorConfig(latency=0.2, video_fps=2)) as emu:
        kw = dict(api_key=SecretStr("u"), base_url=emu.url, poll_interval_seconds=0.1)
        still = await generate_image(
            prompt="short keys @hero", reference_images=REF, credentials=SegmindCredentials(**kw),
            storage=str(tmp_path / "out"), name="short-key",
        )
        image = tmp_path / "still.png"
        image.write_bytes(media.make_still("short key upload", 3, 640, 360))
        video = await animate_image(
            image=str(image), prompt="drift", credentials=RunwayCredentials(**kw), duration=2,
            storage=str(tmp_path / "out"), preview=None, upload=True, name="short-key",
        )
        assert emu.stats()["runway"]["uploads"] == 1
    assert Path(still.location).stat().st_size == still.size
    assert Path(video.location).stat().st_size == video.size and video.media_type == "video/mp4"
