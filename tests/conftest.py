"""Session-wide test setup: Prefect never phones home and keeps its state in a temp dir."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from processes import still_running

# The benchmarks (``benchmarks/`` beside ``tests/``) are imported by their smoke tests and by
# integration tests that measure memory; ahead of ``tests/`` so ``benchmarks`` is never
# ``tests/benchmarks``, whichever test file is run alone.
ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# Before anything imports prefect: an isolated PREFECT_HOME (results, cache records) and no
# analytics. The Prefect test server itself is the `prefect_harness` fixture, started once.
_home = tempfile.mkdtemp(prefix="prefect-runway-tests-")
os.environ["PREFECT_HOME"] = _home
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")

pytest_plugins = ["prefect_runway.testing.fixtures"]


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (the default, see pyproject's addopts): two workers per core, at most 16.
    The tests wait on loopback servers for about half their time, so one worker per core
    would leave the cores half idle; each worker costs a Prefect test server of its own."""
    return min(2 * len(os.sched_getaffinity(0)), 16)


@pytest.hookimpl(hookwrapper=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> Iterator[None]:
    """A test that runs past its timeout fails saying which processes it had running."""
    yield
    timed_out = signal.getsignal(signal.SIGALRM)
    if not callable(timed_out) or getattr(timed_out, "says_what_ran", False):
        return  # pytest-timeout's thread method, or already wrapped

    def says_what_ran(signum: int, frame: Any) -> None:
        __tracebackhide__ = True
        running = still_running()
        try:
            timed_out(signum, frame)
        except pytest.fail.Exception as exc:
            raise pytest.fail.Exception(f"{exc.msg} Still running:\n{running}") from None

    says_what_ran.says_what_ran = True  # type: ignore[attr-defined]
    signal.signal(signal.SIGALRM, says_what_ran)
