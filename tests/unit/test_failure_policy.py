"""The task retry conditions never retry a failed job, whatever its failure code says."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from prefect_runway.errors import (
    ContentRejected,
    GenerationFailed,
    GenerationInternalError,
    InvalidAsset,
    OutputRejected,
    ProviderUnavailable,
)
from prefect_runway.tasks.collect import _retry_read
from prefect_runway.tasks.generation import _retry_submit


@pytest.mark.parametrize("cls", [
    ContentRejected, OutputRejected, GenerationInternalError, InvalidAsset,
])
async def test_a_classified_failure_is_not_retried_by_a_task(cls):
    state = SimpleNamespace(data=cls("failed", provider="runway", job_id="j", failure_code="X"))
    assert await _retry_read(None, None, state) is False
    assert await _retry_submit(None, None, state) is False


async def test_transport_trouble_still_is():
    state = SimpleNamespace(data=ProviderUnavailable("down", provider="runway"))
    assert await _retry_read(None, None, state) is True
    assert await _retry_read(None, None, SimpleNamespace(data=GenerationFailed("x"))) is False
