"""backend.py: job phases, concurrency, expiry, cancellation and accounting, on a manual clock."""

from __future__ import annotations

import time

import pytest

from prefect_runway.emulator import Backend, EmulatorConfig, ManualClock, Phase
from prefect_runway.emulator.backend import (
    InsufficientCredits,
    JobNotFound,
    JobSpec,
    MediaForbidden,
    MediaNotFound,
    request_fingerprint,
)

pytestmark = pytest.mark.timeout(60)

STILL = JobSpec(kind="still", prompt="a tree", seed=1, width=64, height=64)


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def backend(clock):
    backend = Backend(EmulatorConfig(latency=10.0, runway_concurrency=2), clock=clock)
    yield backend
    backend.close()


def media_made(backend: Backend, job, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not job.media_done:
        assert time.monotonic() < deadline, "media not made in time"
        time.sleep(0.01)


def phase(backend: Backend, provider: str, job) -> Phase:
    return backend.lookup(provider, job.id).phase


def test_phases_follow_the_clock(backend, clock):
    job = backend.submit("segmind", "runway-gen4-image", "k", {"promptText": "a tree"}, STILL)
    media_made(backend, job)
    assert phase(backend, "segmind", job) is Phase.QUEUED
    clock.advance(2.5)  # past the queued 20 %
    view = backend.lookup("segmind", job.id)
    assert view.phase is Phase.RUNNING
    assert 0 < view.progress < 1
    clock.advance(7.5)
    view = backend.lookup("segmind", job.id)
    assert view.phase is Phase.SUCCEEDED
    assert view.inference_time == pytest.approx(8.0)


def test_fail_marker_fails_at_completion(backend, clock):
    spec = JobSpec(kind="still", prompt="a tree [fail]", seed=1, width=64, height=64)
    job = backend.submit("runway", "gen4_image", "k", {}, spec)
    assert phase(backend, "runway", job) is Phase.QUEUED
    clock.advance(10)
    view = backend.lookup("runway", job.id)
    assert view.phase is Phase.FAILED
    assert view.failure.code == "fail_marker"
    assert job.media_ids == []


def test_concurrency_throttles_fifo_and_starts_when_a_slot_frees(backend, clock):
    jobs = [backend.submit("runway", "gen4_image", "k", {"n": n}, STILL) for n in range(4)]
    other_key = backend.submit("runway", "gen4_image", "other", {}, STILL)
    phases = [phase(backend, "runway", job) for job in jobs]
    assert phases == [Phase.QUEUED, Phase.QUEUED, Phase.WAITING, Phase.WAITING]
    assert phase(backend, "runway", other_key) is Phase.QUEUED  # limits are per key
    clock.advance(10)  # the first two end exactly now; the next two start at t=10
    for job in jobs:
        media_made(backend, job)
    phases = [phase(backend, "runway", job) for job in jobs]
    assert phases == [Phase.SUCCEEDED, Phase.SUCCEEDED, Phase.QUEUED, Phase.QUEUED]
    assert jobs[2].started_at == pytest.approx(10)
    clock.advance(10)
    assert [phase(backend, "runway", job) for job in jobs] == [Phase.SUCCEEDED] * 4


def test_cancelling_a_running_job_frees_its_slot(backend, clock):
    first, second, third = (
        backend.submit("runway", "gen4_image", "k", {"n": n}, STILL) for n in range(3)
    )
    assert phase(backend, "runway", third) is Phase.WAITING
    clock.advance(3)
    assert backend.cancel("runway", first.id) == "cancelled"
    assert phase(backend, "runway", first) is Phase.CANCELLED
    assert phase(backend, "runway", third) is Phase.QUEUED
    assert third.started_at == pytest.approx(3)
    # a finished (here: cancelled) job is deleted by a second cancel
    assert backend.cancel("runway", first.id) == "deleted"
    with pytest.raises(JobNotFound):
        backend.lookup("runway", first.id)
    assert phase(backend, "runway", second) is Phase.RUNNING


def test_cancelling_a_waiting_job_removes_it_from_the_queue(backend, clock):
    jobs = [backend.submit("runway", "gen4_image", "k", {"n": n}, STILL) for n in range(4)]
    backend.cancel("runway", jobs[2].id)
    clock.advance(10)
    assert phase(backend, "runway", jobs[3]) is Phase.QUEUED
    assert jobs[3].started_at == pytest.approx(10)


def test_segmind_jobs_expire(backend, clock):
    backend.configure(expiry=60)
    job = backend.submit("segmind", "runway-gen4-image", "k", {}, STILL)
    media_made(backend, job)
    clock.advance(59)
    assert phase(backend, "segmind", job) is Phase.SUCCEEDED
    clock.advance(1)
    with pytest.raises(JobNotFound):
        backend.lookup("segmind", job.id)
    with pytest.raises(MediaNotFound):
        backend.media_for_download(job.media_ids[0], "")


def test_signed_urls_are_fresh_and_expire(backend, clock):
    backend.configure(output_url_ttl=100)
    spec = JobSpec(kind="still", prompt="p", seed=1, width=64, height=64, signed_outputs=True)
    job = backend.submit("runway", "gen4_image", "k", {}, spec)
    media_made(backend, job)
    clock.advance(10)
    media_id = job.media_ids[0]
    first = backend.media_url("http://127.0.0.1:1", media_id, signed=True)
    second = backend.media_url("http://127.0.0.1:1", media_id, signed=True)
    assert first != second
    query = first.split("?", 1)[1]
    assert backend.media_for_download(media_id, query).data
    with pytest.raises(MediaForbidden):
        backend.media_for_download(media_id, "")
    with pytest.raises(MediaForbidden):
        backend.media_for_download(media_id, query.replace("sig=", "sig=0"))
    clock.advance(100)
    with pytest.raises(MediaForbidden):
        backend.media_for_download(media_id, query)
    fresh = backend.media_url("http://127.0.0.1:1", media_id, signed=True).split("?", 1)[1]
    assert backend.media_for_download(media_id, fresh).data


def test_credits_run_out(backend):
    backend.configure(credits=12)
    video = JobSpec(kind="video", prompt="p", seed=1, width=64, height=64, duration=5,
                    image="data:,")
    with pytest.raises(InsufficientCredits):
        backend.submit("runway", "gen4_turbo", "k", {}, video)  # 25 credits
    backend.submit("runway", "gen4_image", "k", {}, STILL)  # 5
    backend.submit("runway", "gen4_image", "k", {}, STILL)  # 10
    with pytest.raises(InsufficientCredits):
        backend.submit("runway", "gen4_image", "k", {}, STILL)
    stats = backend.stats()["runway"]
    assert stats["credits_used"] == 10
    assert stats["credits_remaining"] == 2
    assert stats["credit_refusals"] == 2
    assert backend.stats()["segmind"]["credits_remaining"] == 12  # accounts are per provider
    backend.submit("runway", "gen4_image", "other-key", {}, STILL)  # and per key
    assert backend.balance("runway", "other-key") == 7


def test_stats_count_billable_submissions_by_fingerprint(backend):
    body = {"promptText": "a tree", "ratio": "1280:720"}
    reordered = {"ratio": "1280:720", "promptText": "a tree"}
    backend.submit("segmind", "runway-gen4-image", "k", body, STILL)
    backend.submit("segmind", "runway-gen4-image", "k", reordered, STILL)
    backend.submit("segmind", "runway-gen4-image", "k", {"promptText": "other"}, STILL)
    stats = backend.stats()["segmind"]
    fingerprint = request_fingerprint("runway-gen4-image", body)
    assert stats["billable"][fingerprint] == 2
    assert stats["duplicate_submissions"] == 1
    assert stats["submissions"] == {"runway-gen4-image": 3}
    backend.reset()
    assert backend.stats()["segmind"]["total_submissions"] == 0


def test_latency_range_is_seeded(clock):
    config = EmulatorConfig(latency_range=(20, 40), seed=5)
    latencies = []
    for _ in range(2):
        backend = Backend(config, clock=clock)
        jobs = [backend.submit("segmind", "s", "k", {}, STILL) for _ in range(5)]
        latencies.append([job.latency for job in jobs])
        backend.close()
    assert latencies[0] == latencies[1]
    assert all(20 <= value <= 40 for value in latencies[0])
    assert len(set(latencies[0])) == 5


def test_daily_quota_is_a_rolling_window(backend, clock):
    from prefect_runway.emulator.backend import QuotaExceeded

    backend.configure(daily_limits={"gen4_image": 2})
    backend.submit("runway", "gen4_image", "k", {}, STILL)
    clock.advance(3600)
    backend.submit("runway", "gen4_image", "k", {}, STILL)
    with pytest.raises(QuotaExceeded):
        backend.submit("runway", "gen4_image", "k", {}, STILL)
    backend.submit("runway", "gen4_image", "other", {}, STILL)  # per key
    backend.submit("runway", "gen4_image_turbo", "k", {}, STILL)  # per model
    clock.advance(86_400 - 3600 + 1)  # the first one left the window
    backend.submit("runway", "gen4_image", "k", {}, STILL)
    with pytest.raises(QuotaExceeded):
        backend.submit("runway", "gen4_image", "k", {}, STILL)
    assert backend.daily_generations("runway", "k") == {"gen4_image": 2, "gen4_image_turbo": 1}
    assert backend.stats()["runway"]["quota_refusals"] == 2


def test_refunds_on_failure_and_cancel_but_not_input_safety(backend, clock):
    backend.configure(credits=100)
    internal = backend.submit("runway", "gen4_image", "k", {}, JobSpec(
        kind="still", prompt="[internal]", seed=1, width=1280, height=720))
    unsafe = backend.submit("runway", "gen4_image", "k", {}, JobSpec(
        kind="still", prompt="[unsafe-input]", seed=1, width=1280, height=720))
    cancelled = backend.submit("runway", "gen4_image", "k", {}, JobSpec(
        kind="still", prompt="ok", seed=1, width=1920, height=1080))
    assert backend.balance("runway", "k") == 100 - 5 - 5 - 8
    backend.cancel("runway", cancelled.id)
    assert backend.balance("runway", "k") == 100 - 5 - 5
    clock.advance(11)  # both failures are now terminal
    assert backend.balance("runway", "k") == 100 - 5  # input safety stays charged
    charges = {c["job_id"]: c for c in backend.charges()}
    assert charges[internal.id]["refunded"] and charges[cancelled.id]["charged"] == 0
    assert charges[unsafe.id]["charged"] == 5 and charges[unsafe.id]["phase"] == "failed"
