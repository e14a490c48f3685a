"""Few task runs: one per job (its submit; the wait and the download are in the flow run), none
open while a job runs, and at most ``PREFECT_RUNWAY_MAX_TASK_RUNS`` of them open at once per
flow run's process. Read back from the Prefect test server: each task run's start and end, and
which run each log line belongs to; the jobs from the emulator on 127.0.0.1."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.logging.handlers import APILogHandler
from pydantic import SecretStr

from prefect_runway import SegmindCredentials
from prefect_runway.errors import InvalidRequest
from prefect_runway.flows import storyboard
from prefect_runway.settings import MAX_TASK_RUNS_ENV
from prefect_runway.tasks.limits import max_task_runs

SHOTS = 6


def _credentials(emulator: Any) -> SegmindCredentials:
    return SegmindCredentials(api_key=SecretStr("slots-key"), base_url=emulator.url,
                              poll_interval_seconds=0.1, max_poll_interval_seconds=0.3)


def _shots(tag: str) -> list[dict[str, Any]]:
    return [{"name": f"{tag}-{i}", "still_prompt": f"{tag} still {i} @hero",
             "motion_prompt": "slow pan", "seed": 900 + i,
             "reference_images": [{"uri": "https://example.com/ref.png", "tag": "hero"}]}
            for i in range(SHOTS)]


async def _task_runs(flow_run_id: uuid.UUID) -> list[Any]:
    async with get_client() as client:
        return await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
        )


def _most_open_at_once(runs: list[Any]) -> int:
    """The largest number of task runs between their start and their end at one instant."""
    edges: list[tuple[datetime, int]] = []
    for run in runs:
        edges += [(run.start_time, 1), (run.end_time, -1)]
    edges.sort(key=lambda edge: (edge[0], edge[1]))  # an end before a start at the same instant
    open_now = most = 0
    for _, step in edges:
        open_now += step
        most = max(most, open_now)
    return most


async def _run(tag: str, emulator: Any, tmp_path: Any) -> tuple[Any, list[Any]]:
    summary = await storyboard(shots=_shots(f"{tag}-{uuid.uuid4().hex[:6]}"),
                               credentials=_credentials(emulator), storage=str(tmp_path))
    assert summary.completed == SHOTS
    runs = await _task_runs(summary.shots[0].video.flow_run_id)
    # A submit per generation, a still and a video per shot, all finished.
    assert len(runs) == 2 * SHOTS
    assert all(run.name.startswith("submit ") for run in runs)
    assert all(run.state_type.value == "COMPLETED" and run.start_time and run.end_time
               for run in runs)
    return summary, runs


@pytest.fixture(scope="module")
async def unlimited(runway_emulator, prefect_harness, tmp_path_factory) -> tuple[Any, list[Any]]:
    """One storyboard without the variable (the default limit, 64), and its task runs: what
    the three tests after the limited one read."""
    with pytest.MonkeyPatch.context() as env:
        env.delenv(MAX_TASK_RUNS_ENV, raising=False)
        assert max_task_runs() == 64
        return await _run("unlimited", runway_emulator, tmp_path_factory.mktemp("unlimited"))


async def test_a_storyboard_keeps_at_most_the_limit_of_task_runs_open(
    runway_emulator, tmp_path, monkeypatch
):
    monkeypatch.setenv(MAX_TASK_RUNS_ENV, "2")
    _, runs = await _run("two-open", runway_emulator, tmp_path)
    assert _most_open_at_once(runs) == 2  # never more, and the two places are used


async def test_without_the_variable_the_chains_task_runs_overlap(unlimited):
    _, runs = unlimited
    assert _most_open_at_once(runs) > 2  # what the test above would see without its limit


async def test_the_wait_and_the_download_are_the_flow_runs_and_no_task_run_spans_them(unlimited):
    summary, runs = unlimited
    flow_run_id = summary.shots[0].video.flow_run_id
    await APILogHandler.aflush()
    async with get_client() as client:
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
        )
    waits = [log for log in logs if "output(s) after a" in log.message]
    states = [log for log in logs if " is COMPLETED" in log.message]
    stored = [log for log in logs if log.message.startswith("Stored ")]
    assert len(waits) == 2 * SHOTS and len(states) == 2 * SHOTS and len(stored) >= 2 * SHOTS
    assert all(log.task_run_id is None for log in waits + states + stored)  # the flow run's
    # Each job's submit task run had ended before the job was seen finished.
    finished = {log.message.split(" job ", 1)[1].split(" ", 1)[0]: log.timestamp for log in states}
    ended = {run.name: run.end_time for run in runs}
    for shot in summary.shots:
        for kind, output in (("still", shot.still), ("video", shot.video)):
            submit = ended[f"submit {kind} {shot.name!r} on segmind"]
            assert submit <= finished[output.job_id], (shot.name, kind)


@pytest.mark.parametrize("raw", ["0", "-1", "lots", "2.5", "10001"])
async def test_a_bad_limit_is_refused_before_anything_is_sent(raw, runway_emulator, tmp_path,
                                                              monkeypatch):
    monkeypatch.setenv(MAX_TASK_RUNS_ENV, raw)
    before = runway_emulator.stats()["segmind"]["total_submissions"]
    with pytest.raises(InvalidRequest) as caught:
        await storyboard(shots=_shots("refused"), credentials=_credentials(runway_emulator),
                         storage=str(tmp_path))
    assert caught.value.field == MAX_TASK_RUNS_ENV
    assert "1 to 10000" in str(caught.value)
    assert runway_emulator.stats()["segmind"]["total_submissions"] == before


async def test_the_run_graph_draws_each_shot_as_one_chain(unlimited):
    """Each task run's upstream, as the API records it (the arrows of the run graph): a
    video's submit after its still's submit (``wait_for``), and none from the tasks' arguments: they are not walked, so no arrow comes from a string
    they share with an earlier task's result. (Prefect's own ``__parents__`` guess, by the
    ``id`` of a value, is left out: it can match a recycled ``id``.)"""
    _, runs = unlimited
    names = {run.id: run.name for run in runs}
    follows = {"submit video": "submit still"}
    for run in runs:
        step = " ".join(run.name.split()[:2])  # "submit still 'graph-...-0' on segmind"
        expected = [run.name.replace(step, follows[step], 1)] if step in follows else []
        waits_for = sorted(names.get(i.id, str(i.id)) for i in run.task_inputs.get("wait_for", []))
        assert waits_for == expected, (run.name, run.task_inputs)
        from_arguments = {k: v for k, v in run.task_inputs.items()
                          if v and k not in ("wait_for", "__parents__")}
        assert not from_arguments, (run.name, from_arguments)
