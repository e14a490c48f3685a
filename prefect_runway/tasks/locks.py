"""Locks around a paid submit, through Prefect's own transaction machinery.

The submit task runs in a Prefect transaction with ``IsolationLevel.SERIALIZABLE`` keyed on
the submission scope: of two runs of the same request at the same instant, one takes the
lock and submits; the other waits on the lock, then finds the committed result record and
reuses the job. Which lock manager holds the locks:

* one machine (the default): :class:`RunwayFileSystemLockManager`, lock files under
  ``PREFECT_RUNWAY_LOCK_DIR`` or ``<PREFECT_RESULTS_LOCAL_STORAGE_PATH>/prefect-runway-locks``;
* several machines: prefect-redis's ``RedisLockManager`` (``pip install prefect-redis``),
  chosen by ``PREFECT_RUNWAY_LOCK_REDIS_URL=redis://host:6379/0`` (or ``rediss://``,
  ``redis+sentinel://``).

Both hold a lock at most ``PREFECT_RUNWAY_LOCK_HOLD_SECONDS`` (default 900 s): Prefect asks
for locks without a hold timeout, so a worker killed while holding one would otherwise
block that request forever. A lock that claims to last longer (a far-future expiry, none at
all: written by hand or by someone else) counts as held only that long. A submit waits for
a lock at most twice the hold time, then raises :class:`~prefect_runway.errors.LockTimeout`.
The file-system manager also frees at once a lock whose holder process, on this host, is
gone.

Example:
    ```python
    from prefect import task
    from prefect_runway.locks import submission_cache_policy

    @task(cache_policy=submission_cache_policy(my_cache_key_fn), persist_result=True)
    async def submit(...): ...
    ```
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pydantic_core
from prefect.cache_policies import CacheKeyFnPolicy, CachePolicy
from prefect.locking.filesystem import FileSystemLockManager
from prefect.locking.protocol import LockManager
from prefect.transactions import IsolationLevel
from prefect.types._datetime import now

from prefect_runway.errors import InvalidRequest, LockTimeout
from prefect_runway.settings import LOCK_HOLD_ENV, LOCK_REDIS_URL_ENV, get_settings
from prefect_runway.storage.records import prefect_results_directory

__all__ = [
    "RunwayFileSystemLockManager",
    "default_lock_directory",
    "lock_hold_seconds",
    "lock_manager_from_settings",
    "lock_wait_seconds",
    "submission_cache_policy",
]

LOCK_FOLDER = "prefect-runway-locks"
#: A lock file still empty after this many seconds was left by a holder killed while
#: creating it: it is free.
UNWRITTEN_LOCK_SECONDS = 10.0


def lock_hold_seconds() -> float:
    """The longest a submit lock is held: the setting ``PREFECT_RUNWAY_LOCK_HOLD_SECONDS``,
    or 900.

    Raises:
        InvalidRequest: a setting holds a value it does not take.
    """
    return get_settings().lock_hold_seconds


def lock_wait_seconds(hold_seconds: float) -> float:
    """How long a submit waits for the lock of its request: twice the hold time (any lock
    seen when the wait began has expired by then; the rest is for the runs queued first)."""
    return 2 * hold_seconds


def _timed_out(key: str, waited: float, hold_seconds: float) -> LockTimeout:
    return LockTimeout(
        f"the submit lock of {key} stayed taken for {waited:.0f} s (a lock is held at most "
        f"{hold_seconds:g} s, {LOCK_HOLD_ENV}); nothing was sent. Another run kept it: "
        "retry later, or find the runs submitting the same request", key=key, waited=waited,
    )


def default_lock_directory() -> Path:
    """The setting ``PREFECT_RUNWAY_LOCK_DIR``, else ``prefect-runway-locks`` beside
    Prefect's local results."""
    return get_settings().lock_dir or prefect_results_directory() / LOCK_FOLDER


def _holder_is_gone(holder: str) -> bool:
    """Whether a lock holder (``host:pid:...``, Prefect's default) is a dead local process."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class RunwayFileSystemLockManager(FileSystemLockManager):
    """Prefect's ``FileSystemLockManager`` for submit locks on one machine, made safe to crash.

    Five changes, all about a holder that dies, is slow, or is not one:

    * a lock is held at most ``hold_seconds`` when the caller gives no hold timeout (Prefect's
      transactions give none);
    * a lock file whose expiry is later than ``hold_seconds`` after it was written (or seen
      first, if its time stamp is in the future too), or that has none, expires then;
    * an acquire without a timeout (Prefect's) waits at most ``wait_seconds``, then raises
      :class:`~prefect_runway.errors.LockTimeout` (Prefect would go on without the lock);
    * a lock whose holder is a process of this host that no longer exists is free;
    * a lock file that exists but is not written yet (its holder is between creating and
      writing it) counts as locked, instead of failing to parse.

    Args:
        lock_files_directory: Where the lock files live.
        hold_seconds: The default hold timeout (default :func:`lock_hold_seconds`).
        wait_seconds: The longest acquire without a timeout (default
            :func:`lock_wait_seconds` of ``hold_seconds``).
    """

    def __init__(self, lock_files_directory: Path, hold_seconds: float | None = None,
                 wait_seconds: float | None = None) -> None:
        super().__init__(Path(lock_files_directory))
        self.hold_seconds = hold_seconds if hold_seconds is not None else lock_hold_seconds()
        self.wait_seconds = (wait_seconds if wait_seconds is not None
                             else lock_wait_seconds(self.hold_seconds))
        self._directory_made = False
        #: When this process first saw each lock that claims more than ``hold_seconds``.
        self._first_seen: dict[tuple[str, str, str], float] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"lock_files_directory": self.lock_files_directory,
                "hold_seconds": self.hold_seconds, "wait_seconds": self.wait_seconds}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["lock_files_directory"], state["hold_seconds"], state.get("wait_seconds"),
        )

    def _get_lock_info(self, key: str, use_cache: bool = True) -> Any:
        try:
            info = super()._get_lock_info(key, use_cache=use_cache)
        except ValueError:  # created, not yet written by its holder: locked, for a moment
            path = Path(self._lock_path_for_key(key))
            try:
                age = time.time() - path.stat().st_mtime
            except OSError:
                return None
            if age > UNWRITTEN_LOCK_SECONDS:  # its holder died between create and write
                path.unlink(missing_ok=True)
                self._locks.pop(key, None)
                return None
            return {"holder": "", "expiration": None, "path": path}
        holder = info.get("holder") if info else None
        if info and holder and (
            _holder_is_gone(holder) or _holder_is_gone(self._owner_of(key, holder) or "")
        ):
            self._owner_path(key).unlink(missing_ok=True)
            Path(info["path"]).unlink(missing_ok=True)
            self._locks.pop(key, None)
            return None
        return self._capped(info) if info else info

    def _capped(self, info: Any) -> Any:
        """``info`` with its expiry no later than ``hold_seconds`` after the lock was written
        (its file's time stamp) or, for a stamp in the future, after this process first saw
        it: no lock file holds a request longer than a holder may, whatever it says."""
        expiration = info.get("expiration")
        latest = now("UTC") + timedelta(seconds=self.hold_seconds)
        if expiration is not None and expiration <= latest:
            return info  # as every lock this package writes
        path = Path(info["path"])
        try:
            written = path.stat().st_mtime
        except OSError:
            return info
        seen = self._first_seen.setdefault(
            (str(path), str(info.get("holder")), str(expiration)), time.time()
        )
        cap = datetime.fromtimestamp(min(written, seen) + self.hold_seconds, timezone.utc)
        return {**info, "expiration": cap}

    def _live_lock(self, key: str, use_cache: bool = False) -> Any:
        """The lock's info, read once, or None if there is no lock or it has expired (an
        expired lock file is removed, as Prefect does)."""
        info = self._get_lock_info(key, use_cache=use_cache)
        if info is None:
            return None
        expiration = info.get("expiration")
        if expiration is not None and expiration < now("UTC"):
            Path(info["path"]).unlink(missing_ok=True)
            self._locks.pop(key, None)
            self._first_seen = {k: v for k, v in self._first_seen.items()
                                if k[0] != str(info["path"])}
            return None
        return info

    # Prefect's is_locked, is_lock_holder and release_lock, each reading the lock file once.
    # Prefect's is_lock_holder reads it twice (is_locked, twice over) and its release_lock
    # three times: a submit read its lock file 12 times between acquire and release, now 4.

    def is_locked(self, key: str, use_cache: bool = False) -> bool:
        return self._live_lock(key, use_cache=use_cache) is not None

    def is_lock_holder(self, key: str, holder: str) -> bool:
        info = self._live_lock(key)
        return info is not None and info["holder"] == holder

    def release_lock(self, key: str, holder: str) -> None:
        """Prefect's release (the same errors), and the owner file with it (one per submit
        otherwise stays in the directory for good). It goes first, while the lock is still
        ``holder``'s: removed after the lock, it could already be the next holder's."""
        info = self._live_lock(key)
        if info is None:
            raise ValueError(f"No lock for transaction with key {key}")
        if info["holder"] != holder:
            raise ValueError(f"No lock held by {holder} for transaction with key {key}")
        self._owner_path(key).unlink(missing_ok=True)
        Path(info["path"]).unlink(missing_ok=True)
        self._locks.pop(key, None)

    def _owner_path(self, key: str) -> Path:
        return Path(f"{self._lock_path_for_key(key)}.owner")

    def _owner_of(self, key: str, holder: str) -> str | None:
        """``host:pid`` of the process that took the lock for ``holder`` (Prefect's holders
        are uuids), from the owner file written beside the lock; None if unknown."""
        try:
            recorded, _, owner = self._owner_path(key).read_text().partition("\n")
        except OSError:
            return None
        return owner.strip() if recorded == holder and owner.strip() else None

    def _write_owner(self, key: str, holder: str) -> None:
        try:
            self._owner_path(key).write_text(f"{holder}\n{socket.gethostname()}:{os.getpid()}")
        except OSError:
            pass  # without it the lock is freed by its hold timeout only

    async def _aget_lock_info(self, key: str, use_cache: bool = True) -> Any:
        return self._get_lock_info(key, use_cache=use_cache)

    def acquire_lock(
        self, key: str, holder: str, acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        """Prefect's acquire, with ``hold_seconds`` as the hold timeout and, without an
        acquire timeout, ``wait_seconds`` as the deadline (LockTimeout past it)."""
        began = time.monotonic()
        ok = super().acquire_lock(key, holder, acquire_timeout or self.wait_seconds,
                                  hold_timeout or self.hold_seconds)
        if ok:
            self._write_owner(key, holder)
        elif acquire_timeout is None:
            raise _timed_out(key, time.monotonic() - began, self.hold_seconds)
        return ok

    async def aacquire_lock(
        self, key: str, holder: str, acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        """Prefect's acquire, without its worker-thread hops.

        Without ``acquire_timeout`` (Prefect's transactions give none, and go on without the
        lock when the acquire returns False) it waits ``wait_seconds`` at most, then raises
        :class:`~prefect_runway.errors.LockTimeout`.

        Prefect's async acquire makes, creates and writes the lock file through ``anyio.Path``:
        five trips to a worker thread for a file of ~100 bytes, on every submit (a thousand
        submits at once kept ~40 threads busy). Here the file is made with one exclusive
        create and written straight after, on the event loop (a local file: microseconds);
        a reader that comes between the two sees an empty file, which counts as locked (see
        ``_get_lock_info``). Waiting for a lock another holds still sleeps on the loop.
        """
        hold = hold_timeout or self.hold_seconds
        began = time.monotonic()
        deadline = began + (self.wait_seconds if acquire_timeout is None else acquire_timeout)
        while True:
            held = self._live_lock(key)
            if held is not None and held["holder"] != holder:
                left = deadline - time.monotonic()
                if left <= 0 or not await self.await_for_lock(key, left):
                    break
            if self._claim(key, holder, hold):
                return True
            if time.monotonic() >= deadline:
                break
        if acquire_timeout is None:  # Prefect's transactions: they would go on unlocked
            raise _timed_out(key, time.monotonic() - began, self.hold_seconds)
        return False

    def _claim(self, key: str, holder: str, hold_seconds: float) -> bool:
        """Create the lock file for ``holder`` (or renew it if ``holder`` has it); False when
        another holder created it first."""
        if not self._directory_made:
            self._ensure_lock_files_directory_exists()
            self._directory_made = True
        path = self._lock_path_for_key(key)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        try:
            fd = os.open(path, flags, 0o644)
        except FileExistsError:
            if not self.is_lock_holder(key, holder):
                return False
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        except FileNotFoundError:  # the directory was removed under us
            self._directory_made = False
            return False
        expiration = now("UTC") + timedelta(seconds=hold_seconds)
        try:
            os.write(fd, pydantic_core.to_json({"holder": holder, "expiration": str(expiration)}))
        finally:
            os.close(fd)
        self._locks[key] = {"holder": holder, "expiration": expiration, "path": Path(path)}
        self._write_owner(key, holder)
        return True


def _redis_lock_manager(url: str, hold_seconds: float) -> LockManager:
    try:
        from prefect_redis.locking import RedisLockManager
    except ImportError:
        raise InvalidRequest(
            LOCK_REDIS_URL_ENV, "is set but prefect-redis is not installed",
            allowed="`pip install prefect-redis`, or unset it for file-system locks",
        ) from None

    wait_seconds = lock_wait_seconds(hold_seconds)

    class _HeldRedisLockManager(RedisLockManager):  # type: ignore[misc,valid-type]
        """RedisLockManager whose locks expire after ``hold_seconds`` unless told otherwise,
        whose acquire without a timeout waits ``wait_seconds`` at most (then LockTimeout),
        and whose async acquire takes a lock that Prefect's release can release.

        A lock key that lives longer than ``hold_seconds`` (no expiry, or a far one: not set
        by a holder of ours) is given that expiry before waiting on it.

        Prefect 3.9.1's ``AsyncTransaction`` acquires with ``aacquire_lock`` but releases
        with the synchronous ``release_lock``; prefect-redis 0.3.0 then calls ``release()``
        of a redis.asyncio lock without awaiting it, so the lock is never released and the
        next run of the same request waits for it to expire. Acquiring the synchronous lock
        (in a worker thread) makes the release real.
        """

        def acquire_lock(self, key: str, holder: str, acquire_timeout: float | None = None,
                         hold_timeout: float | None = None) -> bool:
            name = self._lock_name_for_key(key)
            longest = int((hold_timeout or hold_seconds) * 1000)
            ttl = self.client.pttl(name)  # -2: no key, -1: no expiry
            if ttl == -1 or ttl > longest:
                self.client.pexpire(name, longest)
            began = time.monotonic()
            ok = super().acquire_lock(key, holder, acquire_timeout or wait_seconds,
                                      hold_timeout or hold_seconds)
            if not ok and acquire_timeout is None:
                raise _timed_out(key, time.monotonic() - began, hold_seconds)
            return bool(ok)

        async def aacquire_lock(self, key: str, holder: str, acquire_timeout: float | None = None,
                                hold_timeout: float | None = None) -> bool:
            return await asyncio.to_thread(
                self.acquire_lock, key, holder, acquire_timeout, hold_timeout
            )

    return _HeldRedisLockManager(connection_url=url)


def lock_manager_from_settings() -> LockManager:
    """The lock manager for submit locks, from the environment.

    ``PREFECT_RUNWAY_LOCK_REDIS_URL`` set: prefect-redis's ``RedisLockManager`` on that URL
    (locks shared by every worker reaching that Redis). Otherwise a
    :class:`RunwayFileSystemLockManager` in :func:`default_lock_directory` (locks shared by
    the processes of one machine, or of machines sharing that directory on a filesystem
    with atomic exclusive create).

    Raises:
        InvalidRequest: a setting is invalid (or prefect-redis is missing for a Redis URL).
    """
    hold = lock_hold_seconds()
    url = get_settings().lock_redis_url or ""
    settings = (url, hold, "" if url else str(default_lock_directory()))
    # One manager per setting, as Prefect keeps one per task: a manager per submit cost a
    # Redis connection pool (or a resolved lock directory) for every job.
    with _managers_lock:
        manager = _managers.get(settings)
        if manager is None:
            manager = (_redis_lock_manager(url, hold) if url
                       else RunwayFileSystemLockManager(Path(settings[2]), hold_seconds=hold))
            _managers[settings] = manager
        return manager


_managers: dict[tuple[str, float, str], LockManager] = {}
_managers_lock = threading.Lock()


def submission_cache_policy(
    cache_key_fn: Callable[..., str | None],
    *,
    lock_manager: LockManager | None = None,
    key_storage: Any = None,
) -> CachePolicy:
    """A cache policy keyed by ``cache_key_fn``, locked SERIALIZABLE by ``lock_manager``.

    Give it to the submit task (``@task(cache_policy=...)`` or ``.with_options``) instead of
    ``cache_key_fn``: the task engine then opens the task's transaction with
    ``IsolationLevel.SERIALIZABLE`` and takes the lock on the cache key before running it.

    Args:
        cache_key_fn: ``(TaskRunContext, parameters) -> key``, e.g. the submit's cache key.
        lock_manager: default :func:`lock_manager_from_settings`.
        key_storage: Where the records' metadata is read and written (Prefect's
            ``key_storage``; the submit task's is
            :data:`prefect_runway.cache_records.SUBMIT_RECORD_KEYS`); None: with the results.
    """
    return CacheKeyFnPolicy(cache_key_fn=cache_key_fn).configure(
        key_storage=key_storage,
        lock_manager=lock_manager or lock_manager_from_settings(),
        isolation_level=IsolationLevel.SERIALIZABLE,
    )


#: Re-exported for callers building an explicit transaction.
SERIALIZABLE = IsolationLevel.SERIALIZABLE
