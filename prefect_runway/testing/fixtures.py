"""Pytest fixtures: a Prefect test server, the emulator, and credentials blocks pointing at it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

EMULATOR_KEY = "emulator-test-key"


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One Prefect temporary server for the whole test session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def runway_emulator() -> Iterator[object]:
    """The provider emulator on 127.0.0.1, fast: 0.3 s jobs, 4 fps videos."""
    from prefect_runway.emulator import Emulator, EmulatorConfig

    config = EmulatorConfig(latency=0.3, video_fps=4, runway_concurrency=8)
    with Emulator(config) as emulator:
        yield emulator


def _fast(cls: type, url: str, **extra: object) -> object:
    return cls(
        api_key=SecretStr(EMULATOR_KEY), base_url=url, poll_interval_seconds=0.1,
        max_poll_interval_seconds=0.5, wait_timeout_seconds=60, **extra,
    )


@pytest.fixture()
def segmind_credentials(runway_emulator: object) -> object:
    from prefect_runway.blocks import SegmindCredentials

    return _fast(SegmindCredentials, runway_emulator.url)  # type: ignore[attr-defined]


@pytest.fixture()
def aimlapi_credentials(runway_emulator: object) -> object:
    from prefect_runway.blocks import AimlapiCredentials

    return _fast(AimlapiCredentials, runway_emulator.url)  # type: ignore[attr-defined]


@pytest.fixture()
def runway_credentials(runway_emulator: object) -> object:
    from prefect_runway.blocks import RunwayCredentials

    return _fast(RunwayCredentials, runway_emulator.url)  # type: ignore[attr-defined]
