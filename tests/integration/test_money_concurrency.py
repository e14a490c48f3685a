"""Runway's per-model ``maxConcurrentGenerations`` as a storyboard's default concurrency.

The emulator reports ``maxConcurrentGenerations`` per model in ``GET /v1/organization`` and
holds a key's jobs over it THROTTLED. A storyboard with no provider limit of its own bounds
its Runway jobs of each model by that number, read with the balance before the run: the
emulator's own job records (creation, start, end) then show at most that many jobs of the
model at once, and no job held back.
"""

from __future__ import annotations

import uuid

from prefect_runway import RunwayCredentials, storyboard
from prefect_runway.emulator import Emulator, EmulatorConfig
from prefect_runway.testing.fixtures import _fast

REF = [{"uri": "https://example.com/ref.png", "tag": "hero"}]


def _most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The largest number of [start, end) intervals that overlap at one instant."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = now = 0
    for _, step in edges:  # an end at the same instant as a start sorts first (-1 < 1)
        now += step
        most = max(most, now)
    return most


async def test_runway_jobs_are_bounded_by_the_models_max_concurrent_generations(tmp_path, caplog):
    token = uuid.uuid4().hex[:8]
    config = EmulatorConfig(latency=0.4, video_fps=4, runway_concurrency=2,
                            model_concurrency={"gen4_turbo": 2})
    with Emulator(config) as emulator:
        credentials = _fast(RunwayCredentials, emulator.url)
        shots = [{"name": f"shot-{i}", "still_prompt": f"scene {i}, @hero {token}",
                  "reference_images": REF, "motion_prompt": f"move {i}", "seed": i,
                  "ratio": "1280:720", "duration": 5} for i in range(5)]
        summary = await storyboard(shots=shots, credentials=credentials, storage=str(tmp_path),
                                   concurrency=5, preview=None, progress=False)
        jobs = [view.job for view in emulator.backend.jobs("runway")]

    assert summary.completed == 5
    videos = [j for j in jobs if j.model == "gen4_turbo"]
    stills = [j for j in jobs if j.model == "gen4_image"]
    assert len(videos) == len(stills) == 5
    # No job waited THROTTLED: each started when it was created.
    for job in jobs:
        assert job.started_at == job.created_at, f"{job.model} job {job.id} was THROTTLED"
    # At most 2 video jobs existed at once (from creation to the end of their run) ...
    assert _most_at_once([(j.created_at, j.slot_end()) for j in videos]) <= 2
    # ... and the bound was in force: 5 shots at concurrency 5 would have run more at once.
    assert _most_at_once([(j.created_at, j.slot_end()) for j in stills]) <= 2
    assert "At most 2 runway gen4_turbo job(s) at once in this run" in caplog.text
