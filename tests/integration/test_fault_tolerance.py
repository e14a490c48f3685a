"""Never pay twice, never lose an output: expiry, doubt, deadlines, retries and rate limits,
through the flows, against the emulator's injected faults."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import httpx
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from pydantic import SecretStr

from prefect_runway import (
    GenerationTimedOut,
    ImageRequest,
    InvalidRequest,
    RunwayCredentials,
    SegmindCredentials,
    SubmissionUncertain,
)
from prefect_runway.emulator import Emulator, EmulatorConfig
from prefect_runway.flows import generate_image, run_generation

REF = [{"uri": "https://example.com/ref.png", "tag": "hero"}]


@pytest.fixture()
def emu():
    with Emulator(EmulatorConfig(latency=0.3, video_fps=4, runway_concurrency=20)) as emulator:
        yield emulator


def _segmind(emu: Emulator, **extra) -> SegmindCredentials:
    return SegmindCredentials(api_key=SecretStr("ft-key"), base_url=emu.url, poll_interval_seconds=0.1,
                              max_poll_interval_seconds=0.3, **extra)


async def test_expired_job_is_resubmitted_exactly_once(emu, tmp_path, caplog):
    # The provider has forgotten the job by the first poll (Segmind's 404 after its hour).
    emu.set_faults(scripted=[{"route": "segmind.status", "nth": 1, "fault": "404"}])
    with caplog.at_level(logging.WARNING):
        out = await generate_image(prompt="expires @hero", reference_images=REF,
                                   credentials=_segmind(emu), storage=str(tmp_path))
    stats = emu.stats()["segmind"]
    assert stats["billable"] == {next(iter(stats["billable"])): 2}  # the same request, twice
    assert stats["total_submissions"] == 2
    assert "resubmitting it once" in caplog.text
    assert out.size > 0


async def test_expired_twice_gives_up_after_one_resubmission(emu, tmp_path):
    from prefect_runway import GenerationExpired

    emu.set_faults(scripted=[{"route": "segmind.status", "nth": 1, "times": 50, "fault": "404"}])
    with pytest.raises(GenerationExpired):
        await generate_image(prompt="always expired @hero", reference_images=REF,
                             credentials=_segmind(emu), storage=str(tmp_path))
    assert emu.stats()["segmind"]["total_submissions"] == 2


async def test_uncertain_submit_is_never_resent_by_any_retry(emu, tmp_path):
    # The provider takes the job, then the connection drops before the answer.
    emu.set_faults(scripted=[{"route": "segmind.submit", "nth": 1, "fault": "reset_after"}])
    with pytest.raises(SubmissionUncertain) as info:
        await generate_image(prompt="in doubt @hero", reference_images=REF,
                             credentials=_segmind(emu), storage=str(tmp_path))
    assert len(info.value.fingerprint) == 64
    assert emu.stats()["segmind"]["total_submissions"] == 1


async def test_timed_out_wait_carries_the_job_and_a_rerun_resumes_it(tmp_path):
    with Emulator(EmulatorConfig(latency=3.0, video_fps=4)) as emu:
        creds = _segmind(emu)
        kwargs = dict(prompt="slow job @hero", reference_images=REF, credentials=creds, storage=str(tmp_path))
        with pytest.raises(GenerationTimedOut) as info:
            await generate_image(timeout=0.5, **kwargs)
        assert info.value.job_id
        out = await generate_image(timeout=30, **kwargs)
        assert out.job_id == info.value.job_id
        assert emu.stats()["segmind"]["total_submissions"] == 1


async def test_task_retries_outlast_a_long_outage(emu, tmp_path):
    # Eight 503s in a row on status: more than one client call's retry budget (6 attempts).
    emu.set_faults(scripted=[{"route": "segmind.status", "nth": 1, "times": 8, "fault": "503"}],
                   retry_after=0.05)
    out = await generate_image(prompt="outage @hero", reference_images=REF,
                               credentials=_segmind(emu), storage=str(tmp_path))
    stats = emu.stats()["segmind"]
    assert stats["faults"].get("503", 0) == 8
    assert stats["total_submissions"] == 1
    assert out.size > 0


@pytest.fixture()
def emulator_process():
    """The emulator in its own process, as a real provider is: its clock and event loop do not
    stall with this process's (the in-process emulator shares the GIL with the client)."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect_runway.cli", "emulator", "--port", str(port),
         "--latency", "0.3", "--fps", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/_emulator/health", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and proc.poll() is None, (
                    f"the emulator process ({' '.join(proc.args)}) did not start in 30 s")
                time.sleep(0.1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.timeout(240)
async def test_shared_limiter_keeps_many_jobs_under_the_providers_rate_limit(emulator_process, tmp_path):
    """30 jobs at once with a 5 req/s budget shared by every task: the provider, limiting each
    key to 6 req/s, never has to refuse one."""
    httpx.post(f"{emulator_process}/_emulator/config", json={"runway_concurrency": 50}).raise_for_status()
    httpx.post(f"{emulator_process}/_emulator/faults",
               json={"rate_limit_per_key": 6, "rate_limit_burst": 6}).raise_for_status()
    creds = RunwayCredentials(api_key=SecretStr(f"rl-{uuid.uuid4().hex}"), base_url=emulator_process,
                              poll_interval_seconds=0.5, max_poll_interval_seconds=2,
                              max_requests_per_second=5)

    @flow
    async def many():
        return await asyncio.gather(*(
            run_generation(ImageRequest(prompt=f"limited {i}", ratio="720:720"), creds,
                           storage=str(tmp_path))
            for i in range(30)
        ))

    results = await asyncio.wait_for(many(), 180)
    assert len(results) == 30
    stats = httpx.get(f"{emulator_process}/_emulator/stats").json()["runway"]
    assert stats["errors"].get("429", 0) == 0, stats["errors"]
    assert stats["total_submissions"] == 30


async def test_without_a_budget_429s_are_honoured_and_retried(emu, tmp_path):
    emu.set_faults(rate_limit_per_key=4, rate_limit_burst=4, retry_after=0.3)
    creds = RunwayCredentials(api_key=SecretStr(f"rl-{uuid.uuid4().hex}"), base_url=emu.url,
                              poll_interval_seconds=0.2, max_requests_per_second=None)

    @flow
    async def burst():
        return await asyncio.gather(*(
            run_generation(ImageRequest(prompt=f"unlimited {i}", ratio="720:720"), creds,
                           storage=str(tmp_path))
            for i in range(12)
        ))

    assert len(await asyncio.wait_for(burst(), 180)) == 12
    stats = emu.stats()["runway"]
    assert stats["errors"].get("429", 0) > 0
    assert stats["duplicate_submissions"] == 0


async def test_a_prefect_global_rate_limit_is_taken_for_every_request(emu, tmp_path):
    name = f"runway-api-{uuid.uuid4().hex[:8]}"
    async with get_client() as client:
        await client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=name, limit=5, slot_decay_per_second=5.0)
        )
    creds = RunwayCredentials(api_key=SecretStr("gcl-key"), base_url=emu.url, poll_interval_seconds=0.2,
                              global_rate_limit=name)
    out = await generate_image(prompt="globally limited", credentials=creds, storage=str(tmp_path))
    assert out.size > 0
    async with get_client() as client:
        limit = await client.read_global_concurrency_limit_by_name(name)
    assert limit.slot_decay_per_second == 5.0


async def test_a_misspelled_global_rate_limit_is_a_typed_error_before_anything_is_sent(emu, tmp_path):
    creds = RunwayCredentials(api_key=SecretStr("gcl-typo-key"), base_url=emu.url,
                              poll_interval_seconds=0.2,
                              global_rate_limit=f"no-such-limit-{uuid.uuid4().hex[:8]}")
    before = emu.stats()["runway"]["total_submissions"]
    with pytest.raises(InvalidRequest) as caught:
        await generate_image(prompt="a typo in the limit's name", credentials=creds,
                             storage=str(tmp_path))
    assert caught.value.field == "global_rate_limit"
    assert "no-such-limit-" in str(caught.value)
    assert emu.stats()["runway"]["total_submissions"] == before
