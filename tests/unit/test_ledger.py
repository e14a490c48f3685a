"""The submission ledger on a local directory: states, doubts, force, resolve, corruption."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from prefect_runway.cli.ledger import format_ledger
from prefect_runway.errors import (
    InvalidRequest,
    LedgerAmbiguous,
    LedgerNotFound,
    LedgerRecordUnreadable,
    LedgerStorageError,
    SubmissionInDoubt,
    SubmissionUncertain,
)
from prefect_runway.models import Generation
from prefect_runway.providers.wire import api_origin
from prefect_runway.settings import LOCK_DIR_ENV, LOCK_HOLD_ENV, LOCK_REDIS_URL_ENV
from prefect_runway.storage.records import (
    LEDGER_FOLDER,
    LocalLedgerBackend,
    default_ledger_directory,
)
from prefect_runway.tasks.ledger import SubmissionLedger, ledger_for
from prefect_runway.tasks.ledger_records import Intent, IntentMeta, JobRecord
from prefect_runway.tasks.locks import (
    RunwayFileSystemLockManager,
    lock_manager_from_settings,
    submission_cache_policy,
)

SCOPE = "prefect-runway-submit-" + "a" * 40
OTHER = "prefect-runway-submit-" + "b" * 40
FP = "f1" * 32


def meta(fingerprint: str = FP, base_url: str = "https://user:pw@api.segmind.com/v1?k=1") -> IntentMeta:
    return IntentMeta(fingerprint=fingerprint, provider="segmind", base_url=base_url,
                      model="gen4_image", flow_run_id="flow-run-1", task_run_id="task-run-1")


def generation(job_id: str = "job-123", fingerprint: str = FP) -> Generation:
    return Generation(provider="segmind", model="gen4_image", kind="image", job_id=job_id,
                      fingerprint=fingerprint, base_url="https://api.segmind.com/v1",
                      request={"prompt": "a lighthouse"})


@pytest.fixture()
def ledger(tmp_path: Path) -> SubmissionLedger:
    return SubmissionLedger(LocalLedgerBackend(tmp_path / "ledger"))


async def test_first_begin_writes_a_durable_intent(ledger: SubmissionLedger, tmp_path: Path) -> None:
    intent = await ledger.begin(SCOPE, meta())
    assert isinstance(intent, Intent)
    path = tmp_path / "ledger" / f"{SCOPE}.json"
    raw = json.loads(path.read_bytes())
    assert raw["state"] == "intent"
    assert raw["fingerprint"] == FP
    assert raw["api_origin"] == "https://api.segmind.com"  # origin only: no user info, path, query
    assert raw["flow_run_id"] == "flow-run-1" and raw["task_run_id"] == "task-run-1"
    assert raw["pid"] == os.getpid() and raw["attempt_id"] == intent.attempt_id
    assert raw["created_at"].endswith("Z") or raw["created_at"].endswith("+00:00")
    assert "pw" not in path.read_text()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left


async def test_intent_without_job_is_a_doubt_naming_fingerprint_time_run_and_fix(
    ledger: SubmissionLedger,
) -> None:
    intent = await ledger.begin(SCOPE, meta())
    with pytest.raises(SubmissionInDoubt) as caught:
        await ledger.begin(SCOPE, meta())
    err = caught.value
    assert isinstance(err, SubmissionUncertain) and not err.retryable
    assert err.fingerprint == FP and err.intent.attempt_id == intent.attempt_id
    text = str(err)
    assert FP in text and "flow-run-1" in text and intent.created_at.isoformat() in text
    assert "force=True" in text and f"prefect-runway ledger resolve {FP[:16]}" in text


async def test_job_is_reused_and_round_trips_the_generation(ledger: SubmissionLedger) -> None:
    intent = await ledger.begin(SCOPE, meta())
    made = generation()
    job = await ledger.record_job(intent, made)
    assert isinstance(job, JobRecord) and job.attempt_id == intent.attempt_id
    again = await ledger.begin(SCOPE, meta())
    assert isinstance(again, JobRecord)
    assert again.job_id == "job-123"
    assert again.to_generation() == made


async def test_a_job_older_than_job_max_age_is_not_reused(ledger: SubmissionLedger) -> None:
    intent = await ledger.begin(SCOPE, meta())
    job = await ledger.record_job(intent, generation())
    assert isinstance(await ledger.begin(SCOPE, meta(), job_max_age=3600), JobRecord)
    await asyncio.sleep(0.05)
    fresh = await ledger.begin(SCOPE, meta(), job_max_age=0.01)  # the provider forgot it
    assert isinstance(fresh, Intent) and fresh.supersedes == job.attempt_id


async def test_force_replaces_a_doubt_and_a_job(ledger: SubmissionLedger) -> None:
    first = await ledger.begin(SCOPE, meta())
    forced = await ledger.begin(SCOPE, meta(), force=True)
    assert isinstance(forced, Intent) and forced.supersedes == first.attempt_id
    await ledger.record_job(forced, generation("job-1"))
    resent = await ledger.begin(SCOPE, meta(), force=True)
    assert isinstance(resent, Intent) and resent.supersedes == forced.attempt_id
    record = await ledger.get(SCOPE)
    assert isinstance(record, Intent)


async def test_clear_lets_the_next_begin_write_a_new_intent(ledger: SubmissionLedger) -> None:
    intent = await ledger.begin(SCOPE, meta())
    cleared = await ledger.clear(intent, "http 422: provably no job", by="tests")
    assert cleared.state == "cleared" and cleared.cleared_by == "tests"
    assert cleared.cleared_reason == "http 422: provably no job" and cleared.cleared_at
    nxt = await ledger.begin(SCOPE, meta())
    assert isinstance(nxt, Intent) and nxt.supersedes == intent.attempt_id
    with pytest.raises(LedgerNotFound):
        await ledger.clear(OTHER, "nothing there")


async def test_list_and_resolve_by_fingerprint_prefix(ledger: SubmissionLedger) -> None:
    await ledger.begin(SCOPE, meta())
    other = await ledger.begin(OTHER, meta("f1" + "9" * 62))
    await ledger.record_job(other, generation("job-9", other.fingerprint))
    assert {r.scope for r in await ledger.list()} == {SCOPE, OTHER}
    doubts = await ledger.list(doubts_only=True)
    assert [r.scope for r in doubts] == [SCOPE]

    await ledger.begin("prefect-runway-submit-" + "c" * 40, meta("f1f1" + "0" * 60))
    with pytest.raises(LedgerAmbiguous) as ambiguous:  # two doubts start with f1f1
        await ledger.resolve("f1f1")
    assert len(ambiguous.value.matches) == 2
    with pytest.raises(LedgerNotFound):
        await ledger.resolve("deadbeef")
    with pytest.raises(InvalidRequest):
        await ledger.resolve("f1")
    cleared = await ledger.resolve(FP[:20].upper())
    assert [c.scope for c in cleared] == [SCOPE]
    assert isinstance(await ledger.begin(SCOPE, meta()), Intent)


async def test_one_fingerprint_in_two_scopes_resolves_both(ledger: SubmissionLedger) -> None:
    await ledger.begin(SCOPE, meta())
    await ledger.begin(OTHER, meta(base_url="http://127.0.0.1:9999"))
    cleared = await ledger.resolve(FP[:12])
    assert sorted(c.scope for c in cleared) == [SCOPE, OTHER]
    assert await ledger.list(doubts_only=True) == []


@pytest.mark.parametrize("content", [
    b"", b"{", b"\x00\xff garbage", b"[]", b'{"state": "intent"}',
    b'{"state": "weird", "version": 1}',
])
async def test_an_unreadable_record_is_never_taken_as_absent(
    ledger: SubmissionLedger, tmp_path: Path, content: bytes
) -> None:
    folder = tmp_path / "ledger"
    folder.mkdir()
    (folder / f"{SCOPE}.json").write_bytes(content)
    with pytest.raises(LedgerRecordUnreadable) as caught:
        await ledger.begin(SCOPE, meta())
    assert isinstance(caught.value, SubmissionUncertain)
    assert (folder / f"{SCOPE}.json").read_bytes() == content  # nothing overwritten
    doubts = await ledger.list(doubts_only=True)
    assert len(doubts) == 1 and isinstance(doubts[0], LedgerRecordUnreadable)
    assert "unreadable" in format_ledger(doubts)
    await ledger.resolve(SCOPE[:30])
    assert isinstance(await ledger.begin(SCOPE, meta()), Intent)


async def test_a_record_of_another_scope_or_a_jobless_job_is_unreadable(
    ledger: SubmissionLedger, tmp_path: Path
) -> None:
    intent = await ledger.begin(SCOPE, meta())
    folder = tmp_path / "ledger"
    (folder / f"{OTHER}.json").write_bytes((folder / f"{SCOPE}.json").read_bytes())
    with pytest.raises(LedgerRecordUnreadable):
        await ledger.get(OTHER)
    job = json.loads(intent.to_json())
    job["state"] = "job"
    (folder / f"{SCOPE}.json").write_text(json.dumps(job))
    with pytest.raises(LedgerRecordUnreadable):
        await ledger.begin(SCOPE, meta())


async def test_an_unreadable_file_is_a_doubt_and_a_file_as_directory_a_storage_error(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "ledger"
    (folder / f"{SCOPE}.json").mkdir(parents=True)  # a directory where the record should be
    with pytest.raises(LedgerRecordUnreadable):
        await SubmissionLedger(LocalLedgerBackend(folder)).begin(SCOPE, meta())
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(LedgerStorageError):
        await SubmissionLedger(LocalLedgerBackend(blocker)).begin(SCOPE, meta())
    with pytest.raises(LedgerStorageError):
        await SubmissionLedger(LocalLedgerBackend(blocker / "sub")).begin(SCOPE, meta())


async def test_concurrent_begins_create_exactly_one_intent(ledger: SubmissionLedger) -> None:
    results = await asyncio.gather(
        *(ledger.begin(SCOPE, meta()) for _ in range(8)), return_exceptions=True
    )
    intents = [r for r in results if isinstance(r, Intent)]
    doubts = [r for r in results if isinstance(r, SubmissionInDoubt)]
    assert len(intents) == 1 and len(doubts) == 7, results


async def test_bad_scopes_and_urls_are_refused_before_writing(ledger: SubmissionLedger, tmp_path: Path) -> None:
    for scope in ("../escape", "", "a/b", ".hidden", "x" * 300):
        with pytest.raises(InvalidRequest):
            await ledger.begin(scope, meta())
    with pytest.raises(InvalidRequest):
        await ledger.begin(SCOPE, meta(base_url="not a url"))
    assert not (tmp_path / "ledger").exists()


def test_api_origin_keeps_scheme_host_port_only() -> None:
    assert api_origin("http://127.0.0.1:8080/v1/x?a=b") == "http://127.0.0.1:8080"
    assert api_origin("https://key@api.dev.runwayml.com") == "https://api.dev.runwayml.com"


async def test_format_ledger_table(ledger: SubmissionLedger) -> None:
    assert format_ledger([]) == "No submissions recorded."
    await ledger.begin(SCOPE, meta())
    done = await ledger.begin(OTHER, meta("ab" * 32))
    await ledger.record_job(done, generation("job-77", "ab" * 32))
    table = format_ledger(await ledger.list())
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["FINGERPRINT", "STATE", "PROVIDER"]
    by_fp = {line.split()[0]: line.split() for line in lines[1:]}
    assert by_fp[FP[:16]][1:5] == ["doubt", "segmind", "gen4_image", "-"]
    assert by_fp["ab" * 8][1:5] == ["job", "segmind", "gen4_image", "job-77"]
    assert by_fp[FP[:16]][-1] == "flow-run-1"


def test_ledger_for_places_the_ledger_with_the_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH, temporary_settings

    with temporary_settings({PREFECT_RESULTS_LOCAL_STORAGE_PATH: tmp_path / "results"}):
        assert default_ledger_directory() == tmp_path / "results" / LEDGER_FOLDER
        assert ledger_for(None).backend.directory == tmp_path / "results" / LEDGER_FOLDER
    assert ledger_for(str(tmp_path / "out")).backend.directory == tmp_path / "out" / LEDGER_FOLDER
    from prefect_runway.storage import LocalStorage

    local = LocalStorage(tmp_path / "out2")
    assert ledger_for(local).backend.directory == Path(local.root) / LEDGER_FOLDER
    with pytest.raises(InvalidRequest):
        ledger_for(object())


def test_lock_manager_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LOCK_REDIS_URL_ENV, raising=False)
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path / "locks"))
    monkeypatch.setenv(LOCK_HOLD_ENV, "30")
    manager = lock_manager_from_settings()
    assert isinstance(manager, RunwayFileSystemLockManager)
    assert manager.lock_files_directory == (tmp_path / "locks").resolve()
    assert manager.hold_seconds == 30
    policy = submission_cache_policy(lambda ctx, params: "k", lock_manager=manager)
    assert policy.isolation_level == "SERIALIZABLE" or policy.isolation_level.value == "SERIALIZABLE"
    assert policy.lock_manager is manager
    monkeypatch.setenv(LOCK_HOLD_ENV, "soon")
    with pytest.raises(InvalidRequest):
        lock_manager_from_settings()
    monkeypatch.setenv(LOCK_HOLD_ENV, "30")
    monkeypatch.setenv(LOCK_REDIS_URL_ENV, "http://not-redis")
    with pytest.raises(InvalidRequest):
        lock_manager_from_settings()
    pytest.importorskip("prefect_redis")
    monkeypatch.setenv(LOCK_REDIS_URL_ENV, "redis://127.0.0.1:1/0")
    from prefect_redis.locking import RedisLockManager

    assert isinstance(lock_manager_from_settings(), RedisLockManager)


def test_file_lock_of_a_dead_holder_is_free_and_locks_expire(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    manager = RunwayFileSystemLockManager(tmp_path, hold_seconds=60)
    assert manager.acquire_lock("k", f"{socket.gethostname()}:{dead_pid}:1:main")
    other = RunwayFileSystemLockManager(tmp_path, hold_seconds=60)
    assert not other.is_locked("k")  # its holder is gone
    assert other.acquire_lock("k", "me", acquire_timeout=1)
    info = json.loads((tmp_path / "k.lock").read_bytes())
    assert info["holder"] == "me" and info["expiration"] is not None  # held at most 60 s
    (tmp_path / "k2.lock").write_bytes(b"")  # created, not written yet by its holder
    assert other.is_locked("k2")
    assert not other.acquire_lock("k2", "me", acquire_timeout=0.3)


async def test_async_file_lock_is_exclusive_renewable_and_waits_without_worker_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import anyio.to_thread

    async def no_thread(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a lock took a trip to a worker thread")

    monkeypatch.setattr(anyio.to_thread, "run_sync", no_thread)
    first = RunwayFileSystemLockManager(tmp_path / "locks", hold_seconds=60)
    second = RunwayFileSystemLockManager(tmp_path / "locks", hold_seconds=60)  # another process

    assert await first.aacquire_lock("k", "one")
    info = json.loads((tmp_path / "locks" / "k.lock").read_bytes())
    assert info["holder"] == "one" and info["expiration"] is not None  # held at most 60 s
    assert (tmp_path / "locks" / "k.lock.owner").read_text().startswith("one\n")
    assert await first.aacquire_lock("k", "one")  # its holder may take it again
    assert not await second.aacquire_lock("k", "two", acquire_timeout=0.3)

    # A waiter gets the lock once its holder releases it (Prefect releases synchronously).
    waiter = asyncio.create_task(second.aacquire_lock("k", "two", acquire_timeout=10))
    await asyncio.sleep(0.3)
    assert not waiter.done()
    first.release_lock("k", "one")
    assert await asyncio.wait_for(waiter, 5)
    assert json.loads((tmp_path / "locks" / "k.lock").read_bytes())["holder"] == "two"
    assert (tmp_path / "locks" / "k.lock.owner").read_text().startswith("two\n")
    second.release_lock("k", "two")
    assert not list((tmp_path / "locks").iterdir())  # no lock or owner file left behind

    # Many racing for a free key: exactly one wins.
    managers = [RunwayFileSystemLockManager(tmp_path / "locks", hold_seconds=60) for _ in range(8)]
    won = await asyncio.gather(*(m.aacquire_lock("race", f"h{i}", acquire_timeout=0.3)
                                 for i, m in enumerate(managers)))
    assert sum(won) == 1


async def test_file_lock_reads_its_file_once_per_check_and_keeps_prefects_release_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.locking.filesystem import FileSystemLockManager

    reads: list[str] = []
    prefects = FileSystemLockManager._get_lock_info

    def counted(self: Any, key: str, use_cache: bool = True) -> Any:
        if not (use_cache and key in self._locks):  # a read of the lock file
            reads.append(key)
        return prefects(self, key, use_cache)

    monkeypatch.setattr(FileSystemLockManager, "_get_lock_info", counted)
    holder = RunwayFileSystemLockManager(tmp_path, hold_seconds=60)
    other = RunwayFileSystemLockManager(tmp_path, hold_seconds=60)  # another process
    assert await holder.aacquire_lock("k", "one")

    reads.clear()
    assert holder.is_lock_holder("k", "one") and not other.is_lock_holder("k", "two")
    assert len(reads) == 2  # one read each; Prefect's is_lock_holder reads it twice

    # Another holder's release is refused as Prefect refuses it, and leaves the lock whole.
    with pytest.raises(ValueError, match="No lock held by two for transaction with key k"):
        other.release_lock("k", "two")
    assert (tmp_path / "k.lock").exists() and (tmp_path / "k.lock.owner").exists()
    assert holder.is_lock_holder("k", "one")

    reads.clear()
    holder.release_lock("k", "one")
    assert len(reads) == 1  # was five: our holder check, then Prefect's is_locked and holder check
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="No lock for transaction with key k"):
        holder.release_lock("k", "one")

    # An expired lock is no lock: its file is removed at the first look, and it cannot be
    # released by its old holder.
    assert await holder.aacquire_lock("e", "one", hold_timeout=0.05)
    await asyncio.sleep(0.2)
    assert not other.is_locked("e") and not (tmp_path / "e.lock").exists()
    with pytest.raises(ValueError, match="No lock for transaction with key e"):
        holder.release_lock("e", "one")


# ---- locks that claim too much -------------------------------------------------------------


def _plant(path: Path, expiration: str | None, holder: str = "elsewhere:1:planted") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(json.dumps({"holder": holder, "expiration": expiration}).encode())
    return path


@pytest.mark.timeout(60)
@pytest.mark.parametrize("expiration", ["2999-01-01 00:00:00+00:00", None])
async def test_a_lock_that_claims_to_last_forever_is_held_at_most_the_hold_time(
    tmp_path: Path, expiration: str | None,
) -> None:
    """A lock file with a far-future expiry (or none), of a holder on another host: it
    counts as held for ``hold_seconds`` after it was written, then it is free."""
    lock = _plant(tmp_path / "locks" / "k.lock", expiration)
    manager = RunwayFileSystemLockManager(tmp_path / "locks", hold_seconds=1)
    assert manager.is_locked("k")
    assert await asyncio.wait_for(manager.aacquire_lock("k", "me"), 10)
    assert json.loads(lock.read_bytes())["holder"] == "me"
    manager.release_lock("k", "me")
    _plant(tmp_path / "locks" / "s.lock", expiration)
    assert RunwayFileSystemLockManager(tmp_path / "locks", hold_seconds=1).acquire_lock("s", "me")


async def test_a_lock_written_in_the_future_counts_from_when_it_was_first_seen(
    tmp_path: Path,
) -> None:
    import time

    lock = _plant(tmp_path / "k.lock", "2999-01-01 00:00:00+00:00")
    later = time.time() + 10 * 365 * 86400
    os.utime(lock, (later, later))
    manager = RunwayFileSystemLockManager(tmp_path, hold_seconds=1)
    assert manager.is_locked("k")
    assert await asyncio.wait_for(manager.aacquire_lock("k", "me"), 10)


async def test_an_acquire_without_a_timeout_has_a_deadline_and_a_typed_error(
    tmp_path: Path,
) -> None:
    """Prefect's transactions acquire without a timeout and go on unlocked when told False:
    past the deadline the acquire raises instead. With a timeout, False as before."""
    from prefect_runway.errors import LockTimeout

    holder = RunwayFileSystemLockManager(tmp_path, hold_seconds=60)
    assert await holder.aacquire_lock("k", "one")
    waiter = RunwayFileSystemLockManager(tmp_path, hold_seconds=60, wait_seconds=0.3)
    assert waiter.wait_seconds == 0.3
    assert RunwayFileSystemLockManager(tmp_path, hold_seconds=60).wait_seconds == 120
    with pytest.raises(LockTimeout) as info:
        await asyncio.wait_for(waiter.aacquire_lock("k", "two"), 10)
    assert info.value.key == "k" and info.value.waited >= 0.3
    with pytest.raises(LockTimeout):
        waiter.acquire_lock("k", "two")
    assert not await waiter.aacquire_lock("k", "two", acquire_timeout=0.1)
    assert holder.is_lock_holder("k", "one")


def test_each_backend_says_what_ledger_commands_take_as_storage(tmp_path: Path) -> None:
    from prefect_runway.storage.records import S3LedgerBackend

    assert ledger_for(str(tmp_path / "out")).backend.storage == str((tmp_path / "out").resolve())
    assert S3LedgerBackend(None, "media", f"renders/{LEDGER_FOLDER}").storage == "s3://media/renders"
    assert S3LedgerBackend(None, "media", LEDGER_FOLDER).storage == "s3://media"


async def test_an_intent_keeps_the_kind_and_summary_a_job_adopted_for_it_carries(
    ledger: SubmissionLedger,
) -> None:
    from prefect_runway.tasks.ledger_records import scope_for

    base_url = "https://api.segmind.com/v1"
    scope = scope_for(FP, base_url)
    intent = await ledger.begin(scope, IntentMeta(
        fingerprint=FP, provider="segmind", base_url=base_url, model="gen4_image", kind="image",
        request={"prompt": "a lighthouse"}))
    assert (intent.kind, intent.request) == ("image", {"prompt": "a lighthouse"})
    (doubt,) = await ledger.doubts(FP[:8])
    assert doubt.scope == scope
    with pytest.raises(InvalidRequest) as empty:
        await ledger.adopt(FP[:8], "  ", credentials=None)
    assert empty.value.field == "job"
