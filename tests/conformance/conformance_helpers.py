"""Shared constants and helpers of the conformance tests."""

from __future__ import annotations

import httpx

from prefect_runway.emulator import EmulatorConfig

KEYS = {"segmind": "sg-conformance", "aimlapi": "aiml-conformance", "runway": "rw-conformance"}

#: Only these keys are accepted, so the tests also prove each client sends its key.
CONFIG = EmulatorConfig(latency=0.3, video_fps=4, api_keys=frozenset(KEYS.values()))


def download(url: str) -> bytes:
    """GET a media URL the way a user would (no auth headers)."""
    response = httpx.get(url, trust_env=False, timeout=30)
    response.raise_for_status()
    return response.content
