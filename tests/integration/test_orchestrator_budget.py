"""A guard on what a storyboard costs the orchestrator: Prefect API messages per generation.

On Prefect Cloud each REST request and event counts against the workspace's limits, so the
number a generation sends is part of the product. This counts them (a count, not a timing:
stable on a loaded machine) for a small storyboard on the test server and fails when a change
pushes them past the budget documented in benchmarks/README.md by more than the margin.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from prefect_runway import SegmindCredentials
from prefect_runway.flows import storyboard
from prefect_runway.testing.api_calls import count_prefect_api_calls, flush_prefect_workers

#: Prefect API messages (REST requests + events) per generation for a storyboard with
#: default settings, as documented in benchmarks/README.md ("Orchestrator cost"): 7.9 measured
#: on this 4-shot storyboard, where fixed costs weigh more than at N = 1000 (4.1); 10.9 when
#: each job also had a collect task run, which the margin does not let back in.
BUDGET_PER_GENERATION = 8.0
MARGIN = 1.25
SHOTS = 4


def _credentials(emulator: Any) -> SegmindCredentials:
    return SegmindCredentials(api_key=SecretStr("budget-key"), base_url=emulator.url,
                              poll_interval_seconds=0.2)


def _shots(tag: str, count: int, seed: int) -> list[dict[str, Any]]:
    return [{"name": f"{tag}-{i}", "still_prompt": f"{tag} still {i} @hero",
             "motion_prompt": "slow pan", "seed": seed + i,
             "reference_images": [{"uri": "https://example.com/ref.png", "tag": "hero"}]}
            for i in range(count)]


@pytest.fixture(scope="module")
async def counted(runway_emulator, prefect_harness, tmp_path_factory) -> tuple[Any, Any, int]:
    """A storyboard of SHOTS shots with default settings, counted twice over: the Prefect API
    messages it sent, and Prefect's nested ``visit_collection`` calls while it ran."""
    import prefect.utilities.collections as collections

    walked = 0
    prefects = collections.visit_collection

    def visit(*args: Any, **kwargs: Any) -> Any:
        nonlocal walked
        walked += 1
        return prefects(*args, **kwargs)

    credentials, shots = _credentials(runway_emulator), _shots("budget", SHOTS, 500)
    await flush_prefect_workers()
    with pytest.MonkeyPatch.context() as patch, count_prefect_api_calls() as calls:
        # Prefect's own recursion goes through the module's name, so every nested visit counts.
        patch.setattr(collections, "visit_collection", visit)
        summary = await storyboard(shots=shots, credentials=credentials,
                                   storage=str(tmp_path_factory.mktemp("budget")))
        visits = walked
        await flush_prefect_workers()
    return summary, calls, visits


async def test_a_storyboard_stays_within_its_prefect_api_budget(counted):
    summary, calls, _ = counted
    print(calls.table(2 * SHOTS))
    assert summary.completed == SHOTS
    generations = 2 * SHOTS
    assert calls.requests > 0 and calls.events  # the counter sees both channels
    assert calls.per_generation(generations) <= BUDGET_PER_GENERATION * MARGIN, calls.table(generations)


async def test_a_storyboard_without_progress_sends_no_progress_updates(runway_emulator, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    credentials, shots = _credentials(runway_emulator), _shots("quiet", 2, 700)
    await flush_prefect_workers()
    with count_prefect_api_calls() as calls:
        summary = await storyboard(shots=shots, credentials=credentials, storage=str(tmp_path),
                                   progress=False)
        await flush_prefect_workers()
    assert summary.completed == 2
    assert not [p for p in calls.paths if p.startswith("PATCH /artifacts/")]  # no progress updates
    flow_run_id = summary.shots[0].video.flow_run_id
    async with get_client() as client:
        artifacts = await client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    assert "storyboard-progress" not in {a.key for a in artifacts}
    assert "storyboard-summary" in {a.key for a in artifacts}


#: Nested ``visit_collection`` calls per generation (Prefect walking task arguments, the
#: flow's parameters and its result for futures) in a 4-shot storyboard: 99 measured, 310
#: when the generation tasks' arguments were walked (before ``flows/generation.py`` ``_opaque``).
WALK_BUDGET_PER_GENERATION = 150


async def test_prefect_does_not_walk_into_the_generation_tasks_arguments(counted):
    summary, _, walked = counted
    assert summary.completed == SHOTS
    print(f"{walked / (2 * SHOTS):.1f} nested visits per generation")
    assert 0 < walked <= WALK_BUDGET_PER_GENERATION * 2 * SHOTS
