"""Conformance: the providers' official SDKs (and the docs' own example clients) must work
against the emulator unchanged. One emulator per session, reset before each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conformance_helpers import CONFIG, KEYS
from runwayml import RunwayML
from runwayml.lib import polling

from prefect_runway.emulator import Emulator


@pytest.fixture(scope="session")
def _conformance_server() -> Iterator[Emulator]:
    with Emulator(CONFIG) as emu:
        yield emu


@pytest.fixture
def emu(_conformance_server: Emulator) -> Iterator[Emulator]:
    _conformance_server.reset()
    _conformance_server.configure(**CONFIG.model_dump())
    yield _conformance_server
    _conformance_server.reset()


@pytest.fixture(autouse=True)
def fast_sdk_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runwayml SDK sleeps POLL_TIME +- POLL_JITTER/2 seconds (6 +- 1.5) between polls,
    read from `runwayml.lib.polling` at call time: shortened here."""
    monkeypatch.setattr(polling, "POLL_TIME", 0.1)
    monkeypatch.setattr(polling, "POLL_JITTER", 0)


@pytest.fixture
def client(emu: Emulator) -> Iterator[RunwayML]:
    """The runwayml SDK on the emulator, without its own retries (a module may override it)."""
    sdk = RunwayML(api_key=KEYS["runway"], base_url=emu.url, max_retries=0)
    yield sdk
    sdk.close()
