"""The shared request-rate budget (prefect_runway.ratelimit), on a fake clock."""

from __future__ import annotations

import threading
from itertools import pairwise

import pytest
from pydantic import SecretStr

from prefect_runway import ratelimit
from prefect_runway.ratelimit import RateLimiter, limiter_for

KEY = "sk-ratelimit-SECRET-0123456789"


class FakeTime:
    """Stands in for the ``time`` module inside ratelimit: a clock that moves only when told."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(ratelimit, "time", fake)
    return fake


@pytest.fixture
def registry(monkeypatch) -> dict:
    fresh: dict = {}
    monkeypatch.setattr(ratelimit, "_registry", fresh)
    return fresh


def test_fresh_limiter_lets_a_burst_of_20_through_at_once(clock):
    limiter = RateLimiter(rate=20)
    waits = [limiter.reserve() for _ in range(20)]
    assert waits == [0.0] * 20


def test_burst_of_20_then_50ms_spacing_after_a_quiet_spell(clock):
    limiter = RateLimiter(rate=20)
    clock.now += 5.0  # quiet spell
    waits = [limiter.reserve() for _ in range(25)]
    assert waits[:20] == pytest.approx([0.0] * 20, abs=1e-9)
    assert waits[20:] == pytest.approx([0.05, 0.10, 0.15, 0.20, 0.25], abs=1e-9)


def test_spacing_recovers_as_time_passes(clock):
    limiter = RateLimiter(rate=20)
    clock.now += 5.0
    for _ in range(20):
        limiter.reserve()
    assert limiter.reserve() == pytest.approx(0.05)
    clock.now += 0.05  # the reserved slot arrives
    assert limiter.reserve() == pytest.approx(0.05)
    clock.now += 10.0  # a long quiet spell refills the whole burst, not more
    waits = [limiter.reserve() for _ in range(21)]
    assert waits[:20] == pytest.approx([0.0] * 20, abs=1e-9)
    assert waits[20] == pytest.approx(0.05)


def test_sustained_rate_is_the_configured_rate(clock):
    limiter = RateLimiter(rate=20)
    clock.now += 5.0
    waits = [limiter.reserve() for _ in range(220)]
    # after the burst, request n (0-based) waits (n - 19) * 50 ms
    assert waits[-1] == pytest.approx((219 - 19) * 0.05)
    assert all(b >= a for a, b in pairwise(waits))


def test_explicit_burst(clock):
    limiter = RateLimiter(rate=10, burst=3)
    clock.now += 5.0
    assert [round(limiter.reserve(), 6) for _ in range(5)] == [0.0, 0.0, 0.0, 0.1, 0.2]


def test_rate_must_be_positive():
    for rate in (0, -1):
        with pytest.raises(ValueError):
            RateLimiter(rate=rate)


def test_reserve_is_thread_safe(clock):
    limiter = RateLimiter(rate=20)
    clock.now += 5.0
    waits: list[float] = []
    lock = threading.Lock()

    def worker():
        for _ in range(25):
            w = limiter.reserve()
            with lock:
                waits.append(w)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 100 reservations hand out 100 distinct slots: 20 free, then 80 spaced 50 ms apart.
    assert sorted(round(w, 6) for w in waits) == sorted(
        [0.0] * 20 + [round(0.05 * i, 6) for i in range(1, 81)]
    )


async def test_acquire_and_context_manager():
    limiter = RateLimiter(rate=1000)
    await limiter.acquire()
    async with limiter():
        pass


# ---- limiter_for -----------------------------------------------------------------------------


def test_limiter_for_returns_the_same_object_for_the_same_credentials(registry):
    a = limiter_for("segmind", "https://api.segmind.com", SecretStr(KEY), 5)
    b = limiter_for("segmind", "https://api.segmind.com", SecretStr(KEY), 5)
    assert a is b
    assert isinstance(a, RateLimiter) and a.rate == 5


def test_limiter_for_separates_keys_providers_and_base_urls(registry):
    a = limiter_for("segmind", "https://api.segmind.com", SecretStr(KEY), 5)
    assert limiter_for("segmind", "https://api.segmind.com", SecretStr(KEY + "x"), 5) is not a
    assert limiter_for("aimlapi", "https://api.segmind.com", SecretStr(KEY), 5) is not a
    assert limiter_for("segmind", "http://127.0.0.1:9", SecretStr(KEY), 5) is not a


def test_limiter_for_none_rate_is_none(registry):
    assert limiter_for("segmind", "https://api.segmind.com", SecretStr(KEY), None) is None
    assert registry == {}


def test_limiter_for_is_shared_across_threads(registry):
    found: list = []

    def get():
        found.append(limiter_for("segmind", "https://api.segmind.com", SecretStr(KEY), 7))

    threads = [threading.Thread(target=get) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(x) for x in found}) == 1


def test_secret_appears_in_no_repr(registry):
    secret = SecretStr(KEY)
    limiter = limiter_for("segmind", "https://api.segmind.com", secret, 5)
    for thing in (limiter, vars(limiter), registry, list(registry), ratelimit._registry, secret):
        assert KEY not in repr(thing)
        assert KEY not in str(thing)
    # the registry does not even keep the key's text in its own keys
    assert all(KEY not in part for k in registry for part in k)
