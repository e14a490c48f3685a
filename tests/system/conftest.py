"""A real Prefect server for the system tests — not the shared test harness.

Every test here is marked ``system``: ``pytest -q`` leaves them out, ``pytest -m system`` runs
them (``.ci/run`` runs both).

``prefect_server`` starts ``prefect server start`` on 127.0.0.1 and a free port, in its own
process group, with its own ``PREFECT_HOME`` (so its own SQLite database) and analytics off,
and yields how to reach it; on teardown every process the tests started with it is stopped,
process trees included (see ``system_helpers.stop``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from system_helpers import BIN, SERVER_START_TIMEOUT, PrefectServer, clean_env, free_port, stop


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """``prefect server start`` on 127.0.0.1:<free port>, SQLite in its own PREFECT_HOME."""
    root = tmp_path_factory.mktemp("prefect-server")
    home = root / "home"
    home.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = PrefectServer(url=url, api_url=f"{url}/api", home=home, logs=root / "logs",
                           env=clean_env(home, f"{url}/api"))
    proc = server.start("server", [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                                   "--port", str(port)])
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if proc.popen.poll() is not None:
                raise AssertionError(f"prefect server exited {proc.popen.returncode}:\n{proc.output()}")
            try:
                if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"prefect server not healthy after {SERVER_START_TIMEOUT}s:\n"
                                     f"{proc.output()}")
            time.sleep(0.5)
        yield server
    finally:
        # Workers first (they would retry against a server that is gone), the server last.
        for p in reversed(server.procs):
            stop(p)
