"""The engine's messages: routed to the caller's logger, progress at most every so often,
retry reasons; the flows' parameter checks; task run names; a resumed wait learns nothing."""

from __future__ import annotations

import logging

import httpx
import pytest

from prefect_runway.engine.events import EngineLogger, log_to
from prefect_runway.engine.polling import LatencyBook, LatencyWindow
from prefect_runway.engine.progress import ProgressLine, describe_progress
from prefect_runway.engine.retry import retry_reason
from prefect_runway.errors import InvalidRequest
from prefect_runway.flows.parameters import check_parameters
from prefect_runway.models import Generation, JobState, StatusUpdate
from prefect_runway.tasks.generation import _submit_run_name
from prefect_runway.tasks.runs import describe_job
from prefect_runway.tasks.runs import generation_run_name as _generation_run_name


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _logger(name: str) -> tuple[logging.Logger, _Collect]:
    logger = logging.getLogger(name)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    handler = _Collect()
    logger.addHandler(handler)
    return logger, handler


def test_engine_logger_writes_to_the_target_inside_log_to_only():
    fallback, own = _logger("prefect_runway.engine.test-events")
    target, run = _logger("test-events-run")
    engine = EngineLogger("prefect_runway.engine.test-events")
    engine.info("outside %d", 1)
    with log_to(target):
        engine.warning("inside %s", "yes")
        with log_to(None):
            engine.info("nested none")
    engine.info("after")
    assert [r.getMessage() for r in own.records] == ["outside 1", "nested none", "after"]
    assert [(r.levelno, r.getMessage()) for r in run.records] == [(30, "inside yes")]


def _generation() -> Generation:
    return Generation(provider="runway", model="gen4_turbo", kind="video", job_id="job-1",
                      fingerprint="f" * 64, base_url="http://127.0.0.1:1/v1")


def test_progress_line_at_most_every_interval_and_never_when_done():
    now = [0.0]
    target, run = _logger("test-progress-run")
    line = ProgressLine(_generation(), every=30.0, clock=lambda: now[0])
    running = StatusUpdate(state=JobState.RUNNING, raw_status="RUNNING", progress=0.45)
    window = LatencyWindow(20.0, 60.0)
    with log_to(target):
        seen = []
        for t in (1.0, 10.0, 29.9, 30.0, 31.0, 59.0, 60.5, 61.0):
            now[0] = t
            seen.append(line.seen(running, t, window))
        now[0] = 200.0
        seen.append(line.seen(StatusUpdate(state=JobState.SUCCEEDED), 200.0, window))
    assert seen == [False, False, False, True, False, False, True, False, False]
    assert len(run.records) == 2
    assert run.records[0].getMessage() == (
        "runway job job-1: RUNNING, 45% done (provider), 30 s since submit, "
        "usually done in 20-60 s"
    )
    assert "past the usual 60 s" in run.records[1].getMessage()


def test_progress_without_provider_progress_or_window():
    update = StatusUpdate(state=JobState.PENDING)
    assert describe_progress(update, 12.4, None) == "pending, 12 s since submit"
    throttled = StatusUpdate(state=JobState.PENDING, raw_status="THROTTLED", throttled=True)
    assert "throttled" in describe_progress(throttled, 5, None)


def test_retry_reason():
    answer = httpx.Response(429, headers={"retry-after": "2"})
    assert retry_reason(answer) == "http 429 (Retry-After 2)"
    assert retry_reason(httpx.Response(502)) == "http 502"
    assert retry_reason(httpx.ReadTimeout("slow")) == "ReadTimeout"


def test_a_resumed_wait_found_done_records_no_latency():
    book = LatencyBook()
    key = ("segmind", "http://emu", "gen4_image")
    track = book.track(key, public=False)
    track.resumed = True
    track.finished(108.0)
    assert book.snapshot()["|".join(key)]["events"] == 0
    # A resumed wait that saw the job running still brackets its latency.
    track = book.track(key, public=False)
    track.resumed = True
    track.pending(100.0)
    track.finished(104.0)
    assert book.snapshot()["|".join(key)]["events"] == 1
    # A fresh wait found done at its first poll, nothing known: half the bound, as before.
    book.track(key, public=False).finished(4.0)
    assert book.snapshot()["|".join(key)]["events"] == 2


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        ({"duration": "5s"}, "duration"),
        ({"duration": 5.5}, "duration"),
        ({"duration": True}, "duration"),
        ({"duration": 3, "video_model": "gen3a_turbo"}, "duration"),
        ({"seed": -1}, "seed"),
        ({"seed": "x"}, "seed"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": "inf"}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"force": "perhaps"}, "force"),
        ({"force": 2}, "force"),
        ({"preview": "mp4"}, "preview"),
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": "four"}, "concurrency"),
        ({"key_template": 3}, "key_template"),
        ({"still_prompt": ["a"]}, "still_prompt"),
    ],
)
def test_check_parameters_names_the_field(parameters, field):
    with pytest.raises(InvalidRequest) as info:
        check_parameters(parameters)
    assert info.value.field == field
    assert info.value.allowed


@pytest.mark.parametrize(
    "parameters",
    [
        {},
        {"duration": 5, "seed": 0, "timeout": 30, "force": False, "preview": None},
        {"duration": "10", "timeout": "2.5", "force": "true", "concurrency": "3"},
        {"duration": 10.0, "seed": None, "timeout": None, "preview": "png", "name": "harbour"},
    ],
)
def test_check_parameters_lets_good_values_through(parameters):
    check_parameters(parameters)


def test_task_run_names_say_what_the_task_does():
    from pydantic import SecretStr

    from prefect_runway import SegmindCredentials

    assert describe_job("image", "harbour", "segmind") == "still 'harbour' on segmind"
    assert describe_job("video", None, "runway") == "video on runway"
    assert describe_job("video", "harbour", "runway", "magnific_video_upscaler_creative") == (
        "finish 'harbour' on runway")
    assert describe_job("video", "harbour", "runway", "gen4_turbo") == "video 'harbour' on runway"
    creds = SegmindCredentials(api_key=SecretStr("k"))
    generation = _generation()
    collect = _generation_run_name("collect", "generation")
    assert collect({"generation": generation, "credentials": creds, "name": "harbour"}) == (
        "collect video 'harbour' on runway"
    )

    class _Prepared:
        kind = "image"

    assert _submit_run_name({"request": _Prepared(), "credentials": creds}) == (
        "submit still on segmind"
    )
