"""Each request is prepared once, and storage is resolved once per flow run.

Real runs against the emulator on 127.0.0.1 (the Prefect test harness, the flows, the tasks,
httpx); the counting is done by wrapping ``Provider.prepare`` and ``LocalStorage.__init__``
with monkeypatch, so every path that prepares a request or builds a storage is counted.
"""

from __future__ import annotations

from collections import Counter

import pytest

from prefect_runway import image_to_video, storyboard
from prefect_runway.models import PLACEHOLDER_IMAGE, VideoRequest
from prefect_runway.providers.base import Provider
from prefect_runway.storage import LocalStorage

REF = [{"uri": "https://example.com/ref.png", "tag": "hero"}]


class Counts:
    """What was prepared (per fingerprint, and placeholder checks apart) and built."""

    def __init__(self) -> None:
        self.prepared: Counter[str] = Counter()
        self.placeholder_checks = 0
        self.storages = 0

    @property
    def steps(self) -> int:
        return sum(self.prepared.values())


@pytest.fixture()
def counts(monkeypatch) -> Counts:
    seen = Counts()
    prepare = Provider.prepare
    init = LocalStorage.__init__

    def counting_prepare(self, request, base_url=None):
        prepared = prepare(self, request, base_url)
        if isinstance(request, VideoRequest) and request.image == PLACEHOLDER_IMAGE:
            seen.placeholder_checks += 1
        else:
            seen.prepared[prepared.fingerprint] += 1
        return prepared

    def counting_init(self, root):
        seen.storages += 1
        init(self, root)

    monkeypatch.setattr(Provider, "prepare", counting_prepare)
    monkeypatch.setattr(LocalStorage, "__init__", counting_init)
    return seen


async def test_a_chain_prepares_each_step_once_and_resolves_storage_once(
    segmind_credentials, tmp_path, counts
):
    result = await image_to_video(
        still_prompt="a lighthouse @hero", motion_prompt="slow dolly in",
        credentials=segmind_credentials, reference_images=REF, seed=7, storage=str(tmp_path),
        preview=None,
    )
    assert result.still.sha256 and result.video.sha256
    # Two steps, two preparations: one per step, each request once.
    assert counts.steps == 2
    assert set(counts.prepared.values()) == {1}
    assert {result.still.fingerprint, result.video.fingerprint} == set(counts.prepared)
    # The video step was checked once (with a placeholder image) before the still was paid for.
    assert counts.placeholder_checks == 1
    assert counts.storages == 1


async def test_a_storyboard_prepares_each_step_once_and_resolves_storage_once(
    segmind_credentials, aimlapi_credentials, tmp_path, counts
):
    shots = [
        {"name": f"shot-{i}", "still_prompt": f"scene {i} @hero", "reference_images": REF,
         "motion_prompt": f"move {i}", "seed": 10 + i}
        for i in (1, 2, 3)
    ]
    summary = await storyboard(shots=shots, image_credentials=segmind_credentials,
                               video_credentials=aimlapi_credentials, storage=str(tmp_path),
                               preview=None)
    assert summary.completed == 3
    assert counts.steps == 6  # three chains of two steps
    assert set(counts.prepared.values()) == {1}
    assert counts.placeholder_checks == 3
    assert counts.storages == 1
