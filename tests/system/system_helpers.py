"""Processes for the system tests: a Prefect server's environment, start, and stop.

Every process a test starts goes through :func:`start` (a session, so a process group, of
its own), and :func:`stop` ends it with its whole process tree: its group, and any
descendant that moved to a session of its own (Prefect starts each flow run in a new one).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from processes import descendants

__all__ = ["BIN", "SERVER_START_TIMEOUT", "PrefectServer", "Proc", "clean_env", "descendants",
           "free_port", "start", "stop"]

BIN = Path(sys.executable).parent
SERVER_START_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(home: Path, api_url: str, **extra: str) -> dict[str, str]:
    """This process's environment without any PREFECT_* setting, then the server's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_LOGGING_LEVEL="INFO",
        PREFECT_CLI_WRAP_LINES="false",
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    env.update(extra)
    return env


@dataclass
class Proc:
    """A started process, its log file, and what it was."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start(name: str, args: list[str], env: dict[str, str], logs: Path, cwd: Path | None = None) -> Proc:
    """Start a process in a new session (its own process group), logging to ``logs/name.log``."""
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Proc(name, popen, log)


def _signal(pid: int, sig: int, group: bool) -> None:
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop(proc: Proc, grace: float = 10.0) -> None:
    """SIGTERM the process group and every descendant; SIGKILL what is left after ``grace``."""
    pid = proc.popen.pid
    tree = descendants(pid)
    groups = {pid}
    for child in tree:
        try:
            groups.add(os.getpgid(child))
        except ProcessLookupError:
            pass
    own_group = os.getpgid(0)
    groups.discard(own_group)  # never signal the test runner's own group
    for group in groups:
        _signal(group, signal.SIGTERM, group=True)
    for child in tree:
        _signal(child, signal.SIGTERM, group=False)
    try:
        proc.popen.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    for group in groups:
        _signal(group, signal.SIGKILL, group=True)
    for child in tree + descendants(pid):
        _signal(child, signal.SIGKILL, group=False)
    try:
        proc.popen.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not fail
        pass


@dataclass
class PrefectServer:
    """A running ``prefect server start``: its URLs, home, environment and processes."""

    url: str
    api_url: str
    home: Path
    logs: Path
    env: dict[str, str]
    procs: list[Proc] = field(default_factory=list)

    def start(self, name: str, args: list[str], cwd: Path | None = None, **env: str) -> Proc:
        proc = start(name, args, {**self.env, **env}, self.logs, cwd)
        self.procs.append(proc)
        return proc

    def run(self, args: list[str], *, cwd: Path | None = None, timeout: float = 120,
            **env: str) -> subprocess.CompletedProcess[str]:
        """Run a command against this server (in a session of its own), checking it succeeded."""
        result = subprocess.run(
            args, env={**self.env, **env}, cwd=cwd, capture_output=True, text=True,
            timeout=timeout, start_new_session=True, stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result
