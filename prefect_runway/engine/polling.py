"""When to poll a job: latency-aware schedules, learned per model in this process.

A provider says only whether a job has finished, never when it will. A fixed cadence either
wastes requests (for most of a video job's life nothing can have happened yet) or notices
completions late. :class:`PollSchedule` spends polls where completion is likely, using what
a :class:`LatencyBook` knows of the model's latency — a window ``[low, high]``: the expected
minimum, and the age by which nearly every job (95%) has finished:

* **Before ``low``** no job of the model finishes: the next poll is at ``low``.
* **Between ``low`` and ``high``** the interval is ``sqrt(2 * poll_cost * (high - age))``:
  it tightens as completion nears. This is the interval that minimises *mean notice delay +
  poll_cost x polls* when latencies are spread evenly over the window (in general
  ``sqrt(2 * poll_cost / hazard)``, and the hazard of an even spread at age ``t`` is
  ``1 / (high - t)``): ``poll_cost`` is how many seconds of delay one poll is worth.
* **Past ``high``** the job is overdue and nothing more is known: the interval grows again
  from ``interval`` by ``multiplier - 1`` times the time overdue.
* **With no knowledge at all** (no prior for the model at this API, no job seen yet) it is
  the classic schedule: ``first_delay`` (or ``interval``), growing by ``multiplier``.

Every interval is clamped to ``[interval, max_interval]`` and to the wait's deadline, so a
credentials block's ``poll_interval_seconds`` (the shortest interval) and
``max_poll_interval_seconds`` (the longest, first poll included) bound whatever is learned.

What is known is kept per (provider, API base URL, model, video duration):

* the latencies of the jobs this process saw finish, each the midpoint of the bracket
  between the last poll that found it running and the poll that found it done;
* the ages of jobs still being waited for: a batch in flight is censored data, so the window
  is a Kaplan-Meier estimate and early finishers do not pass for the whole batch; while
  fewer than 5% have finished the upper end is extrapolated from the survival curve so far;
* a prior per model (:data:`DEFAULT_PRIORS`) for the providers' public APIs only: it is used
  until ``min_events`` jobs were seen, and dropped at once if one of them contradicts it.
  Other endpoints (an emulator, a proxy) start from nothing, unless given a prior with
  :meth:`LatencyBook.set_prior`.

Nothing here reads a clock: ages are passed in, so every schedule is reproducible.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import count
from typing import Any


@dataclass(frozen=True)
class LatencyPrior:
    """What is expected of a model's latency (seconds from submit to done) before any is seen.

    Attributes:
        minimum: No job is expected to finish sooner.
        maximum: Nearly every job has finished by then.
    """

    minimum: float
    maximum: float

    def __post_init__(self) -> None:
        if not 0 <= self.minimum <= self.maximum:
            raise ValueError("a latency prior needs 0 <= minimum <= maximum")


@dataclass(frozen=True)
class LatencyWindow:
    """The latency window a schedule works from.

    Attributes:
        low: The expected minimum latency, in seconds.
        high: The age by which nearly every job has finished, in seconds.
        source: ``"prior"`` or ``"observed"``.
        events: How many finished jobs it was estimated from.
    """

    low: float
    high: float
    source: str = "observed"
    events: int = 0


#: Priors for Runway's models on the providers' public APIs: seconds from submit to done,
#: as the providers' pages and users report them (a 5 s clip; a 10 s one takes longer, and is
#: learned separately). Deliberately wide: a prior only has to keep the first polls of a
#: cold process out of the time in which no job can finish; what is seen replaces it.
DEFAULT_PRIORS: dict[str, LatencyPrior] = {
    "gen4_image": LatencyPrior(5.0, 90.0),
    "gen4_turbo": LatencyPrior(15.0, 120.0),
    "gen3a_turbo": LatencyPrior(15.0, 120.0),
}


@dataclass(frozen=True)
class PollSchedule:
    """When to poll a job: latency-aware intervals between bounds, and a deadline.

    Attributes:
        first_delay: Seconds before the first poll, overriding everything else (None: as the
            schedule decides).
        interval: The shortest interval between polls, in seconds; also the first interval
            while nothing is known of the model's latency.
        max_interval: The longest interval between polls (the first poll included), in
            seconds.
        multiplier: How fast intervals grow where nothing is known (no knowledge, or a job
            past its expected maximum).
        timeout: The overall deadline of a wait, in seconds.
        adaptive: Space polls by what is known of the model's latency (see the module
            docstring); False polls on the classic growing schedule only.
        poll_cost: Seconds of notice delay one poll is worth: smaller polls more often.

    Example:
        ```python
        schedule = PollSchedule(interval=0.5, max_interval=15)
        schedule.next_delay(age=3.0, window=LatencyWindow(20.0, 40.0))   # 15.0: wait
        schedule.next_delay(age=20.0, window=LatencyWindow(20.0, 40.0))  # ~1.1
        schedule.next_delay(age=39.5, window=LatencyWindow(20.0, 40.0))  # 0.5: the floor
        ```
    """

    first_delay: float | None = None
    interval: float = 0.5
    max_interval: float = 15.0
    multiplier: float = 1.3
    timeout: float = 1800.0
    adaptive: bool = True
    poll_cost: float = 0.03

    def delays(self) -> Iterator[float]:
        """Yield the successive waits before each poll of the classic schedule."""
        yield self.interval if self.first_delay is None else self.first_delay
        delay = self.interval
        while True:
            yield delay
            delay = min(self.max_interval, delay * self.multiplier)

    def next_delay(self, age: float, window: LatencyWindow) -> float:
        """Seconds to wait before the next poll of a job ``age`` seconds old that is not done.

        Args:
            age: Seconds since the job was submitted.
            window: What is known of the model's latency.
        """
        low, high = window.low, max(window.high, window.low)
        if age < low:
            delay = low - age
        elif age < high and window.source == "prior":
            # A prior says where jobs start finishing and by when nearly all have, nothing
            # of the shape in between: take the least-informed one, memoryless, whose hazard
            # is constant (95% done by ``high``: -ln(0.05) / (high - low)).
            delay = math.sqrt(2 * self.poll_cost * (high - low) / -math.log(0.05))
        elif age < high:
            delay = math.sqrt(2 * self.poll_cost * (high - age))
        else:
            delay = self.interval + (self.multiplier - 1) * (age - high)
        return min(self.max_interval, max(self.interval, delay))


LatencyKey = tuple[str, str, str]


def latency_key(provider: str, base_url: str, model: str, request: Mapping[str, Any]) -> LatencyKey:
    """What latencies are learned per: provider, API base URL, and the model with the video's
    duration (a 10 s clip takes longer than a 5 s one)."""
    duration = request.get("duration")
    label = model
    if duration is not None:
        try:
            label = f"{model}/{float(duration):g}s"
        except (TypeError, ValueError):
            pass
    return provider, base_url.rstrip("/"), label


@dataclass
class _Record:
    events: deque[float]
    public: bool
    alive: dict[int, float] = field(default_factory=dict)
    prior: LatencyPrior | None = None
    version: int = 0
    changes: int = 0
    cached: tuple[int, LatencyWindow | None] | None = None


class LatencyBook:
    """What this process knows of each model's latency, shared by every wait in it.

    Thread-safe: waits on any thread or event loop of the process report to the same book.

    Args:
        priors: Priors per model for the providers' public APIs (default
            :data:`DEFAULT_PRIORS`).
        memory: How many recent latencies are kept per model.
        min_events: Finished jobs needed before observations replace a prior.
        quantile: The share of jobs finished by a window's ``high``.
    """

    def __init__(
        self,
        priors: Mapping[str, LatencyPrior] | None = None,
        *,
        memory: int = 200,
        min_events: int = 5,
        quantile: float = 0.95,
    ) -> None:
        self._public_priors = dict(DEFAULT_PRIORS if priors is None else priors)
        self._endpoint_priors: dict[tuple[str, str | None, str], LatencyPrior] = {}
        self._memory = memory
        self._min_events = min_events
        self._quantile = quantile
        self._records: dict[LatencyKey, _Record] = {}
        self._ids = count()
        self._lock = threading.Lock()

    def set_prior(
        self,
        model: str,
        prior: LatencyPrior | None,
        *,
        base_url: str | None = None,
        provider: str | None = None,
    ) -> None:
        """Set (or with None, remove) the prior of ``model``.

        Args:
            model: A model name (``gen4_turbo``) or a model with a duration
                (``gen4_turbo/10s``), which takes precedence.
            prior: The prior, or None.
            base_url: The API it is for; None: the providers' public APIs.
            provider: Restrict it to one provider (with ``base_url``).
        """
        with self._lock:
            if base_url is None:
                if prior is None:
                    self._public_priors.pop(model, None)
                else:
                    self._public_priors[model] = prior
            else:
                key = (base_url.rstrip("/"), provider, model)
                if prior is None:
                    self._endpoint_priors.pop(key, None)
                else:
                    self._endpoint_priors[key] = prior
            for record_key, record in self._records.items():
                record.prior = self._prior(record_key, record.public)
                record.version += 1

    def track(self, key: LatencyKey, *, public: bool) -> LatencyTrack:
        """Start following one wait on a job of ``key``; ``public``: the provider's own API."""
        with self._lock:
            record = self._records.get(key)
            if record is None:
                record = self._records[key] = _Record(
                    events=deque(maxlen=self._memory), public=public,
                    prior=self._prior(key, public),
                )
            return LatencyTrack(self, key, next(self._ids))

    def observe(self, key: LatencyKey, latency: float, *, public: bool = False) -> None:
        """Record one finished job's latency directly (e.g. from a previous run's sidecars)."""
        self.track(key, public=public)
        with self._lock:
            record = self._records[key]
            record.events.append(max(0.0, latency))
            record.version += 1

    def window(self, key: LatencyKey) -> LatencyWindow | None:
        """The current estimate for ``key``, or None when nothing is known."""
        with self._lock:
            record = self._records.get(key)
            if record is None:
                return None
            if record.cached is None or record.cached[0] != record.version:
                record.cached = (record.version, self._estimate(record))
            return record.cached[1]

    def snapshot(self) -> dict[str, Any]:
        """What is known, per key, as plain values (for reports and debugging)."""
        with self._lock:
            keys = list(self._records)
        result = {}
        for key in keys:
            window = self.window(key)
            with self._lock:
                record = self._records[key]
                result["|".join(key)] = {
                    "events": len(record.events),
                    "in_flight": len(record.alive),
                    "prior": None if record.prior is None else [record.prior.minimum, record.prior.maximum],
                    "window": None if window is None else [round(window.low, 3), round(window.high, 3), window.source],
                }
        return result

    def reset(self) -> None:
        """Forget every observation (priors stay)."""
        with self._lock:
            self._records.clear()

    # ---- used by LatencyTrack --------------------------------------------------------------

    def _pending(self, key: LatencyKey, ident: int, age: float) -> None:
        with self._lock:
            record = self._records.get(key)
            if record is None:  # the book was reset meanwhile
                return
            record.alive[ident] = age
            # The censoring ages move on every poll; refresh the estimate now and then, not
            # on every single poll (the events, which matter most, refresh it at once).
            record.changes += 1
            if record.changes >= 16:
                record.changes = 0
                record.version += 1

    def _finished(self, key: LatencyKey, ident: int, latency: float) -> None:
        with self._lock:
            record = self._records.get(key)
            if record is None:
                return
            record.alive.pop(ident, None)
            record.events.append(latency)
            record.version += 1

    def _close(self, key: LatencyKey, ident: int) -> None:
        with self._lock:
            record = self._records.get(key)
            if record is not None and record.alive.pop(ident, None) is not None:
                record.version += 1

    # ---- estimation ----------------------------------------------------------------------------

    def _prior(self, key: LatencyKey, public: bool) -> LatencyPrior | None:
        provider, base_url, label = key
        model = label.split("/", 1)[0]
        for name in (label, model):
            for scope in ((base_url, provider, name), (base_url, None, name)):
                if scope in self._endpoint_priors:
                    return self._endpoint_priors[scope]
        if public:
            return self._public_priors.get(label) or self._public_priors.get(model)
        return None

    def _estimate(self, record: _Record) -> LatencyWindow | None:
        events = sorted(record.events)
        prior = record.prior
        if not events:
            return None if prior is None else LatencyWindow(prior.minimum, prior.maximum, "prior")
        if (
            prior is not None
            and len(events) < self._min_events
            and prior.minimum <= events[0]
            and events[-1] <= prior.maximum
        ):
            return LatencyWindow(prior.minimum, prior.maximum, "prior", len(events))
        return _kaplan_meier_window(events, sorted(record.alive.values()), self._quantile)


def _kaplan_meier_window(
    events: list[float], censored: list[float], quantile: float
) -> LatencyWindow:
    """``low``: the shortest latency seen; ``high``: the ``quantile`` of the Kaplan-Meier
    estimate over finished jobs (``events``) and jobs still running at the ages
    ``censored`` (both sorted); while fewer than ``quantile`` have finished, ``high`` is
    where the survival curve reaches ``1 - quantile`` going on at the pace of its recent
    half (exact for latencies spread evenly over a window)."""
    low = events[0]
    target = 1 - quantile
    n = len(events)
    survival = 1.0
    curve: list[tuple[float, float]] = []
    for i, latency in enumerate(events):
        at_risk = (n - i) + (len(censored) - bisect_left(censored, latency))
        survival *= 1 - 1 / at_risk
        curve.append((latency, survival))
        if survival <= target + 1e-12:
            return LatencyWindow(low, latency, "observed", n)
    frontier = max(events[-1], censored[-1] if censored else 0.0)
    if frontier <= low:
        return LatencyWindow(low, frontier, "observed", n)
    # The survival at the start of the recent half of the observed span, and its pace since.
    middle = (low + frontier) / 2
    before = 1.0
    for latency, value in curve:
        if latency > middle:
            break
        before = value
    pace = (before - survival) / (frontier - middle)
    if pace <= 0:  # no finish in the recent half: the pace of the whole span
        pace = (1 - survival) / (frontier - low)
    high = frontier + (survival - target) / pace
    return LatencyWindow(low, min(high, low + 10 * max(frontier, 1.0)), "observed", n)


class LatencyTrack:
    """One wait's view of the book: its window, and what it sees of its job."""

    def __init__(self, book: LatencyBook, key: LatencyKey, ident: int) -> None:
        self._book = book
        self.key = key
        self._ident = ident
        self._last_pending: float | None = None
        self._closed = False
        #: Set by a wait that began long after the job's submission (a cached or resumed
        #: job): its first poll came late not by choice, so a job it finds already done
        #: bounds nothing useful and is not recorded.
        self.resumed = False

    def window(self) -> LatencyWindow | None:
        """What is known of this job's latency now."""
        return self._book.window(self.key)

    def pending(self, age: float) -> None:
        """The job was seen still running at ``age`` seconds."""
        self._last_pending = age
        self._book._pending(self.key, self._ident, age)

    def finished(self, age: float) -> None:
        """The job was seen done at ``age`` seconds: record its latency (and stop tracking).

        The latency is the midpoint of the bracket between the last poll that found the job
        running and this one. A job never seen running (found done at its first poll, or a
        resumed wait) only bounds its latency from above, which is news only when that first
        poll came no later than the expected minimum: then jobs finish sooner than the book
        thought, and a shorter latency is recorded (half the bound when the poll came before
        the minimum, 90% of the minimum when at it) so the next jobs are polled earlier. A
        resumed wait (:attr:`resumed`) records nothing for a job it never saw running.
        """
        if self._closed:
            return
        self._closed = True
        if self._last_pending is not None:
            self._book._finished(self.key, self._ident, (self._last_pending + age) / 2)
            return
        if self.resumed:
            self._book._close(self.key, self._ident)
            return
        window = self._book.window(self.key)
        if window is None or age < window.low:
            self._book._finished(self.key, self._ident, age / 2)
        elif age <= window.low * 1.1:
            self._book._finished(self.key, self._ident, window.low * 0.9)
        else:
            self._book._close(self.key, self._ident)

    def close(self) -> None:
        """Stop tracking without recording a latency (failed, cancelled, timed out)."""
        if not self._closed:
            self._closed = True
            self._book._close(self.key, self._ident)


#: The book every client of this process shares, unless given its own.
LATENCY = LatencyBook()
