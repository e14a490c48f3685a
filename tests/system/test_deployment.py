"""The deployments as an operator runs them: a real server, a process work pool, a worker.

Against a ``prefect server start`` of its own (see conftest), this test does what the README
tells an operator to do — create a process work pool, ``prefect block register -m
prefect_runway``, ``prefect-runway blocks create`` (keys from the environment, pointed at the
emulator), create a global concurrency limit for Segmind jobs, ``prefect deploy --all`` from
``deployments/prefect.yaml``, start ``prefect worker start`` — then triggers the storyboard
deployment with three shots (one animated by another provider) and the on-demand
image-to-video deployment, and checks through the Prefect API that both runs completed and
that every output they report exists and matches its sidecar.

Each flow run clones the code from a git repository: a snapshot of this working tree,
committed in a temporary directory (the deployment's ``pull`` step).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from system_helpers import BIN, PrefectServer

from prefect_runway.emulator import Emulator, EmulatorConfig

pytestmark = [pytest.mark.system, pytest.mark.timeout(420)]

REPO = Path(__file__).resolve().parents[2]
POOL = "runway-process"
SEGMIND_KEY = "sys-test-segmind-key-5f1c"
RUNWAY_KEY = "sys-test-runway-secret-9a2e"
RUN_TIMEOUT = 180.0
REF = [{"uri": "https://example.com/hero.png", "tag": "hero"}]
SHOTS = [
    {"name": "harbour", "still_prompt": "a harbour at dawn, @hero on the pier",
     "reference_images": REF, "motion_prompt": "slow pan right", "seed": 11},
    {"name": "lighthouse", "still_prompt": "a lighthouse at dusk, @hero on the path",
     "reference_images": REF, "motion_prompt": "waves roll in", "seed": 12, "ratio": "16:9"},
    {"name": "market", "still_prompt": "a night market, @hero choosing fruit",
     "reference_images": REF, "motion_prompt": "walk forward", "seed": 13,
     "video_credentials": "runway-credentials/emulator"},
]


def snapshot_repository(dest: Path) -> str:
    """This working tree's code, committed in a new git repository; returns its URL."""
    dest.mkdir(parents=True)
    for name in ("prefect_runway", "deployments"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "pyproject.toml", dest / "pyproject.toml")
    git = ["git", "-c", "user.name=system-test", "-c", "user.email=system-test@localhost",
           "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"]):
        subprocess.run([*git, *args], cwd=dest, check=True, capture_output=True, timeout=60)
    return dest.as_uri()


async def wait_final(client: PrefectClient, flow_run_id: UUID, server: PrefectServer) -> object:
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        flow_run = await client.read_flow_run(flow_run_id)
        if flow_run.state is not None and flow_run.state.is_final():
            return flow_run
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name}\n{p.output()[-4000:]}" for p in server.procs)
            raise AssertionError(f"flow run {flow_run_id} is still {flow_run.state} after "
                                 f"{RUN_TIMEOUT}s\n{logs}")
        await asyncio.sleep(1.0)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_stored(path: Path, media_type: str) -> None:
    """The output exists, and its sidecar describes exactly these bytes."""
    assert path.is_file(), path
    sidecar = json.loads(Path(f"{path}.json").read_text())
    assert sidecar["sha256"] == sha256_of(path)
    assert sidecar["size"] == path.stat().st_size
    assert sidecar["media_type"] == media_type


async def test_storyboard_deployment_runs_on_a_worker(prefect_server: PrefectServer, tmp_path: Path):
    server = prefect_server
    prefect = str(BIN / "prefect")
    started = time.monotonic()
    out = tmp_path / "outputs"
    out.mkdir()

    server.run([prefect, "work-pool", "create", POOL, "--type", "process"])
    registered = server.run([prefect, "block", "register", "-m", "prefect_runway"]).stdout
    assert "Successfully registered" in registered

    config = EmulatorConfig(latency=0.5, video_fps=4, runway_concurrency=4,
                            api_keys=frozenset({SEGMIND_KEY, RUNWAY_KEY}))
    with Emulator(config) as emulator:
        created = server.run(
            [str(BIN / "prefect-runway"), "blocks", "create", "--name", "emulator",
             "--base-url", emulator.url],
            SEGMIND_API_KEY=SEGMIND_KEY, RUNWAYML_API_SECRET=RUNWAY_KEY,
        )
        assert "segmind-credentials/emulator" in created.stdout
        assert "runway-credentials/emulator" in created.stdout
        assert SEGMIND_KEY not in created.stdout + created.stderr
        assert RUNWAY_KEY not in created.stdout + created.stderr

        # At most 2 Segmind jobs at once, across every worker and flow run.
        server.run([prefect, "global-concurrency-limit", "create", "segmind-jobs", "--limit", "2"])

        source = tmp_path / "source"
        repository = snapshot_repository(source)
        deployed = server.run(
            [prefect, "--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml"],
            cwd=source, PREFECT_RUNWAY_REPOSITORY=repository, PREFECT_RUNWAY_STORAGE=str(out),
        )
        assert "storyboard/nightly-storyboard" in deployed.stdout
        assert "image-to-video/image-to-video" in deployed.stdout

        worker = server.start(
            "worker", [prefect, "worker", "start", "--pool", POOL, "--type", "process"],
            cwd=tmp_path, PREFECT_WORKER_QUERY_SECONDS="1",
        )

        async with PrefectClient(api=server.api_url) as client:
            nightly = await client.read_deployment_by_name("storyboard/nightly-storyboard")
            assert [s.schedule.cron for s in nightly.schedules] == ["0 2 * * *"]
            assert nightly.work_pool_name == POOL
            assert nightly.parameters["storage"] == str(out)
            assert nightly.pull_steps == [
                {"prefect.deployments.steps.git_clone": {"repository": repository}}
            ]
            on_demand = await client.read_deployment_by_name("image-to-video/image-to-video")
            assert not on_demand.schedules

            storyboard_run = await client.create_flow_run_from_deployment(
                nightly.id,
                parameters={"shots": SHOTS, "credentials": "segmind-credentials/emulator"},
            )
            chain_run = await client.create_flow_run_from_deployment(
                on_demand.id,
                parameters={"still_prompt": "a quiet bay, @hero", "motion_prompt": "drift",
                            "reference_images": REF, "credentials": "segmind-credentials/emulator",
                            "seed": 99},
            )
            storyboard_run = await wait_final(client, storyboard_run.id, server)
            chain_run = await wait_final(client, chain_run.id, server)
            logs = worker.output()
            assert storyboard_run.state.is_completed(), (storyboard_run.state, logs[-6000:])
            assert chain_run.state.is_completed(), (chain_run.state, logs[-6000:])
            assert "git_clone" in logs

            # What the API says the storyboard run did.
            runs = FlowRunFilter(id=FlowRunFilterId(any_=[storyboard_run.id]))
            task_runs = await client.read_task_runs(flow_run_filter=runs)
            submits = [t for t in task_runs if t.name.startswith("submit ")]
            assert len(submits) == 6 and all(t.state.is_completed() for t in submits)
            # Named for what they do: a still and a video per shot, on its provider.
            assert "submit still 'harbour' on segmind" in {t.name for t in submits}
            assert "submit video 'market' on runway" in {t.name for t in submits}
            artifacts = {a.key: a for a in await client.read_artifacts(flow_run_filter=runs) if a.key}
            summary = artifacts["storyboard-summary"].data
            assert "3 of 3 shots completed" in summary
            assert float(artifacts["storyboard-progress"].data) == 100.0

            limit = await client.read_global_concurrency_limit_by_name("segmind-jobs")
            assert limit.active_slots == 0  # every slot was given back

        # Every output the summary links exists and matches its sidecar.
        # (by key: the summary never links file://, which a browser does not open)
        stored = [out / key for key in re.findall(r"`([^`]+\.(?:png|mp4))`", summary)]
        assert len(stored) == 6
        for shot in SHOTS:
            still = out / next(p.name for p in stored if p.name.startswith(f"{shot['name']}-image-"))
            video = out / next(p.name for p in stored if p.name.startswith(f"{shot['name']}-video-"))
            check_stored(still, "image/png")
            check_stored(video, "video/mp4")
        assert len(list(out.glob("*.mp4"))) == 4  # three shots, and the on-demand chain's

        # Each job was submitted once: 4 stills and 3 videos on Segmind, 1 video on Runway.
        stats = emulator.stats()
        assert stats["segmind"]["total_submissions"] == 7
        assert stats["runway"]["total_submissions"] == 1
        assert stats["segmind"]["duplicate_submissions"] == stats["runway"]["duplicate_submissions"] == 0

    # The keys never reached a log.
    for proc in server.procs:
        text = proc.output()
        assert SEGMIND_KEY not in text and RUNWAY_KEY not in text, proc.name
    print(f"system test: {time.monotonic() - started:.1f}s after the server was up")
