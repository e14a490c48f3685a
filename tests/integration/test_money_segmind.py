"""Segmind's charged cost from the ``x-remaining-credits`` difference around each submit.

Segmind reports no cost per job; its submit answer carries the balance after the submit.
Where the engine can prove nothing else moved the balance in between (a balance read or the
previous job's header as the baseline, no other job of the account in flight in this
process), the sidecar records the difference as charged; where jobs of one account overlap,
the difference is ambiguous and the price table's estimate stays, marked estimated.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from prefect_runway import SegmindCredentials, image_to_video, storyboard
from prefect_runway.emulator import Emulator, EmulatorConfig
from prefect_runway.testing.fixtures import _fast

REF = [{"uri": "https://example.com/ref.png", "tag": "hero"}]


async def test_a_segmind_chain_records_the_charged_cost_equal_to_the_emulators_charge(tmp_path):
    # Prices unlike the client's table, so a charged cost cannot be the estimate.
    config = EmulatorConfig(latency=0.3, video_fps=4, credits=10.0, price_overrides={
        "segmind": {"gen4_image": {"amount": 0.07}, "gen4_turbo": {"amount": 0.06}}})
    with Emulator(config) as emulator:
        credentials = _fast(SegmindCredentials, emulator.url)
        result = await image_to_video(
            still_prompt=f"a harbour, @hero {uuid.uuid4().hex[:8]}", motion_prompt="pan",
            credentials=credentials, reference_images=REF, still_ratio="1280:720",
            storage=str(tmp_path), preview=None,
        )
        charged = {c["job_id"]: c["charged"] for c in emulator.charges()}

    assert len(charged) == 2
    assert sorted(charged.values()) == [0.07, 0.3]  # the still; 5 s of video at 0.06/s
    for output in (result.still, result.video):
        sidecar = json.loads(Path(output.sidecar).read_text())
        assert sidecar["cost_estimated"] is False
        assert sidecar["cost_unit"] == "USD"
        assert sidecar["cost"] == output.cost == charged[output.job_id]


async def test_overlapping_segmind_jobs_keep_the_estimate_marked_estimated(tmp_path):
    config = EmulatorConfig(latency=1.0, video_fps=4, credits=10.0, price_overrides={
        "segmind": {"gen4_image": {"amount": 0.07}, "gen4_turbo": {"amount": 0.06}}})
    token = uuid.uuid4().hex[:8]
    shots = [{"name": f"shot-{i}", "still_prompt": f"scene {i}, @hero {token}",
              "reference_images": REF, "motion_prompt": f"move {i}", "seed": i + 1,
              "ratio": "1280:720", "duration": 5} for i in range(3)]
    with Emulator(config) as emulator:
        credentials = _fast(SegmindCredentials, emulator.url)
        summary = await storyboard(shots=shots, credentials=credentials, storage=str(tmp_path),
                                   concurrency=3, preview=None, progress=False)
        jobs = {view.job.id: view.job for view in emulator.backend.jobs("segmind")}
        charged = {c["job_id"]: c["charged"] for c in emulator.charges()}

    assert summary.completed == 3
    outputs = [o for s in summary.shots for o in (s.still, s.video)]
    assert {o.job_id for o in outputs} == set(jobs) == set(charged)
    overlapped = 0
    for output in outputs:
        job = jobs[output.job_id]
        sidecar = json.loads(Path(output.sidecar).read_text())
        assert sidecar["cost"] == output.cost
        # A job created while an earlier job of the account had not ended: the difference
        # around its submit may hold the other's charge or refund; it must stay estimated.
        if any(other.created_at < job.created_at < other.slot_end()
               for other in jobs.values() if other is not job):
            overlapped += 1
            assert output.cost_estimated is True, f"{output.kind} {output.job_id}"
            assert output.cost == {"image": 0.05, "video": 0.25}[output.kind]  # the table's
        if output.cost_estimated is False:  # a charged cost is exactly what was charged
            assert output.cost == charged[output.job_id]
    assert overlapped >= 2  # three shots at once: their jobs did overlap
