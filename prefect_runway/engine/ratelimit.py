"""A request-rate budget per provider key, shared by every task in a process.

Hundreds of jobs in flight each poll their status; without a shared budget they would trip
the provider's rate limit together. :func:`limiter_for` returns the one limiter for a
(provider, base URL, key) triple, so every client built from the same credentials — in any
task, on any thread or event loop of the process — draws from the same budget. For a budget
shared across processes and machines, a :class:`GlobalRateLimit` takes slots of a global limit.

The limiter is a token bucket guarded by a thread lock (not an asyncio lock), so it works
across event loops and threads.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

_EPSILON = 1e-9


class RateLimiter:
    """Allow ``rate`` requests per second on average, with bursts of up to ``burst``.

    A token bucket whose tokens are taken at the moment a request goes out, never reserved
    ahead: however late a waiting task wakes (a busy event loop), at most ``burst`` requests
    leave together, so the provider's own bucket of the same rate never has to refuse one.

    Args:
        rate: Requests per second.
        burst: How many requests may go at once after a quiet spell. The default, 1, spaces
            every request at least ``1 / rate`` apart: when this process stalls and then
            writes several requests together, the provider's own burst allowance absorbs it.
    """

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else 1.0)
        self._tokens = self.burst
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def try_take(self) -> float:
        """Take a token if there is one (returns 0), else return the seconds until one is due."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1 - _EPSILON:  # float rounding must not leave a sliver to wait for
                self._tokens = max(0.0, self._tokens - 1)
                return 0.0
            return (1 - self._tokens) / self.rate

    async def acquire(self) -> None:
        """Wait until a token is taken."""
        while (wait := self.try_take()) > 0:
            await asyncio.sleep(wait)

    @asynccontextmanager
    async def __call__(self) -> Any:
        await self.acquire()
        yield


_registry: dict[tuple[str, str, str], RateLimiter] = {}
_registry_lock = threading.Lock()


#: Slots of a Prefect global rate limit taken at least per call to the Prefect API (more when
#: more requests are waiting): each call takes a batch and the next requests of the process
#: spend it, so the orchestrator sees one call per batch of provider requests, not one each.
GLOBAL_SLOT_BATCH = 5
#: Seconds a slot taken ahead stays spendable. A decaying limit counts a slot when it is
#: taken; spent much later, it would let requests out above the shared rate.
GLOBAL_SLOT_MAX_AGE = 1.0


@dataclass(frozen=True)
class GlobalSlots:
    """Where the slots of a global limit come from (Prefect's, for a credentials block: see
    :mod:`prefect_runway.blocks.rate_limits`).

    Attributes:
        take: ``(limit name, count)``: take ``count`` slots of the limit (waits for them).
        size: ``limit name -> slots``: the limit's size, or None when it cannot be read.
    """

    take: Callable[[str, int], Awaitable[None]]
    size: Callable[[str], Awaitable[int | None]]


class SlotReservoir:
    """Slots of one global limit taken ahead by this process, spent one per request.

    One fetch at a time per event loop; each fetch takes as many slots as requests are waiting
    for one (at least ``batch``, at most the limit's own size, read once), so a thousand
    chains polling at once cost one call to the orchestrator per round of waiters, not one per
    ``batch`` requests: the shared rate, not the round trips to the orchestrator, sets the
    pace. Slots older than ``max_age`` are dropped unspent, so the shared rate is never
    exceeded by more than one fetch per process.
    """

    def __init__(self, name: str, slots: GlobalSlots, batch: int, max_age: float) -> None:
        self.name, self.slots, self.batch, self.max_age = name, slots, batch, max_age
        self._prepaid = 0
        self._taken_at = 0.0
        self._waiting = 0
        self._cap: int | None = None  # the limit's size, read at the first fetch
        self._lock = threading.Lock()
        self._fetching: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary())

    def _spend(self) -> bool:
        with self._lock:
            if self._prepaid and time.monotonic() - self._taken_at <= self.max_age:
                self._prepaid -= 1
                return True
            self._prepaid = 0
            return False

    async def take(self) -> None:
        if self._spend():
            return
        loop = asyncio.get_running_loop()
        with self._lock:
            fetching = self._fetching.setdefault(loop, asyncio.Lock())
            self._waiting += 1
        try:
            async with fetching:
                if self._spend():
                    return
                if self._cap is None:
                    self._cap = max(self.batch, await self.slots.size(self.name) or self.batch)
                with self._lock:
                    count = min(max(self.batch, self._waiting), self._cap)
                await self.slots.take(self.name, count)
                with self._lock:
                    self._prepaid, self._taken_at = count - 1, time.monotonic()
        finally:
            with self._lock:
                self._waiting -= 1


_reservoirs: dict[str, SlotReservoir] = {}


class GlobalRateLimit:
    """A global limit (a Prefect global concurrency limit with slot decay) used as a rate
    limit, shared by every worker.

    Each request spends one slot, taken from ``slots`` in batches per process: at least
    :data:`GLOBAL_SLOT_BATCH`, as many as requests are waiting up to the limit's size (one
    call to the orchestrator per batch, not per request; see :class:`SlotReservoir`).
    """

    def __init__(self, name: str, slots: GlobalSlots, local: RateLimiter | None = None) -> None:
        self.name = name
        self.local = local
        with _registry_lock:
            reservoir = _reservoirs.get(name)
            if reservoir is None:
                reservoir = _reservoirs[name] = SlotReservoir(
                    name, slots, GLOBAL_SLOT_BATCH, GLOBAL_SLOT_MAX_AGE)
        self.reservoir = reservoir

    @asynccontextmanager
    async def __call__(self) -> Any:
        if self.local is not None:
            await self.local.acquire()
        await self.reservoir.take()
        yield


def limiter_for(
    provider: str,
    base_url: str,
    api_key: SecretStr,
    rate: float | None,
    global_limit: str | None = None,
    slots: GlobalSlots | None = None,
) -> RateLimiter | GlobalRateLimit | None:
    """The process-wide limiter for these credentials, or None when there is no limit.

    With ``global_limit``, each request also takes a slot of that global limit from
    ``slots``, so that many workers share one budget.

    The key is hashed to tell budgets apart; the hash lives in this process's memory only
    and is never written anywhere.
    """
    local = _local_limiter(provider, base_url, api_key, rate)
    if global_limit:
        if slots is None:
            raise ValueError("a global limit needs the slots it is taken from")
        return GlobalRateLimit(global_limit, slots, local)
    return local


def _local_limiter(
    provider: str, base_url: str, api_key: SecretStr, rate: float | None
) -> RateLimiter | None:
    if rate is None:
        return None
    ident = hashlib.sha256(api_key.get_secret_value().encode()).hexdigest()
    key = (provider, base_url, ident)
    with _registry_lock:
        limiter = _registry.get(key)
        if limiter is None or limiter.rate != rate:
            limiter = _registry[key] = RateLimiter(rate)
        return limiter
