"""Latency-aware polling (prefect_runway.engine.polling) and how ``GenerationClient.wait`` uses it.

Nothing here reads a clock: schedules take ages as arguments, and the ``wait`` tests replace
``asyncio.sleep`` and ``time.monotonic`` inside the client with a fake clock that moves only
when the client sleeps, so every poll's timing is exact and reproducible.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from itertools import pairwise

import httpx
import pytest
from pydantic import SecretStr

import prefect_runway.engine.client as client_module
from prefect_runway.blocks import SegmindCredentials
from prefect_runway.engine import GenerationClient
from prefect_runway.engine.polling import (
    DEFAULT_PRIORS,
    LatencyBook,
    LatencyPrior,
    LatencyWindow,
    PollSchedule,
    latency_key,
)
from prefect_runway.errors import GenerationFailed, GenerationTimedOut
from prefect_runway.models import Generation
from prefect_runway.providers.segmind import SegmindProvider

PUBLIC = "https://api.segmind.com"
EMULATOR = "http://127.0.0.1:9999"
KEY = ("segmind", PUBLIC, "gen4_turbo/5s")
SCHEDULE = PollSchedule(interval=0.5, max_interval=15.0, poll_cost=0.03)
EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)


# ---- the schedule ------------------------------------------------------------------------------


def test_first_poll_waits_for_the_expected_minimum_but_never_past_the_cap():
    window = LatencyWindow(20.0, 40.0)
    assert SCHEDULE.next_delay(0.0, window) == 15.0  # the cap
    assert SCHEDULE.next_delay(15.0, window) == 5.0  # then exactly the minimum
    assert PollSchedule(interval=0.5, max_interval=30.0).next_delay(0.0, window) == 20.0


def test_intervals_tighten_as_completion_nears_down_to_the_floor():
    window = LatencyWindow(20.0, 40.0)
    ages = [20.0, 25.0, 30.0, 35.0, 38.0, 39.9]
    delays = [SCHEDULE.next_delay(age, window) for age in ages]
    assert delays == sorted(delays, reverse=True)
    assert delays[0] == pytest.approx(math.sqrt(2 * 0.03 * 20))
    assert delays[2] == pytest.approx(math.sqrt(2 * 0.03 * 10))
    assert delays[-1] == 0.5  # the block's poll_interval_seconds is the floor


def test_an_overdue_job_backs_off_again_from_the_floor_to_the_cap():
    window = LatencyWindow(20.0, 40.0)
    assert SCHEDULE.next_delay(40.0, window) == 0.5
    assert SCHEDULE.next_delay(50.0, window) == pytest.approx(0.5 + 0.3 * 10)
    assert SCHEDULE.next_delay(400.0, window) == 15.0


def test_a_prior_window_polls_at_a_constant_pace_between_its_bounds():
    prior = LatencyWindow(15.0, 120.0, "prior")
    expected = math.sqrt(2 * 0.03 * 105 / -math.log(0.05))
    assert SCHEDULE.next_delay(15.0, prior) == pytest.approx(expected)
    assert SCHEDULE.next_delay(100.0, prior) == pytest.approx(expected)


def test_a_smaller_poll_cost_polls_more_often():
    window = LatencyWindow(20.0, 40.0)
    eager = PollSchedule(interval=0.1, poll_cost=0.005)
    assert eager.next_delay(25.0, window) < SCHEDULE.next_delay(25.0, window)


def test_classic_delays_are_unchanged():
    schedule = PollSchedule(first_delay=0.5, interval=1.0, max_interval=3.0, multiplier=2.0)
    gen = schedule.delays()
    assert [next(gen) for _ in range(6)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


def test_block_settings_bound_the_schedule():
    block = SegmindCredentials(api_key=SecretStr("k"), poll_interval_seconds=2.0,
                               max_poll_interval_seconds=1.0, adaptive_polling=False)
    schedule = block.poll_schedule()
    assert (schedule.interval, schedule.max_interval, schedule.adaptive) == (2.0, 2.0, False)
    default = SegmindCredentials(api_key=SecretStr("k")).poll_schedule()
    assert (default.interval, default.max_interval, default.adaptive) == (0.5, 15.0, True)


# ---- the latency book ---------------------------------------------------------------------------


def test_latency_is_learned_per_model_and_video_duration():
    assert latency_key("segmind", PUBLIC + "/", "gen4_turbo", {"duration": "10"}) == (
        "segmind", PUBLIC, "gen4_turbo/10s")
    assert latency_key("runway", PUBLIC, "gen4_image", {"ratio": "1280:720"})[2] == "gen4_image"


def test_priors_apply_to_the_public_api_only():
    book = LatencyBook()
    book.track(KEY, public=True)
    book.track(("segmind", EMULATOR, "gen4_turbo/5s"), public=False)
    prior = DEFAULT_PRIORS["gen4_turbo"]
    assert book.window(KEY) == LatencyWindow(prior.minimum, prior.maximum, "prior")
    assert book.window(("segmind", EMULATOR, "gen4_turbo/5s")) is None


def test_an_endpoint_can_be_given_a_prior():
    book = LatencyBook()
    key = ("runway", EMULATOR, "gen4_image")
    book.track(key, public=False)
    book.set_prior("gen4_image", LatencyPrior(2.0, 9.0), base_url=EMULATOR)
    assert book.window(key) == LatencyWindow(2.0, 9.0, "prior")
    book.set_prior("gen4_image", None, base_url=EMULATOR)
    assert book.window(key) is None


def test_a_prior_holds_until_enough_jobs_agree_with_it():
    book = LatencyBook(min_events=3)
    for latency in (30.0, 40.0):
        book.observe(KEY, latency, public=True)
    assert book.window(KEY).source == "prior"
    book.observe(KEY, 50.0)
    window = book.window(KEY)
    assert (window.source, window.low, window.high) == ("observed", 30.0, 50.0)


def test_one_job_that_contradicts_the_prior_replaces_it_at_once():
    """The emulator in the tests finishes jobs in 0.3 s: a prior must not slow them down."""
    book = LatencyBook()
    book.observe(KEY, 0.3, public=True)
    window = book.window(KEY)
    assert (window.source, window.low, window.high) == ("observed", 0.3, 0.3)


def test_high_is_the_95th_percentile_of_finished_jobs():
    book = LatencyBook()
    for latency in range(1, 101):
        book.observe(("runway", EMULATOR, "gen4_image"), float(latency))
    window = book.window(("runway", EMULATOR, "gen4_image"))
    assert (window.low, window.high) == (1.0, 95.0)


def test_a_batch_in_flight_is_not_mistaken_for_its_early_finishers():
    """50 jobs spread evenly over 20-40 s, seen at age 25: 12 finished, 38 still running.

    The finished ones alone say "all done by 25 s"; with the 38 running ones as censored
    observations the estimate extrapolates the survival curve to about 40 s.
    """
    book = LatencyBook()
    key = ("segmind", EMULATOR, "gen4_turbo/5s")
    tracks = [book.track(key, public=False) for _ in range(50)]
    latencies = [20 + 20 * (i + 0.5) / 50 for i in range(50)]
    for track, latency in zip(tracks, latencies, strict=True):
        if latency < 25:
            track.pending(latency - 0.2)
            track.finished(latency + 0.2)
        else:
            track.pending(25.0)
    window = book.window(key)
    assert window.low == pytest.approx(20.2)
    assert 37.0 < window.high < 43.0


def test_the_bracket_midpoint_is_recorded():
    book = LatencyBook()
    key = ("segmind", EMULATOR, "gen4_image")
    track = book.track(key, public=False)
    track.pending(9.0)
    track.finished(11.0)
    assert book.window(key).low == 10.0


def test_a_job_found_done_at_its_first_poll_teaches_only_when_it_came_early():
    book = LatencyBook()
    key = ("segmind", EMULATOR, "gen4_image")
    for latency in (10.0, 12.0):
        book.observe(key, latency)
    # Found done at the expected minimum: jobs can be faster than thought.
    book.track(key, public=False).finished(10.0)
    assert book.window(key).low == pytest.approx(9.0)
    # Found done long after (a resumed wait): it says nothing new.
    book.track(key, public=False).finished(600.0)
    assert book.window(key).low == pytest.approx(9.0)
    assert book.snapshot()["segmind|" + EMULATOR + "|gen4_image"]["events"] == 3


def test_a_failed_or_abandoned_wait_records_nothing():
    book = LatencyBook()
    key = ("segmind", EMULATOR, "gen4_image")
    track = book.track(key, public=False)
    track.pending(3.0)
    track.close()
    track.finished(4.0)  # after close: ignored
    assert book.window(key) is None
    assert book.snapshot()["segmind|" + EMULATOR + "|gen4_image"]["in_flight"] == 0


def test_memory_is_bounded():
    book = LatencyBook(memory=10)
    key = ("segmind", EMULATOR, "gen4_image")
    for latency in range(100):
        book.observe(key, float(latency))
    assert book.window(key).low == 90.0


# ---- wait() on a fake clock ----------------------------------------------------------------------


class FakeClock:
    """``asyncio.sleep``, ``time.monotonic`` and the wall clock for the client: only sleeping
    moves time (the wall clock starts at ``EPOCH``)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return EPOCH + timedelta(seconds=self.now - 1000.0)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()

    class FakeTime:
        monotonic = staticmethod(fake.monotonic)
        time = staticmethod(lambda: fake.now)

    class FakeAsyncio:
        sleep = staticmethod(fake.sleep)
        iscoroutine = staticmethod(__import__("asyncio").iscoroutine)

    monkeypatch.setattr(client_module, "time", FakeTime)
    monkeypatch.setattr(client_module, "asyncio", FakeAsyncio)
    monkeypatch.setattr(client_module, "utc_now", fake.wall)
    return fake


def _job(base: str = PUBLIC, submitted_ago: float = 0.0) -> Generation:
    return Generation(
        provider="segmind", model="gen4_turbo", kind="video", job_id="job-1", fingerprint="f" * 64,
        base_url=base, status_url=f"{base}/v2/requests/job-1/status",
        result_url=f"{base}/v2/requests/job-1", request={"duration": 5},
        submitted_at=EPOCH - timedelta(seconds=submitted_ago),
    )


def _provider_finishing_at(clock: FakeClock, latency: float, state: str = "COMPLETED"):
    polls: list[float] = []
    started = clock.now

    def handler(request: httpx.Request) -> httpx.Response:
        age = clock.now - started
        if request.url.path.endswith("/status"):
            polls.append(round(age, 6))
            done = age >= latency
            body = {"status": state if done else "PROCESSING"}
            if done and state == "FAILED":
                return httpx.Response(422, json={**body, "error": "blocked"})
            return httpx.Response(200, json=body)
        return httpx.Response(200, json={"status": "COMPLETED", "output": "https://cdn.example/v.mp4"})

    return handler, polls


async def _wait(handler, book: LatencyBook, job: Generation, **kw):
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    client = GenerationClient(SegmindProvider(), SecretStr("k"), job.base_url, http=http,
                          poll=kw.pop("poll", SCHEDULE), latency=book)
    async with client:
        try:
            return await client.wait(job, **kw)
        finally:
            await http.aclose()


async def test_wait_polls_a_cold_public_model_from_its_prior(clock):
    handler, polls = _provider_finishing_at(clock, 31.0)
    book = LatencyBook()
    await _wait(handler, book, _job())
    pace = math.sqrt(2 * 0.03 * 105 / -math.log(0.05))
    assert polls[:2] == [15.0, pytest.approx(15.0 + pace)]
    assert all(b - a == pytest.approx(pace) for a, b in pairwise(polls[1:]))
    assert polls[-1] >= 31.0 > polls[-2]
    assert book.snapshot()["|".join(KEY)]["events"] == 1


async def test_wait_learns_and_the_next_job_polls_later_and_tighter(clock):
    book = LatencyBook()
    for latency in (20.0, 25.0, 30.0, 35.0, 40.0):
        book.observe(KEY, latency, public=True)
    handler, polls = _provider_finishing_at(clock, 33.0)
    await _wait(handler, book, _job())
    assert polls[:2] == [15.0, 20.0]  # capped at 15 s, then the minimum seen
    gaps = [b - a for a, b in pairwise(polls[1:])]
    assert gaps == sorted(gaps, reverse=True)  # tighter as the maximum nears
    assert polls[-1] - 33.0 < gaps[-1]


async def test_a_resumed_wait_counts_the_age_from_submission(clock):
    book = LatencyBook()
    for latency in (20.0, 40.0, 30.0, 25.0, 35.0):
        book.observe(KEY, latency, public=True)
    handler, polls = _provider_finishing_at(clock, 0.0)  # done by the time we ask
    await _wait(handler, book, _job(submitted_ago=600.0))
    assert clock.sleeps == [15.0]  # overdue: from the floor, capped
    assert book.snapshot()["|".join(KEY)]["events"] == 5  # nothing learned from it


async def test_an_unknown_endpoint_starts_on_the_classic_schedule(clock):
    handler, polls = _provider_finishing_at(clock, 2.0)
    schedule = PollSchedule(interval=0.5, max_interval=15.0, multiplier=2.0)
    book = LatencyBook()
    await _wait(handler, book, _job(base=EMULATOR), poll=schedule)
    assert clock.sleeps[:3] == [0.5, 0.5, 1.0]
    window = book.window(("segmind", EMULATOR, "gen4_turbo/5s"))
    assert window.low == pytest.approx((1.0 + 2.0) / 2)


async def test_adaptive_off_is_the_classic_schedule_and_learns_nothing(clock):
    handler, _ = _provider_finishing_at(clock, 3.0)
    schedule = PollSchedule(interval=1.0, max_interval=15.0, multiplier=2.0, adaptive=False)
    book = LatencyBook()
    await _wait(handler, book, _job(), poll=schedule)
    assert clock.sleeps == [1.0, 1.0, 2.0]
    assert book.snapshot() == {}


async def test_the_deadline_still_bounds_an_adaptive_wait(clock):
    handler, polls = _provider_finishing_at(clock, 1000.0)
    with pytest.raises(GenerationTimedOut) as info:
        await _wait(handler, LatencyBook(), _job(), timeout=20.0)
    assert info.value.job_id == "job-1"
    assert sum(clock.sleeps) == pytest.approx(20.0)


async def test_a_failed_job_teaches_no_latency(clock):
    handler, _ = _provider_finishing_at(clock, 16.0, state="FAILED")
    book = LatencyBook()
    with pytest.raises(GenerationFailed):
        await _wait(handler, book, _job())
    assert book.snapshot()["|".join(KEY)] == {
        "events": 0, "in_flight": 0, "prior": [15.0, 120.0], "window": [15.0, 120.0, "prior"],
    }
