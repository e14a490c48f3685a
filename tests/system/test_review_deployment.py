"""The review gate in a deployment: the run suspends (no worker held), a decision resumes it.

Against a ``prefect server start`` of its own (see conftest), with a process work pool and a
worker, the on-demand ``image-to-video`` deployment runs one chain and the storyboard
deployment one shot (with a budget), both with ``review=True``. In a
deployment ``review_mode="auto"`` suspends: the flow-run process exits, the worker keeps no
process for it, and the run stays Suspended. ``resume_flow_run(flow_run_id, run_input=...)``
reschedules it; the worker runs the flow again from the start, which takes the still made
before the wait from the run's saved input (nothing resubmitted: the emulator's counters)
and animates it.

Lean on purpose (two runs, one still and one video each): the machine running it is small.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.flow_runs import resume_flow_run
from prefect.input.actions import aread_flow_run_input
from prefect.settings import PREFECT_API_URL, temporary_settings
from processes import command_line
from system_helpers import BIN, PrefectServer, descendants
from test_deployment import POOL, REF, RUN_TIMEOUT, check_stored, snapshot_repository, wait_final

from prefect_runway.emulator import Emulator, EmulatorConfig
from prefect_runway.flows.review import STILLS_INPUT_KEY

pytestmark = [pytest.mark.system, pytest.mark.timeout(420)]

SEGMIND_KEY = "sys-review-segmind-key-7d3a"


def flow_run_processes(worker_pid: int) -> list[str]:
    """The command lines of the worker's descendants that run a flow (``python -m
    prefect.engine``, what Prefect's process worker starts per flow run)."""
    return [cmdline for cmdline in map(command_line, descendants(worker_pid))
            if "prefect.engine" in cmdline]


async def wait_until(predicate, what: str, server: PrefectServer, timeout: float = RUN_TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name}\n{p.output()[-4000:]}" for p in server.procs)
            raise AssertionError(f"{what} not after {timeout}s\n{logs}")
        await asyncio.sleep(0.5)


async def test_review_in_a_deployment_suspends_and_resumes_without_resubmitting(
    prefect_server: PrefectServer, tmp_path: Path
):
    server = prefect_server
    prefect = str(BIN / "prefect")
    out = tmp_path / "outputs"
    out.mkdir()
    server.run([prefect, "work-pool", "create", POOL, "--type", "process"])
    server.run([prefect, "block", "register", "-m", "prefect_runway"])

    config = EmulatorConfig(latency=0.3, video_fps=4, api_keys=frozenset({SEGMIND_KEY}))
    with Emulator(config) as emulator:
        server.run([str(BIN / "prefect-runway"), "blocks", "create", "--name", "emulator",
                    "--base-url", emulator.url], SEGMIND_API_KEY=SEGMIND_KEY)
        source = tmp_path / "source"
        repository = snapshot_repository(source)
        server.run(
            [prefect, "--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml"],
            cwd=source, PREFECT_RUNWAY_REPOSITORY=repository, PREFECT_RUNWAY_STORAGE=str(out),
        )
        worker = server.start(
            "worker", [prefect, "worker", "start", "--pool", POOL, "--type", "process"],
            cwd=tmp_path, PREFECT_WORKER_QUERY_SECONDS="1",
        )

        async with PrefectClient(api=server.api_url) as client:
            # One chain (image_to_video) and a one-shot storyboard with a budget, both
            # reviewed; auto mode suspends both (they come from deployments).
            chain = await client.read_deployment_by_name("image-to-video/image-to-video")
            board = await client.read_deployment_by_name("storyboard/nightly-storyboard")
            runs = {
                "bay": await client.create_flow_run_from_deployment(chain.id, parameters={
                    "still_prompt": "a quiet bay, @hero", "motion_prompt": "drift",
                    "reference_images": REF, "credentials": "segmind-credentials/emulator",
                    "seed": 41, "name": "bay", "review": True, "review_timeout": 300}),
                "harbour": await client.create_flow_run_from_deployment(board.id, parameters={
                    "shots": [{"name": "harbour", "still_prompt": "a harbour, @hero",
                               "reference_images": REF, "motion_prompt": "pan", "seed": 42}],
                    "credentials": "segmind-credentials/emulator", "budget": "USD 5.00",
                    "review": True, "review_timeout": 300}),
            }

            seen: list[str] = []  # flow-run processes seen while they ran: the check sees them

            async def suspended():
                seen.extend(flow_run_processes(worker.popen.pid))
                found = []
                for run in runs.values():
                    flow_run = await client.read_flow_run(run.id)
                    if flow_run.state and flow_run.state.is_final():
                        raise AssertionError(f"ended before its review: {flow_run.state}\n"
                                             f"{worker.output()[-6000:]}")
                    if flow_run.state and flow_run.state.is_paused():
                        found.append(flow_run)
                return found if len(found) == len(runs) else None

            for flow_run in await wait_until(suspended, "both runs suspended", server):
                assert flow_run.state.name == "Suspended"
                assert flow_run.state.state_details.pause_reschedule  # suspended, not paused

            # The flow-run processes have exited: the worker holds nothing while people decide.
            async def no_process():
                return not flow_run_processes(worker.popen.pid)

            await wait_until(no_process, "the flow-run processes to exit", server, timeout=60)
            assert seen, "no flow-run process was ever seen under the worker"
            assert worker.popen.poll() is None  # the worker itself is still serving
            assert emulator.stats()["segmind"]["total_submissions"] == 2  # the two stills only
            with temporary_settings({PREFECT_API_URL: server.api_url}):
                for run in runs.values():
                    assert await aread_flow_run_input(STILLS_INPUT_KEY, flow_run_id=run.id)

                # A person approves, from code (what the UI's Resume form sends).
                for name, run in runs.items():
                    await asyncio.to_thread(
                        resume_flow_run, run.id,
                        run_input={"shots": [{"shot": name, "decision": "approve"}]},
                    )
            for run in runs.values():
                flow_run = await wait_final(client, run.id, server)
                assert flow_run.state.is_completed(), (flow_run.state, worker.output()[-6000:])
                # The second run took the still from the run's saved input. A run's logs reach
                # the server in batches, the last at its process's exit, which may come after
                # the final state: wait for them (bounded) rather than read once.
                wanted = ("Suspending for review", "Resumed review: 1 still(s)")
                messages: list[str] = []

                async def logged(run_id=run.id, messages=messages, wanted=wanted):
                    messages[:] = [log.message for log in await client.read_logs(
                        log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))]
                    return all(any(m.startswith(w) for m in messages) for w in wanted)

                try:
                    await wait_until(logged, "the run's review logs", server, timeout=60)
                except AssertionError as exc:
                    raise AssertionError(f"{messages}") from exc

        videos = list(out.glob("*.mp4"))
        assert len(videos) == 2
        for video in videos:
            check_stored(video, "video/mp4")
        # Each still was submitted once, before the wait; after the resume only the videos.
        stats = emulator.stats()["segmind"]
        assert stats["total_submissions"] == 4
        assert stats["duplicate_submissions"] == 0
