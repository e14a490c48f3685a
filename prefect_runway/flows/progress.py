"""Progress of a batch of jobs, as a Prefect progress artifact; never fails a run."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar
from uuid import UUID

from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact

from prefect_runway.flows.artifacts import artifact_key

__all__ = ["BatchProgress", "advance_quietly", "note_progress"]

R = TypeVar("R")


class BatchProgress:
    """A progress artifact for a batch of jobs, advanced as each one finishes.

    Safe to advance from concurrent tasks of one flow run (updates are coalesced).

    Args:
        total: How many jobs the batch has.
        key: Artifact key (lowercase letters, digits, dashes); default ``"batch-progress"``.
        description: What the batch is; the counts are appended to it.

    Example:
        ```python
        import asyncio
        from prefect import flow
        from prefect_runway import SegmindCredentials, image_to_video
        from prefect_runway.flows.progress import BatchProgress

        @flow
        async def storyboard(prompts: list[str]):
            credentials = await SegmindCredentials.load("BLOCK_NAME")
            progress = BatchProgress(len(prompts), description="storyboard")
            await progress.start()

            async def one(prompt):
                try:
                    result = await image_to_video(prompt, "slow pan", credentials=credentials,
                        reference_images=[{"uri": "https://example.com/r.png", "tag": "ref"}])
                except Exception:
                    await progress.advance(failed=True)
                    raise
                await progress.advance()
                return result

            return await asyncio.gather(*(one(p) for p in prompts), return_exceptions=True)
        ```
    """

    def __init__(self, total: int, *, key: str | None = "batch-progress",
                 description: str | None = None, steps: Sequence[str] | None = None) -> None:
        if total < 0:
            raise ValueError("total must be >= 0")
        if steps is not None and len(steps) != total:
            raise ValueError("steps must name each of the total jobs")
        self.total = total
        self.steps = tuple(steps) if steps is not None else None
        self.key = artifact_key(key) if key else None
        self.description = description
        self.done = 0
        self.failed = 0
        self.artifact_id: UUID | None = None
        self._lock = asyncio.Lock()
        self._publishing = False
        self._stale = False

    @property
    def percent(self) -> float:
        """Finished (done or failed) jobs as a percentage of ``total``."""
        if self.total == 0:
            return 100.0
        return min(100.0, 100.0 * (self.done + self.failed) / self.total)

    def summary(self) -> str:
        """The description and the counts; with ``steps``, which step is where."""
        counts = f"{self.done + self.failed} of {self.total} finished"
        if self.failed:
            counts += f" ({self.failed} failed)"
        if self.steps is not None:
            finished = self.done + self.failed
            said = [f"{step} {'failed' if self.failed and i == finished - 1 else 'done'}"
                    for i, step in enumerate(self.steps[:finished])]
            if finished < self.total:
                said.append(f"{self.steps[finished]} {'not started' if self.failed else 'next'}")
            counts += ": " + ", ".join(said)
        return f"{self.description}: {counts}" if self.description else counts

    @classmethod
    async def begin(cls, total: int, **options: Any) -> BatchProgress | None:
        """A started progress artifact, or None when it could not be created (logged at
        DEBUG: progress is for people, and never fails a run)."""
        tracker = cls(total, **options)
        try:
            await tracker.start()
        except Exception as exc:  # noqa: BLE001 - never fail a run over progress
            _log_progress_failure(exc)
            return None
        return tracker

    async def start(self) -> UUID:
        """Create the artifact at its current progress (once); returns its id."""
        async with self._lock:
            if self.artifact_id is None:
                self.artifact_id = await acreate_progress_artifact(
                    progress=self.percent, key=self.key, description=self.summary(),
                )
            return self.artifact_id

    async def advance(self, count: int = 1, *, failed: bool = False) -> float:
        """Count ``count`` more jobs as finished (or failed) and update the artifact.

        Updates are coalesced: while one is on its way to the API, further advances only
        count, and the update in flight is followed by one more with the latest counts. A
        batch of N jobs finishing together then costs a few API calls, not N in a row (each
        waiting for the one before). Once every advance has returned, the artifact shows the
        final counts.

        Returns:
            The new percentage.
        """
        if self.artifact_id is None:
            await self.start()
        if failed:
            self.failed += count
        else:
            self.done += count
        percent = self.percent
        if self._publishing:
            self._stale = True  # the update in flight is followed by one with these counts
            return percent
        self._publishing = True
        try:
            self._stale = True
            while self._stale:
                self._stale = False
                assert self.artifact_id is not None
                await aupdate_progress_artifact(
                    self.artifact_id, progress=self.percent, description=self.summary(),
                )
        finally:
            self._publishing = False
        return percent

    async def __aenter__(self) -> BatchProgress:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


def _log_progress_failure(exc: BaseException) -> None:
    logging.getLogger(__name__).debug("Could not update a progress artifact: %s", exc)


async def note_progress(tracker: BatchProgress | None, failed: bool = False) -> None:
    """Advance ``tracker`` by one step (if any); a failed update is logged at DEBUG, never
    raised."""
    if tracker is None:
        return
    try:
        await tracker.advance(failed=failed)
    except Exception as exc:  # noqa: BLE001 - never fail a run over progress
        _log_progress_failure(exc)


async def advance_quietly(tracker: BatchProgress | None, step: Awaitable[R]) -> R:
    """Await one step of a batch, then advance ``tracker`` (failed, when the step raised, and
    the error goes on). A progress update that fails is logged at DEBUG, never raised."""
    try:
        result = await step
    except Exception:
        await note_progress(tracker, failed=True)
        raise
    await note_progress(tracker)
    return result
