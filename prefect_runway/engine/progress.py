"""A progress line while a job runs: at most one per :data:`PROGRESS_EVERY` seconds per job.

Between "submitted" and "succeeded" a video job takes minutes; a person watching the run's
logs should see that it is alive and how far along it is: the provider's own progress where
it reports one (Runway's ``progress``, 0-1), else the job's age against the window the
latency book expects (:mod:`prefect_runway.engine.polling`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prefect_runway.engine.events import EngineLogger, emit_job
from prefect_runway.engine.polling import LatencyWindow
from prefect_runway.models import Generation, JobState, StatusUpdate

__all__ = ["PROGRESS_EVERY", "ProgressLine", "describe_progress", "watch_poll"]

#: Seconds between two progress lines of one job.
PROGRESS_EVERY = 30.0

logger = EngineLogger("prefect_runway.engine.progress")


def provider_share(update: StatusUpdate) -> float | None:
    """The provider's own progress as a share, 0-1 (Runway reports 0-1; some report 0-100)."""
    if update.progress is None:
        return None
    share = update.progress if update.progress <= 1 else update.progress / 100
    return max(0.0, min(1.0, share))


def watch_poll(
    generation: Generation, update: StatusUpdate, age: float, window: LatencyWindow | None
) -> None:
    """Tell the job's watchers (:func:`prefect_runway.engine.events.subscribe`) what a poll saw.

    A pending job is ``submitted`` (or ``throttled``, held back by the provider), a running
    one ``running``; how a job ends (stored, or failed after any resubmit) is the flows' to
    say (:mod:`prefect_runway.watch`).
    """
    if update.throttled:
        state = "throttled"
    elif update.state is JobState.PENDING:
        state = "submitted"
    elif update.state is JobState.RUNNING:
        state = "running"
    else:
        return
    emit_job(
        state, generation, progress=provider_share(update), age=age,
        expected=(window.low, window.high) if window is not None else None,
        detail=update.error or update.raw_status or update.state.value,
    )


def describe_progress(update: StatusUpdate, age: float, window: LatencyWindow | None) -> str:
    """What a progress line says: status, the provider's progress, the age vs expectation.

    Example:
        ``RUNNING, 45% done (provider), 40 s since submit, usually done in 20-60 s``
    """
    parts = [update.raw_status or update.state.value]
    if update.throttled:
        parts.append("held back by the provider (throttled)")
    share = provider_share(update)
    if share is not None:
        parts.append(f"{share:.0%} done (provider)")
    parts.append(f"{age:.0f} s since submit")
    if window is not None:
        if age <= window.high:
            parts.append(f"usually done in {window.low:.0f}-{window.high:.0f} s")
        else:
            parts.append(f"past the usual {window.high:.0f} s")
    return ", ".join(parts)


class ProgressLine:
    """Logs one job's progress at most every ``every`` seconds (never for a finished job).

    Args:
        generation: The job.
        every: Seconds between two lines (default :data:`PROGRESS_EVERY`, read when made).
        clock: A monotonic clock (for tests).
    """

    def __init__(
        self,
        generation: Generation,
        every: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.generation = generation
        self.every = PROGRESS_EVERY if every is None else every
        self._clock = clock
        self._next = clock() + self.every
        self.lines = 0

    def seen(self, update: StatusUpdate, age: float, window: LatencyWindow | None) -> bool:
        """A poll saw ``update`` at ``age`` seconds: log a line if one is due. True if logged."""
        if update.state.terminal:
            return False
        now = self._clock()
        if now < self._next:
            return False
        self._next = now + self.every
        self.lines += 1
        logger.info(
            "%s job %s: %s", self.generation.provider, self.generation.job_id,
            describe_progress(update, age, window),
        )
        return True
