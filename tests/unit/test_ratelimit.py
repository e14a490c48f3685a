"""The shared request-rate budget (prefect_runway.engine.ratelimit), on a fake clock."""

from __future__ import annotations

import asyncio
import threading
from itertools import pairwise

import pytest
from pydantic import SecretStr

from prefect_runway.engine import ratelimit
from prefect_runway.engine.ratelimit import RateLimiter, limiter_for

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


def _drain(limiter: RateLimiter, clock: FakeTime, n: int) -> list[float]:
    """Send n requests as fast as the limiter allows; return each one's send time."""
    sent = []
    for _ in range(n):
        while (wait := limiter.try_take()) > 0:
            clock.now += wait
        sent.append(clock.now)
    return sent


def test_fresh_limiter_lets_a_burst_of_20_through_at_once(clock):
    limiter = RateLimiter(rate=20, burst=20)
    assert [limiter.try_take() for _ in range(20)] == [0.0] * 20
    assert limiter.try_take() == pytest.approx(0.05)


def test_burst_of_20_then_50ms_spacing(clock):
    limiter = RateLimiter(rate=20, burst=20)
    start = clock.now
    sent = _drain(limiter, clock, 25)
    assert sent[:20] == [start] * 20
    assert [t - start for t in sent[20:]] == pytest.approx([0.05, 0.10, 0.15, 0.20, 0.25])


def test_a_wait_does_not_take_a_token(clock):
    limiter = RateLimiter(rate=20, burst=20)
    for _ in range(20):
        limiter.try_take()
    assert limiter.try_take() == pytest.approx(0.05)
    assert limiter.try_take() == pytest.approx(0.05)  # asking again reserves nothing
    clock.now += 0.05
    assert limiter.try_take() == 0.0


def test_a_long_quiet_spell_refills_the_burst_and_no_more(clock):
    limiter = RateLimiter(rate=20, burst=20)
    _drain(limiter, clock, 40)
    clock.now += 10.0
    assert [limiter.try_take() for _ in range(20)] == [0.0] * 20
    assert limiter.try_take() > 0


def test_late_wakers_never_exceed_the_burst(clock):
    """Many waiters that all wake late (a stalled event loop) still get at most `burst`
    tokens at once: the provider's bucket of the same rate never sees a bigger burst."""
    limiter = RateLimiter(rate=5, burst=5)
    _drain(limiter, clock, 5)
    clock.now += 3.0  # every waiter oversleeps by 3 s
    taken = sum(1 for _ in range(50) if limiter.try_take() == 0.0)
    assert taken == 5


def test_sustained_rate_is_the_configured_rate(clock):
    limiter = RateLimiter(rate=20, burst=20)
    start = clock.now
    sent = _drain(limiter, clock, 220)
    assert sent[-1] - start == pytest.approx((219 - 19) * 0.05)
    assert all(b >= a for a, b in pairwise(sent))


def test_explicit_burst(clock):
    limiter = RateLimiter(rate=10, burst=3)
    start = clock.now
    assert [round(t - start, 6) for t in _drain(limiter, clock, 5)] == [0.0, 0.0, 0.0, 0.1, 0.2]


def test_rate_must_be_positive():
    for rate in (0, -1):
        with pytest.raises(ValueError):
            RateLimiter(rate=rate)


def test_try_take_is_thread_safe(clock):
    limiter = RateLimiter(rate=20, burst=20)
    taken: list[float] = []
    lock = threading.Lock()

    def worker():
        for _ in range(25):
            w = limiter.try_take()
            with lock:
                taken.append(w)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 100 attempts at one instant: exactly the burst of 20 get a token.
    assert sum(1 for w in taken if w == 0.0) == 20


def test_default_spaces_every_request(clock):
    limiter = RateLimiter(rate=4)
    start = clock.now
    assert [round(t - start, 6) for t in _drain(limiter, clock, 4)] == [0.0, 0.25, 0.5, 0.75]


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


async def test_a_global_limit_takes_its_slots_in_batches_and_drops_stale_ones(monkeypatch):
    """One Prefect API call per batch: GLOBAL_SLOT_BATCH, or as many as wait (up to the limit)."""
    from prefect_runway.engine import ratelimit

    fetched: list[int] = []
    sizes: list[str] = []

    async def take(name: str, count: int) -> None:
        fetched.append(count)
        await asyncio.sleep(0.01)

    async def size(name: str) -> int | None:
        sizes.append(name)
        return None  # unknown: fixed batches

    slots = ratelimit.GlobalSlots(take=take, size=size)
    reservoir = ratelimit.SlotReservoir("limit", slots, batch=5, max_age=60.0)
    await asyncio.gather(*(reservoir.take() for _ in range(12)))
    assert fetched == [5, 5, 5]  # 12 requests: three batches, not twelve calls
    await reservoir.take()
    await reservoir.take()
    await reservoir.take()
    assert fetched == [5, 5, 5]  # the third batch's slots are spent first
    await reservoir.take()
    assert fetched == [5, 5, 5, 5]
    assert sizes == ["limit"]  # the limit's size is read once
    stale = ratelimit.SlotReservoir("limit", slots, batch=5, max_age=0.0)
    await stale.take()
    await asyncio.sleep(0.01)
    await stale.take()
    assert fetched == [5, 5, 5, 5, 5, 5]  # slots older than max_age are not spent


async def test_a_global_limit_takes_as_many_slots_as_wait_up_to_its_size(monkeypatch):
    """Many waiters: one call takes a slot for each of them, never more than the limit holds."""
    from prefect_runway.engine import ratelimit

    fetched: list[int] = []

    async def take(name: str, count: int) -> None:
        fetched.append(count)
        await asyncio.sleep(0.01)

    async def size(name: str) -> int | None:
        return 30

    slots = ratelimit.GlobalSlots(take=take, size=size)
    reservoir = ratelimit.SlotReservoir("limit", slots, batch=5, max_age=60.0)
    await asyncio.gather(*(reservoir.take() for _ in range(100)))
    # The first request goes alone (nobody else waits yet); then the limit's 30 at a time.
    assert fetched == [5, 30, 30, 30, 5]  # 5 calls, where fixed batches of 5 would make 20
    await asyncio.gather(*(reservoir.take() for _ in range(3)))
    assert fetched[-1] == 5  # few waiting: the minimum batch
