"""The review gate end to end: stills made, published, a decision sent through the Prefect API.

Each flow runs in the background (an asyncio task of the test's loop) against the session's
Prefect test server and an emulator of the test's own; the test finds the paused flow run by
a tag of its own, reads the form and the artifact through the API, and resumes the run with
``prefect.flow_runs.resume_flow_run(flow_run_id, run_input=...)`` (from a thread, as a
script would). What was paid for is read from the emulator's counters
(``GET /_emulator/stats``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest
from prefect import tags
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterTags,
)
from prefect.flow_runs import resume_flow_run
from prefect.input import keyset_from_base_key
from prefect.input.actions import aread_flow_run_input

from prefect_runway import (
    InvalidRequest,
    RunwayCredentials,
    SegmindCredentials,
    StoryboardSummary,
    image_to_video,
    storyboard,
)
from prefect_runway.emulator import Emulator, EmulatorConfig
from prefect_runway.errors import ReviewTimedOut
from prefect_runway.flows.artifacts import REVIEW_ARTIFACT_KEY
from prefect_runway.flows.review import STILLS_INPUT_KEY
from prefect_runway.flows.review_form import REVIEW_KEY
from prefect_runway.testing.fixtures import _fast

REF = [{"uri": "https://example.com/ref.png", "tag": "hero"}]
#: How long a test waits for its flow run to pause (bounded; the stills take < 2 s).
PAUSE_DEADLINE = 90.0
#: The review timeout of the tests that answer: under a minute, so the paused run looks for
#: the answer every second (from 60 s on, every 2 s or more), and still ample for the test.
ANSWERED_WITHIN = 59


def _shot(i: int, **extra: object) -> dict[str, object]:
    return {"name": f"shot-{i:02d}", "still_prompt": f"scene {i}: a harbour at dawn, @hero",
            "reference_images": REF, "motion_prompt": f"move {i}: slow pan", "seed": 100 + i,
            **extra}


@pytest.fixture()
def own_emulator():
    """An emulator of the test's own, so its counters are the test's alone."""
    with Emulator(EmulatorConfig(latency=0.3, video_fps=4, runway_concurrency=8)) as emulator:
        yield emulator


def stats(emulator: Emulator) -> dict[str, Any]:
    """The emulator's counters, read over HTTP as any client would."""
    return httpx.get(f"{emulator.url}/_emulator/stats", timeout=10).json()


async def paused_run(tag: str, task: asyncio.Task[Any]) -> Any:
    """The flow run tagged ``tag`` once it is paused (bounded in time)."""
    deadline = time.monotonic() + PAUSE_DEADLINE
    async with get_client() as client:
        while True:
            if task.done():  # the flow ended before pausing: show why
                raise AssertionError(f"the flow ended before its review: {task.result()}")
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])))
            paused = [r for r in runs if r.state is not None and r.state.is_paused()]
            if paused:
                assert len(paused) == 1
                return paused[0]
            assert time.monotonic() < deadline, f"no paused run tagged {tag} after {PAUSE_DEADLINE}s"
            await asyncio.sleep(0.5)


async def artifacts_of(flow_run_id: Any) -> dict[str, Any]:
    async with get_client() as client:
        found = await client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {a.key: a for a in found if a.key}


def submissions(emulator: Emulator, provider: str = "segmind") -> dict[str, int]:
    """Billable submissions by model id, and the duplicates (should be none)."""
    s = stats(emulator)[provider]
    return {**s["submissions"], "duplicates": s["duplicate_submissions"]}


async def test_review_in_a_process_approves_two_and_regenerates_one(own_emulator, tmp_path):
    credentials = _fast(SegmindCredentials, own_emulator.url)
    shots = [_shot(1), _shot(2), _shot(3)]
    tag = f"review-{uuid.uuid4().hex[:8]}"
    with tags(tag):
        task = asyncio.ensure_future(storyboard(
            shots=shots, credentials=credentials, storage=str(tmp_path), review=True,
            review_mode="pause", review_timeout=ANSWERED_WITHIN, return_state=True,
        ))
    run = await paused_run(tag, task)

    # While it waits: three stills made, none animated; the stills are shown.
    before = stats(own_emulator)["segmind"]
    assert before["total_submissions"] == 3 and before["duplicate_submissions"] == 0
    assert not list(tmp_path.glob("*.mp4"))
    review = (await artifacts_of(run.id))[REVIEW_ARTIFACT_KEY].data
    for name in ("shot-01", "shot-02", "shot-03"):
        assert f"## {name}" in review
    assert review.count("](data:image/jpeg;base64,") == 3  # local storage: inlined pictures
    # The form: the schema Prefect's UI renders, the shots as a choice.
    keyset = keyset_from_base_key(f"paused-{REVIEW_KEY}")
    schema = await aread_flow_run_input(keyset["schema"], flow_run_id=run.id)
    shot_schema = schema["definitions"]["ShotDecision"]["properties"]
    assert shot_schema["shot"]["enum"] == ["shot-01", "shot-02", "shot-03"]
    assert shot_schema["decision"]["enum"] == ["approve", "reject", "regenerate"]
    assert await aread_flow_run_input(STILLS_INPUT_KEY, flow_run_id=run.id) is not None

    # An answer that is not the form's is refused by the server; the run keeps waiting.
    with pytest.raises(RuntimeError, match="Cannot resume"):
        await asyncio.to_thread(resume_flow_run, run.id, run_input={"shots": [
            {"shot": "no-such-shot", "decision": "approve"}]})
    answer = {"shots": [
        {"shot": "shot-01", "decision": "approve"},
        {"shot": "shot-02", "decision": "approve"},
        {"shot": "shot-03", "decision": "regenerate", "seed": 777},
    ]}
    await asyncio.to_thread(resume_flow_run, run.id, run_input=answer)
    state = await asyncio.wait_for(task, 120)

    assert state.is_completed(), state.message
    summary: StoryboardSummary = await state.result()
    assert (summary.completed, summary.failed, summary.rejected) == (3, 0, 0)
    by_name = {r.name: r for r in summary.shots}
    assert by_name["shot-03"].still.request["seed"] == 777  # the regenerated still
    assert by_name["shot-01"].still.request["seed"] == 101  # the one shown
    assert len(list(tmp_path.glob("*.mp4"))) == 3
    after = stats(own_emulator)["segmind"]
    # 3 stills shown + 1 regenerated, then exactly the 3 chosen videos; nothing twice.
    assert after["total_submissions"] == 3 + 1 + 3
    assert after["duplicate_submissions"] == 0
    assert set(after["billable"].values()) == {1}


async def test_review_rejects_and_picks_a_variant(own_emulator, tmp_path):
    credentials = _fast(SegmindCredentials, own_emulator.url)
    tag = f"review-{uuid.uuid4().hex[:8]}"
    with tags(tag):
        task = asyncio.ensure_future(storyboard(
            shots=[_shot(1), _shot(2)], credentials=credentials, storage=str(tmp_path),
            review=True, variants=2, review_mode="pause", review_timeout=ANSWERED_WITHIN,
            return_state=True,
        ))
    run = await paused_run(tag, task)
    assert stats(own_emulator)["segmind"]["total_submissions"] == 4  # 2 shots x 2 variants
    await asyncio.to_thread(resume_flow_run, run.id, run_input={"shots": [
        {"shot": "shot-01", "decision": "approve", "variant": 2},
        {"shot": "shot-02", "decision": "reject"},
    ]})
    state = await asyncio.wait_for(task, 120)

    assert state.is_completed(), state.message  # a rejected shot is not a failure
    summary: StoryboardSummary = await state.result()
    assert (summary.completed, summary.rejected, summary.failed) == (1, 1, 0)
    one, two = summary.shots
    assert one.status == "completed" and one.still.request["seed"] == 102  # variant 2
    assert two.status == "rejected" and two.video is None and two.error is None
    after = stats(own_emulator)["segmind"]
    assert after["total_submissions"] == 4 + 1 and after["duplicate_submissions"] == 0
    assert "1 rejected at review" in (await artifacts_of(run.id))["storyboard-summary"].data


async def test_timeout_reject_rejects_every_shot(own_emulator, tmp_path):
    credentials = _fast(SegmindCredentials, own_emulator.url)
    state = await storyboard(
        shots=[_shot(1), _shot(2)], credentials=credentials, storage=str(tmp_path),
        review=True, review_timeout=2, on_timeout="reject", return_state=True,
    )
    assert state.is_completed(), state.message
    summary: StoryboardSummary = await state.result()
    assert (summary.completed, summary.rejected, summary.failed) == (0, 2, 0)
    assert all(r.still is not None and r.video is None for r in summary.shots)
    assert stats(own_emulator)["segmind"]["total_submissions"] == 2  # the stills only
    # The policy's answer is recorded as the run's input, as if a person had sent it.
    keyset = keyset_from_base_key(f"paused-{REVIEW_KEY}")
    answer = await aread_flow_run_input(keyset["response"], flow_run_id=state.state_details.flow_run_id)
    assert [d["decision"] for d in answer["shots"]] == ["reject", "reject"]


async def test_timeout_approve_animates_every_still(own_emulator, tmp_path):
    credentials = _fast(SegmindCredentials, own_emulator.url)
    result = await image_to_video(
        still_prompt="a quiet bay, @hero", motion_prompt="drift", reference_images=REF,
        credentials=credentials, storage=str(tmp_path), seed=5, review=True,
        review_timeout=2, on_timeout="approve",
    )
    assert result.status == "completed" and result.video is not None
    assert result.video.location.endswith(".mp4")
    s = stats(own_emulator)["segmind"]
    assert s["total_submissions"] == 2 and s["duplicate_submissions"] == 0


async def test_timeout_fail_fails_the_run_and_animates_nothing(own_emulator, tmp_path):
    credentials = _fast(SegmindCredentials, own_emulator.url)
    state = await image_to_video(
        still_prompt="a quiet bay, @hero", motion_prompt="drift", reference_images=REF,
        credentials=credentials, storage=str(tmp_path), seed=6, review=True,
        review_timeout=2, on_timeout="fail", return_state=True,
    )
    assert state.is_failed()
    with pytest.raises(ReviewTimedOut, match="no review decision within 2 s") as info:
        await state.result()
    assert len(info.value.stills) == 1 and info.value.stills[0].kind == "image"
    assert stats(own_emulator)["segmind"]["total_submissions"] == 1  # the still only
    assert not list(tmp_path.glob("*.mp4"))


async def test_rejected_chain_returns_its_still_and_no_video(own_emulator, tmp_path):
    credentials = _fast(SegmindCredentials, own_emulator.url)
    result = await image_to_video(
        still_prompt="a quiet bay, @hero", motion_prompt="drift", reference_images=REF,
        credentials=credentials, storage=str(tmp_path), seed=7, review=True,
        review_timeout=2, on_timeout="reject",
    )
    assert result.status == "rejected" and result.video is None
    assert result.still.kind == "image"
    assert stats(own_emulator)["segmind"]["total_submissions"] == 1


async def test_an_expired_still_reaches_the_video_from_storage(tmp_path):
    # Segmind forgets a request 2 s after it was submitted: by the time the review is over,
    # the still's provider URL (and the request) is gone; the video goes to Runway, which
    # takes the stored still as a data URI.
    config = EmulatorConfig(latency=0.3, video_fps=4, expiry=2.0)
    with Emulator(config) as emulator:
        segmind = _fast(SegmindCredentials, emulator.url)
        runway = _fast(RunwayCredentials, emulator.url)
        summary = await storyboard(
            shots=[_shot(1, ratio="1280:720")], image_credentials=segmind,
            video_credentials=runway, storage=str(tmp_path), review=True, review_timeout=3,
            on_timeout="approve",
        )
        assert isinstance(summary, StoryboardSummary)
        assert summary.completed == 1, summary.describe()
        video = summary.shots[0].video
        assert video.provider == "runway"
        s = stats(emulator)
        assert s["segmind"]["total_submissions"] == 1  # the still, never again
        assert s["runway"]["total_submissions"] == 1
        assert s["segmind"]["errors"].get("404", 0) >= 1  # the provider had forgotten it


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"on_timeout": "later"}, "on_timeout"),
        ({"review_mode": "sometimes"}, "review_mode"),
        ({"review_timeout": 0}, "review_timeout"),
        ({"review_timeout": "soon"}, "review_timeout"),
        ({"variants": 0}, "variants"),
        ({"variants": 9}, "variants"),
        ({"review_mode": "suspend", "on_timeout": "reject"}, "on_timeout"),
    ],
)
async def test_bad_review_settings_are_refused_before_anything_is_sent(
    own_emulator, tmp_path, settings, field
):
    credentials = _fast(SegmindCredentials, own_emulator.url)
    with pytest.raises(InvalidRequest) as info:
        await storyboard(shots=[_shot(1)], credentials=credentials, storage=str(tmp_path),
                         review=True, **settings)
    assert info.value.field == field
    assert info.value.allowed
    assert stats(own_emulator)["segmind"]["total_submissions"] == 0


async def test_review_stills_fall_back_to_another_provider(own_emulator, tmp_path):
    # Segmind refuses every submit (503): each still variant goes to Runway, its fallback;
    # the approved variant is animated on Runway.
    httpx.post(f"{own_emulator.url}/_emulator/faults",
               json={"providers": {"segmind": "submits_unavailable"}, "retry_after": 0},
               timeout=10).raise_for_status()
    runway = _fast(RunwayCredentials, own_emulator.url)
    state = await storyboard(
        shots=[_shot(1, ratio="1280:720")], image_credentials=_fast(SegmindCredentials, own_emulator.url),
        image_fallback=[runway], video_credentials=runway, storage=str(tmp_path), review=True,
        variants=2, review_timeout=2, on_timeout="approve", check_balance=False,
        return_state=True,
    )
    assert state.is_completed(), state.message
    summary: StoryboardSummary = await state.result()
    shot = summary.shots[0]
    assert shot.status == "completed" and shot.still.provider == "runway"
    assert shot.still.request["seed"] == 101  # variant 1, the timeout's choice
    assert shot.video.provider == "runway"
    s = stats(own_emulator)
    assert sum(s["segmind"]["billable"].values()) == 0  # refused: nothing was taken there
    assert s["runway"]["total_submissions"] == 2 + 1  # two variants, one video
    assert s["runway"]["duplicate_submissions"] == 0
