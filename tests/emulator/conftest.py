"""Fixtures for the emulator's own tests: one server per session, reset before each test."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from prefect_runway.emulator import Emulator, EmulatorConfig

#: Fast settings: short jobs, few frames.
BASE_CONFIG = EmulatorConfig(latency=0.3, video_fps=4, runway_concurrency=4)


@pytest.fixture(scope="session")
def _server() -> Iterator[Emulator]:
    with Emulator(BASE_CONFIG) as emu:
        yield emu


@pytest.fixture
def emu(_server: Emulator) -> Iterator[Emulator]:
    """The session's emulator, with fresh state and the base configuration."""
    _server.reset()
    _server.configure(**BASE_CONFIG.model_dump())
    yield _server
    _server.reset()


@pytest.fixture
def client(emu: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.url, timeout=10, trust_env=False) as http:
        yield http
