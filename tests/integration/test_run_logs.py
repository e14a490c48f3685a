"""What a person sees of a run: the engine's events in the run's logs, read back through the
Prefect API; task run names that say what each task does; one error shape per mistake."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from datetime import timedelta
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

from prefect_runway import (
    InvalidRequest,
    InvalidShot,
    RunwayCredentials,
    SegmindCredentials,
    image_to_video,
    storyboard,
)
from prefect_runway.emulator import Emulator, EmulatorConfig
from prefect_runway.engine import GenerationClient
from prefect_runway.engine.polling import LatencyBook, PollSchedule, latency_key
from prefect_runway.models import ImageRequest, utc_now
from prefect_runway.providers import get_provider

REF = [{"uri": "https://example.com/ref.png", "tag": "hero"}]


@pytest.fixture()
def emu():
    with Emulator(EmulatorConfig(latency=0.3, video_fps=4, runway_concurrency=8)) as emulator:
        yield emulator


def _creds(cls: type, emu: Emulator) -> object:
    return cls(api_key=SecretStr("logs-key"), base_url=emu.url, poll_interval_seconds=0.1,
               max_poll_interval_seconds=0.3, wait_timeout_seconds=60)


async def _flow_run_logs(flow_run_id: uuid.UUID) -> list[Any]:
    await APILogHandler.aflush()
    async with get_client() as client:
        return await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
        )


async def _logs(flow_run_id: uuid.UUID) -> list[tuple[int, str]]:
    return [(log.level, log.message) for log in await _flow_run_logs(flow_run_id)]


async def _task_runs(flow_run_id: uuid.UUID) -> list[Any]:
    async with get_client() as client:
        return await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
        )


async def test_engine_events_reach_the_run_logs_once_each(emu, tmp_path):
    # The still's download is cut off half-way (full Content-Length, half the body), and the
    # video's first status poll answers 503: a resumed download and a retried read.
    emu.set_faults(scripted=[
        {"route": "media.download", "nth": 1, "fault": "truncate"},
        {"route": "runway.status", "nth": 1, "fault": "503"},
    ])
    state = await image_to_video(
        still_prompt=f"logs {uuid.uuid4().hex[:6]} @hero", motion_prompt="drift",
        reference_images=REF, image_credentials=_creds(SegmindCredentials, emu),
        video_credentials=_creds(RunwayCredentials, emu), storage=str(tmp_path),
        name="harbour", return_state=True,
    )
    assert state.is_completed()
    result = await state.aresult()
    flow_run_id = state.state_details.flow_run_id
    logs = await _logs(flow_run_id)
    messages = [m for _, m in logs]
    text = "\n".join(messages)

    # The resume, at WARNING, with its reason, once.
    resumes = [(lvl, m) for lvl, m in logs if "resuming with HTTP Range" in m]
    assert len(resumes) == 1, text
    assert resumes[0][0] == 30
    assert "RemoteProtocolError" in resumes[0][1]
    # The retried 503, at WARNING, with its reason, once.
    retries = [(lvl, m) for lvl, m in logs if "retrying in" in m]
    assert len(retries) == 1, text
    assert retries[0][0] == 30 and "http 503" in retries[0][1] and "runway GET" in retries[0][1]

    still_job, video_job = result.still.job_id, result.video.job_id
    # "Submitted ..." once per job (it was logged twice: engine and task).
    submitted = Counter(m for m in messages if m.startswith("Submitted "))
    assert len(submitted) == 2 and set(submitted.values()) == {1}, submitted
    assert any(still_job in m for m in submitted) and any(video_job in m for m in submitted)
    # Every state change once, and each job's last one is its success.
    changes = [m for m in messages if re.match(r"(segmind|runway) job \S+ is \S+$", m)]
    assert changes and len(changes) == len(set(changes)), changes
    for provider, job in (("segmind", still_job), ("runway", video_job)):
        own = [m for m in changes if m.startswith(f"{provider} job {job} is ")]
        assert own, changes
        assert own[-1].rsplit(" ", 1)[1].lower() in ("succeeded", "completed"), own
    # The wait's summary speaks of this wait, not of the job's age.
    assert sum("finished with 1 output(s) after a" in m for m in messages) == 2

    # Task runs named for what they do, read back through the API.
    names = sorted(run.name for run in await _task_runs(flow_run_id))
    assert names == sorted([
        "submit still 'harbour' on segmind", "submit video 'harbour' on runway",
    ]), names  # the waits and downloads run in the flow run: their lines above are its own


async def test_a_cached_job_is_no_latency_and_no_long_wait(emu):
    # A job submitted long ago (found in the submit cache, or resumed after a crash) and done
    # by now: the wait finds it at its first poll. That bounds nothing of the model's latency.
    book = LatencyBook()
    # Polled as the tests' blocks poll (the default schedule's first poll waits up to 15 s).
    fast = PollSchedule(interval=0.1, max_interval=0.5)
    async with GenerationClient(get_provider("segmind"), SecretStr("k"), emu.url,
                                latency=book, poll=fast) as client:
        generation = await client.submit(ImageRequest(prompt="old @hero", reference_images=REF))
        await client.wait(generation)  # done; the book learns this one
        key = latency_key(generation.provider, generation.base_url, generation.model,
                          generation.request)
        learned = book.snapshot()["|".join(key)]["events"]
        old = generation.model_copy(update={"submitted_at": utc_now() - timedelta(seconds=108)})
        result = await client.wait(old)
    assert result.outputs
    assert book.snapshot()["|".join(key)]["events"] == learned  # nothing learned from it
    assert book.snapshot()["|".join(key)]["in_flight"] == 0


async def test_an_unsaved_block_name_is_one_error_shape(emu, tmp_path):
    missing = f"segmind-credentials/never-saved-{uuid.uuid4().hex[:6]}"
    with pytest.raises(InvalidRequest) as chain:
        await image_to_video(still_prompt="x @hero", motion_prompt="y", reference_images=REF,
                             credentials=missing, storage=str(tmp_path))
    assert type(chain.value) is InvalidRequest
    assert chain.value.field == "credentials" and "not a saved block" in str(chain.value)

    with pytest.raises(InvalidRequest) as board:
        await storyboard(shots=[{"still_prompt": "x @hero", "reference_images": REF}],
                         credentials=missing, storage=str(tmp_path))
    assert type(board.value) is InvalidRequest
    assert board.value.field == "credentials" and "not a saved block" in str(board.value)

    # A shot's own block name: the same error, located (InvalidShot is an InvalidRequest).
    with pytest.raises(InvalidShot) as shot:
        await storyboard(shots=[{"still_prompt": "x @hero", "reference_images": REF,
                                 "credentials": missing}], storage=str(tmp_path))
    assert shot.value.field == "credentials" and "not a saved block" in str(shot.value)
    assert emu.stats()["segmind"]["total_submissions"] == 0


@pytest.mark.parametrize(
    ("parameters", "field", "allowed"),
    [
        ({"duration": "5s"}, "duration", "5"),
        ({"duration": 7}, "duration", "10"),
        ({"timeout": "soon"}, "timeout", "seconds"),
        ({"force": "maybe"}, "force", "True"),
        ({"preview": "webm"}, "preview", "gif"),
        ({"seed": "lucky"}, "seed", "4294967295"),
        ({"name": 5}, "name", "string"),
    ],
)
async def test_a_bad_flow_parameter_is_our_typed_error(emu, tmp_path, parameters, field, allowed):
    with pytest.raises(InvalidRequest) as info:
        await image_to_video(
            still_prompt="x @hero", motion_prompt="y", reference_images=REF,
            credentials=_creds(SegmindCredentials, emu), storage=str(tmp_path), **parameters,
        )
    assert info.value.field == field
    assert allowed in str(info.value.allowed), info.value
    assert emu.stats()["segmind"]["total_submissions"] == 0


async def test_storyboard_concurrency_is_checked_first(emu, tmp_path):
    with pytest.raises(InvalidRequest) as info:
        await storyboard(shots=[{"still_prompt": "x @hero", "reference_images": REF}],
                         credentials=_creds(SegmindCredentials, emu), storage=str(tmp_path),
                         concurrency="many")
    assert info.value.field == "concurrency"


async def test_a_download_failing_past_the_clients_retries_is_retried_in_the_flow_run(
    emu, tmp_path
):
    """The download has no task run of its own: the flow retries it as ``collect-generation``
    would (a WARNING in the flow run's log), and the output is stored; nothing is paid twice."""
    from prefect_runway import generate_image
    from prefect_runway.engine.config import RetryPolicy

    attempts = RetryPolicy().max_attempts  # the client's own, per call
    emu.set_faults(scripted=[{"route": "media.download", "nth": 1, "fault": "503",
                              "times": attempts}], retry_after=0)
    before = emu.stats()["segmind"]["total_submissions"]
    state = await generate_image(
        prompt=f"retried {uuid.uuid4().hex[:6]} @hero", reference_images=REF,
        credentials=_creds(SegmindCredentials, emu), storage=str(tmp_path), return_state=True,
    )
    assert state.is_completed()
    stored = await state.aresult()
    assert (tmp_path / stored.key).is_file()
    assert emu.stats()["segmind"]["total_submissions"] == before + 1
    logs = await _flow_run_logs(state.state_details.flow_run_id)
    retried = [log for log in logs if log.message.startswith("Collecting segmind job ")]
    assert len(retried) == 1, [log.message for log in logs]
    assert retried[0].level == 30 and retried[0].task_run_id is None
    assert stored.job_id in retried[0].message
    assert "trying again in 1 s (retry 1 of 2)" in retried[0].message
    runs = await _task_runs(state.state_details.flow_run_id)
    assert [run.name.split()[0] for run in runs] == ["submit"]


async def test_a_download_failing_every_retry_fails_the_flow_run_with_its_error(
    emu, tmp_path, monkeypatch
):
    from prefect_runway import generate_image
    from prefect_runway.engine.config import RetryPolicy
    from prefect_runway.errors import ProviderError
    from prefect_runway.flows import retries

    monkeypatch.setattr(retries, "COLLECT_RETRY_DELAYS", (0.2, 0.2))  # not 1 s, 10 s
    attempts = RetryPolicy().max_attempts
    emu.set_faults(scripted=[{"route": "media.download", "nth": 1, "fault": "503",
                              "times": 3 * attempts}], retry_after=0)
    before = emu.stats()["segmind"]["total_submissions"]
    state = await generate_image(
        prompt=f"lost {uuid.uuid4().hex[:6]} @hero", reference_images=REF,
        credentials=_creds(SegmindCredentials, emu), storage=str(tmp_path), return_state=True,
    )
    assert state.is_failed()
    with pytest.raises(ProviderError) as caught:
        await state.aresult()
    assert caught.value.retryable and caught.value.status_code == 503
    logs = await _flow_run_logs(state.state_details.flow_run_id)
    retried = [log.message for log in logs if log.message.startswith("Collecting segmind job ")]
    assert [m.rsplit("(", 1)[1] for m in retried] == ["retry 1 of 2)", "retry 2 of 2)"]
    assert emu.stats()["segmind"]["total_submissions"] == before + 1  # the retries paid nothing


async def test_collect_generation_is_one_task_run_in_a_flow_of_your_own(emu, tmp_path):
    from prefect import flow

    from prefect_runway.tasks import collect_generation, submit_generation

    credentials = _creds(SegmindCredentials, emu)

    @flow
    async def own_flow() -> Any:
        request = ImageRequest(prompt=f"own {uuid.uuid4().hex[:6]} @hero", reference_images=REF)
        job = await submit_generation(request, credentials, str(tmp_path), name="own")
        return await collect_generation(job, credentials, str(tmp_path), name="own")

    state = await own_flow(return_state=True)
    result, stored = await state.aresult()
    assert result.generation.job_id == stored[0].job_id
    assert (tmp_path / stored[0].key).is_file()
    runs = await _task_runs(state.state_details.flow_run_id)
    assert sorted(run.name for run in runs) == [
        "collect still 'own' on segmind", "submit still 'own' on segmind"]
    logs = await _flow_run_logs(state.state_details.flow_run_id)
    collect_id = next(run.id for run in runs if run.name.startswith("collect"))
    assert any(log.task_run_id == collect_id and log.message.startswith("Stored ")
               for log in logs)  # the download's lines are the collect task run's
