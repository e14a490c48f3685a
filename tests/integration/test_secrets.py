"""A known key, DEBUG logging everywhere (httpx and httpcore included), flows on all three
providers: the key appears in no log line, artifact, flow-run parameter, persisted result or
file — and signed output URLs are logged without their signatures."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.settings import PREFECT_API_URL, PREFECT_HOME
from pydantic import SecretStr

from prefect_runway import (
    AimlapiCredentials,
    RunwayCredentials,
    SegmindCredentials,
    animate_image,
    generate_image,
    image_to_video,
    storyboard,
)
from prefect_runway.emulator import Emulator, EmulatorConfig
from prefect_runway.errors import InvalidRequest

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


# ---- credentials given as a mapping: refused, and never stored ------------------------------

def _as_mapping(url: str) -> dict:
    return {"api_key": CANARY, "base_url": url}


async def _stored_parameters(flow_run_id) -> str:
    async with get_client() as client:
        flow_run = await client.read_flow_run(flow_run_id)
    return json.dumps(flow_run.parameters)


async def test_credentials_given_as_a_mapping_are_refused_and_never_stored(tmp_path):
    with Emulator(EmulatorConfig(latency=0.2, video_fps=2)) as emu:
        block = SegmindCredentials(api_key=SecretStr("a-block-key"), base_url=emu.url)
        clear = _as_mapping(emu.url)
        shot = {"still_prompt": "x @hero", "reference_images": REF}
        common = dict(still_prompt="x @hero", motion_prompt="y", reference_images=REF,
                      storage=str(tmp_path))
        cases = [  # (flow, its parameters, the parameter named in the error)
            (generate_image, dict(prompt="x @hero", reference_images=REF, credentials=clear),
             "credentials"),
            (animate_image, dict(image="https://example.com/still.png", credentials=clear),
             "credentials"),
            (image_to_video, dict(common, credentials=clear), "credentials"),
            (image_to_video, dict(common, credentials=block, image_credentials=clear),
             "image_credentials"),
            (image_to_video, dict(common, credentials=block, video_credentials=clear),
             "video_credentials"),
            (image_to_video, dict(common, credentials=block,
                                  video_fallback=["runway-credentials/x", clear]),
             "video_fallback[1]"),
            (storyboard, dict(shots=[shot], credentials=clear), "credentials"),
            (storyboard, dict(shots=[shot], credentials=block, image_fallback=[clear]),
             "image_fallback[0]"),
            (storyboard, dict(shots=[shot, {**shot, "video_credentials": clear}],
                              credentials=block), "shots[1].video_credentials"),
            (storyboard, dict(shots=[{**shot, "video_fallback": [clear]}], credentials=block),
             "shots[0].video_fallback[0]"),
        ]
        for flow, parameters, field in cases:
            state = await flow(**parameters, return_state=True)
            assert state.is_failed(), (flow.name, field)
            error = await state.aresult(raise_on_failure=False)
            assert isinstance(error, InvalidRequest) and error.field == field, (field, error)
            assert "saved credentials block" in str(error) and CANARY not in str(error)
            stored = await _stored_parameters(state.state_details.flow_run_id)
            assert CANARY not in stored and "refused, not stored" in stored, stored
        assert emu.stats()["segmind"]["total_submissions"] == 0

        # A run given the block itself that fails for another reason keeps its parameters.
        state = await generate_image(prompt="x [fail] @hero", reference_images=REF,
                                     credentials=block, storage=str(tmp_path),
                                     return_state=True)
        assert state.is_failed()
        stored = json.loads(await _stored_parameters(state.state_details.flow_run_id))
        assert stored["credentials"]["api_key"] == "**********"


async def test_a_deployment_run_given_credentials_as_a_mapping_forgets_them(tmp_path):
    """A run created through the API (a deployment's parameters) is stored by the server
    before any code of ours runs: the run replaces its stored parameters, then fails."""
    from prefect.deployments import run_deployment
    from prefect.types.entrypoint import EntrypointType

    deployment = await image_to_video.ato_deployment(
        name="mapping-credentials", entrypoint_type=EntrypointType.MODULE_PATH)
    await deployment.apply()
    flow_run = await run_deployment(
        "image-to-video/mapping-credentials", timeout=0, parameters={
            "still_prompt": "x @hero", "motion_prompt": "y", "reference_images": REF,
            "credentials": _as_mapping("http://127.0.0.1:9"), "storage": str(tmp_path)})
    assert CANARY in await _stored_parameters(flow_run.id)  # what the API stored
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    engine = subprocess.run([sys.executable, "-m", "prefect.engine", str(flow_run.id)],
                            env=env, capture_output=True, text=True, timeout=180)
    assert CANARY not in engine.stdout + engine.stderr
    async with get_client() as client:
        finished = await client.read_flow_run(flow_run.id)
        logs = await client.read_logs(log_filter=LogFilter(
            flow_run_id=LogFilterFlowRunId(any_=[flow_run.id])))
    assert finished.state.is_failed(), (finished.state, engine.stderr[-2000:])
    assert "credentials given as a mapping are refused" in finished.state.message
    assert CANARY not in json.dumps(finished.parameters)
    assert "refused, not stored" in finished.parameters["credentials"]
    assert not [log for log in logs if CANARY in log.message]
