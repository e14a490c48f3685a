"""Cancelling a running flow run cancels its remote Runway job (and says so where it can't)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import pytest
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.runner import Runner
from prefect.states import Cancelling
from pydantic import SecretStr

from prefect_runway import RunwayCredentials, SegmindCredentials
from prefect_runway.emulator import Emulator, EmulatorConfig
from prefect_runway.flows import animate_image
from prefect_runway.flows.cancellation import cancel_remote_jobs, track
from prefect_runway.models import Generation, bytes_to_data_uri


def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (320, 180), (10, 120, 200)).save(buf, "PNG")
    return buf.getvalue()


async def _until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.25)


@pytest.mark.slow
@pytest.mark.timeout(240)  # bounded waits of 60, 60, 30 and 30 s
async def test_cancelling_the_flow_run_cancels_the_runway_job(tmp_path):
    with Emulator(EmulatorConfig(latency=120, video_fps=4)) as emu:
        block = f"cancel-{uuid.uuid4().hex[:8]}"
        await RunwayCredentials(
            api_key=SecretStr("cancel-test-key"), base_url=emu.url, poll_interval_seconds=0.2,
        ).save(block)
        runner = Runner(query_seconds=1, pause_on_shutdown=False)
        deployment_id = await runner.add_flow(animate_image, name=f"cancel-test-{block}")
        runner_task = asyncio.create_task(runner.start())
        try:
            flow_run = await run_deployment(
                deployment_id,
                parameters={
                    "image": bytes_to_data_uri(_png()),
                    "prompt": "a very long render",
                    "credentials": f"runway-credentials/{block}",
                    "storage": str(tmp_path),
                },
                timeout=0,
            )
            await _until(lambda: emu.stats()["runway"]["total_submissions"] >= 1, 60, "the submit")
            async with get_client() as client:
                await client.set_flow_run_state(flow_run.id, Cancelling(), force=True)
            await _until(lambda: emu.stats()["runway"]["cancels"] >= 1, 60, "the remote cancel")
            async with get_client() as client:
                for _ in range(60):
                    state = (await client.read_flow_run(flow_run.id)).state
                    if state and state.is_final():
                        break
                    await asyncio.sleep(0.5)
            assert state is not None and state.is_cancelled()
            assert emu.stats()["runway"]["total_submissions"] == 1
        finally:
            await runner.astop()
            runner_task.cancel()
            try:
                await asyncio.wait_for(runner_task, 30)
            except (asyncio.CancelledError, asyncio.TimeoutError, Exception):
                pass


async def test_provider_that_cannot_cancel_says_so(caplog, runway_emulator, segmind_credentials):
    run_id = uuid.uuid4()
    generation = Generation(
        provider="segmind", model="gen4_turbo", kind="video", job_id="job-x", fingerprint="f" * 64,
        base_url=segmind_credentials.resolved_base_url(),
    )
    track(str(run_id), segmind_credentials, generation)

    class _Run:
        id = run_id
        parameters: dict = {}

    with caplog.at_level(logging.INFO):
        await cancel_remote_jobs(None, _Run(), None)
    assert "segmind cannot cancel jobs" in caplog.text
    assert "job-x" in caplog.text


def test_segmind_block_declares_no_cancel():
    assert not SegmindCredentials(api_key=SecretStr("k")).provider().can_cancel
    assert RunwayCredentials(api_key=SecretStr("k")).provider().can_cancel
