"""Waiting for a job: the poll loop, its deadline, and the time a job sits THROTTLED."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from prefect_runway.engine.credits import CreditBook
from prefect_runway.engine.events import EngineLogger
from prefect_runway.engine.polling import (
    LatencyBook,
    LatencyTrack,
    LatencyWindow,
    PollSchedule,
    latency_key,
)
from prefect_runway.engine.progress import ProgressLine, watch_poll
from prefect_runway.errors import (
    BadResponse,
    GenerationCancelled,
    GenerationExpired,
    GenerationFailed,
    GenerationTimedOut,
)
from prefect_runway.models import Generation, GenerationResult, JobState, StatusUpdate, utc_now
from prefect_runway.providers.base import Provider

#: How long a job may sit THROTTLED (held back by the provider's concurrency limit) by default,
#: in seconds; this time does not count against the wait's deadline.
DEFAULT_QUEUE_TIMEOUT = 3600.0

#: A wait that starts later than this after the job's submission is a resumed one (a job
#: found in the submit cache, or waited for again after a crash or a timeout).
RESUMED_WAIT_SECONDS = 10.0

#: What :func:`wait_for` calls with each status whose state differs from the last one.
OnUpdate = Callable[[StatusUpdate], "Awaitable[None] | None"]

logger = EngineLogger(__name__)


class Client(Protocol):
    """What a wait needs of its client (a :class:`~prefect_runway.engine.GenerationClient`)."""

    provider: Provider
    poll: PollSchedule
    latency: LatencyBook
    credits: CreditBook | None
    queue_timeout: float

    def status(self, generation: Generation) -> Awaitable[StatusUpdate]: ...

    def result(
        self, generation: Generation, status: StatusUpdate | None = None
    ) -> Awaitable[StatusUpdate]: ...


async def wait_for(
    client: Client,
    generation: Generation,
    *,
    timeout: float | None = None,
    on_update: OnUpdate | None = None,
    queue_timeout: float | None = None,
) -> GenerationResult:
    """Poll ``generation`` through ``client`` until it is terminal, within a deadline: what
    :meth:`GenerationClient.wait <prefect_runway.engine.client.GenerationClient.wait>` does."""
    started = time.monotonic()
    # The job's age: from its submission (which may be long ago, for a resumed wait).
    try:
        submitted_age = max(0.0, (utc_now() - generation.submitted_at).total_seconds())
    except TypeError:  # a naive timestamp from elsewhere: count from now
        submitted_age = 0.0
    track = None
    if client.poll.adaptive:
        track = client.latency.track(
            latency_key(generation.provider, generation.base_url, generation.model,
                        generation.request),
            public=generation.base_url.rstrip("/") == client.provider.default_base_url.rstrip("/"),
        )
        # A wait on an older job (found in the cache, resumed after a crash) polls late
        # not by choice: a job it never sees running tells nothing of its latency.
        track.resumed = submitted_age > RESUMED_WAIT_SECONDS
    wait = _Wait(
        client, generation, timeout=timeout, on_update=on_update, track=track,
        age=lambda: submitted_age + time.monotonic() - started,
        queue_timeout=client.queue_timeout if queue_timeout is None else queue_timeout,
    )
    try:
        result = await wait.run(started)
    except (GenerationFailed, GenerationCancelled, GenerationExpired):
        if client.credits is not None:  # it may be refunded: the balance moves
            client.credits.finished(generation.job_id, succeeded=False)
        raise
    else:
        if client.credits is not None:
            client.credits.finished(generation.job_id, succeeded=True)
        return result
    finally:
        if track is not None:
            track.close()


class _Wait:
    """One wait for one job: when to poll next, the deadline, and what each poll saw."""

    def __init__(
        self,
        client: Client,
        generation: Generation,
        *,
        timeout: float | None,
        on_update: OnUpdate | None,
        track: LatencyTrack | None,
        age: Callable[[], float],
        queue_timeout: float,
    ) -> None:
        self.client = client
        self.generation = generation
        self.timeout = timeout if timeout is not None else client.poll.timeout
        self.on_update = on_update
        self.track = track
        self.age = age
        self.queue_timeout = queue_timeout
        self.last_state: JobState | None = None
        self.last_raw: str | None = None
        self.progress = ProgressLine(generation)

    async def run(self, started: float) -> GenerationResult:
        """Poll until the job is terminal; its result, or the typed error of how it ended."""
        poll = self.client.poll
        deadline = started + self.timeout
        classic = poll.delays()
        queue = _QueueClock(self.queue_timeout, time.monotonic())
        first = True
        while True:
            window = self.track.window() if self.track is not None else None
            if window is None or (first and poll.first_delay is not None):
                delay = next(classic)
            else:
                delay = poll.next_delay(self.age(), window)
            first = False
            now = time.monotonic()
            remaining = self._remaining(deadline, queue, now)
            await asyncio.sleep(min(delay, remaining))
            update = await self.client.status(self.generation)
            await self._seen(update, window, queue)
            if update.state.terminal:
                return await self._finished(update)

    def _remaining(self, deadline: float, queue: _QueueClock, now: float) -> float:
        """Seconds left to wait, or the :class:`GenerationTimedOut` of a wait that is over."""
        generation = self.generation
        if queue.over(now):
            raise GenerationTimedOut(
                f"the job sat THROTTLED (held back by {generation.provider}'s concurrency "
                f"limit) for more than queue_timeout ({self.queue_timeout:g} s); it may still "
                "run remotely — wait again with this job id",
                timeout=self.queue_timeout,
                last_status=self.last_raw,
                provider=generation.provider,
                job_id=generation.job_id,
            )
        # Time spent THROTTLED moves the deadline out; ``queue_timeout`` bounds it instead.
        remaining = min(deadline + queue.spent(now) - now, queue.remaining(now))
        if remaining <= 0:
            raise GenerationTimedOut(
                "the job did not finish before the deadline; it may still finish remotely — "
                "wait again with this job id",
                timeout=self.timeout,
                last_status=self.last_raw,
                provider=generation.provider,
                job_id=generation.job_id,
            )
        return remaining

    async def _seen(
        self, update: StatusUpdate, window: LatencyWindow | None, queue: _QueueClock
    ) -> None:
        """What a poll saw: progress, watchers, THROTTLED time, the latency book, the log."""
        generation = self.generation
        self.progress.seen(update, self.age(), window)
        watch_poll(generation, update, self.age(), window)
        _note_throttle(generation, update, queue, time.monotonic())
        if self.track is not None:
            if update.state.terminal:
                if update.state is JobState.SUCCEEDED:
                    self.track.finished(self.age())
            else:
                self.track.pending(self.age())
        if update.state is not self.last_state:
            logger.info(
                "%s job %s is %s", generation.provider, generation.job_id,
                update.raw_status or update.state.value,
            )
            self.last_state = update.state
            if self.on_update is not None:
                maybe = self.on_update(update)
                if asyncio.iscoroutine(maybe):
                    await maybe
        self.last_raw = update.raw_status

    async def _finished(self, update: StatusUpdate) -> GenerationResult:
        """The result of a job that is terminal, or the typed error of how it ended."""
        generation = self.generation
        if update.state is JobState.FAILED:
            raise self.client.provider.failure_error(generation, update)
        if update.state is JobState.CANCELLED:
            raise GenerationCancelled(
                "the generation was cancelled", provider=generation.provider,
                job_id=generation.job_id,
            )
        if update.needs_result_call:
            update = await self.client.result(generation, update)
        if not update.outputs:
            raise BadResponse(
                "the job succeeded but named no output", provider=generation.provider,
                job_id=generation.job_id,
            )
        return GenerationResult(
            generation=generation,
            state=update.state,
            outputs=update.outputs,
            metrics=update.metrics,
            cost=update.cost,
        )


def _note_throttle(
    generation: Generation, update: StatusUpdate, queue: _QueueClock, now: float
) -> None:
    """Count THROTTLED time and log once when the job enters and leaves that state."""
    if update.throttled and queue.since is None:
        queue.enter(now)
        logger.warning(
            "%s job %s is THROTTLED: %s; queued time does not count against the wait's "
            "deadline (queue_timeout %g s)",
            generation.provider, generation.job_id,
            update.throttle_reason or "the provider is holding it back", queue.limit,
        )
    elif not update.throttled and queue.since is not None:
        queue.leave(now)
        logger.info(
            "%s job %s left THROTTLED after %.1f s queued; it is %s",
            generation.provider, generation.job_id, queue.total,
            update.raw_status or update.state.value,
        )
    queue.seen(now)


class _QueueClock:
    """Time a job spent THROTTLED during one wait, against its ``queue_timeout``."""

    def __init__(self, limit: float, now: float) -> None:
        self.limit = limit
        self.total = 0.0
        self.since: float | None = None
        self._last_seen = now

    def seen(self, now: float) -> None:
        self._last_seen = now

    def enter(self, now: float) -> None:
        # Counted from the previous observation: a task over the limit is THROTTLED from
        # its creation, not from the poll that first saw it.
        self.since = self._last_seen

    def leave(self, now: float) -> None:
        if self.since is not None:
            self.total += now - self.since
        self.since = None

    def spent(self, now: float) -> float:
        return self.total + (now - self.since if self.since is not None else 0.0)

    def over(self, now: float) -> bool:
        return self.since is not None and self.spent(now) > self.limit

    def remaining(self, now: float) -> float:
        if self.since is None:
            return float("inf")
        return self.limit - self.spent(now)
