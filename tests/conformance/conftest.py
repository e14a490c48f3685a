"""Conformance: the providers' official SDKs (and the docs' own example clients) must work
against the emulator unchanged. One emulator per session, reset before each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conformance_helpers import CONFIG

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
