"""What stops a run or a step of it: a budget, storage, a lock, the review gate, failed shots."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect_runway.errors.base import PrefectRunwayError


class StoryboardFailed(PrefectRunwayError):
    """Some shots of a storyboard failed; the others were generated and stored.

    Attributes:
        summary: The per-shot summary (a ``StoryboardSummary``): each shot's stored outputs,
            or the reason it failed.
    """

    def __init__(self, message: str, summary: Any = None) -> None:
        self.summary = summary
        super().__init__(message)

    def __reduce__(self) -> Any:
        return (type(self), (self.args[0], self.summary))


class BudgetExceeded(PrefectRunwayError):
    """A run's plan costs more than its budget; nothing was sent.

    Attributes:
        planned: What the plan costs, in the budget's terms.
        budget: The budget.
    """

    def __init__(self, message: str, *, planned: float | None = None,
                 budget: float | None = None) -> None:
        self.planned = planned
        self.budget = budget
        super().__init__(message)

    def __reduce__(self) -> Any:
        return (_rebuild_budget_exceeded, (self.args[0], self.planned, self.budget))


def _rebuild_budget_exceeded(message: str, planned: float | None,
                             budget: float | None) -> BudgetExceeded:
    return BudgetExceeded(message, planned=planned, budget=budget)


class NotStarted(BudgetExceeded):
    """A submit was refused before it was sent: it would pass a budget, or it has no known
    price while the run has one (an unknown price counts as unbounded). Nothing was sent.

    Attributes:
        what: The step it was for (``its video``, ``the video on runway (fallback)``).
        limit: The budget it would pass (``the budget of USD 5.00``).
        unpriced: ``model on provider`` when it has no known price, else None.
    """

    def __init__(self, what: str, limit: str, *, unpriced: str | None = None,
                 planned: float | None = None, budget: float | None = None) -> None:
        self.what, self.limit, self.unpriced = what, limit, unpriced
        if unpriced:
            message = (f"not started: {what} has no known price ({unpriced}), so it could pass "
                       f"{limit}; give its price in the credentials block's prices")
        else:
            message = f"not started: {what} would pass {limit}"
        super().__init__(message, planned=planned, budget=budget)

    def __reduce__(self) -> Any:
        return (_rebuild_not_started, (self.what, self.limit, self.unpriced, self.planned,
                                       self.budget))


def _rebuild_not_started(what: str, limit: str, unpriced: str | None, planned: float | None,
                         budget: float | None) -> NotStarted:
    return NotStarted(what, limit, unpriced=unpriced, planned=planned, budget=budget)


class UnknownPrice(PrefectRunwayError, KeyError):
    """No price is known for this provider and model."""

    def __str__(self) -> str:  # KeyError quotes its argument; say it plainly
        return str(self.args[0]) if self.args else "unknown price"


class StorageError(PrefectRunwayError):
    """Outputs (or the submission ledger) cannot be written where the run was told to put
    them: a path that is not a writable directory, a bucket that cannot be reached or has no
    credentials. Raised before anything is sent where it can be known; never retried.

    Attributes:
        location: The storage at fault (a path or ``s3://`` URI), when known.
    """

    def __init__(self, message: str, location: str | None = None) -> None:
        self.location = location
        super().__init__(message)

    def __reduce__(self) -> Any:
        return (type(self), (self.args[0], self.location))


class LockTimeout(PrefectRunwayError, TimeoutError):
    """A submit waited longer than its deadline for the lock on its request, which another
    run kept holding. Nothing was sent.

    Attributes:
        key: The lock's key (the submission scope).
        waited: Seconds waited.
    """

    def __init__(self, message: str, key: str = "", waited: float = 0.0) -> None:
        self.key = key
        self.waited = waited
        super().__init__(message)

    def __reduce__(self) -> Any:
        return (type(self), (self.args[0], self.key, self.waited))


class ReviewTimedOut(PrefectRunwayError):
    """Nobody answered the review within ``review_timeout`` and ``on_timeout="fail"``.

    Attributes:
        stills: The stills that were waiting for a decision (stored; nothing was animated).
    """

    def __init__(self, message: str, stills: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.stills = list(stills)


class ShotRejected(PrefectRunwayError):
    """A shot was rejected at review (not a failure: nothing was animated, as asked)."""

    def __init__(self, name: str, still: Any) -> None:
        super().__init__(f"shot {name!r} was rejected at review; nothing was animated")
        self.still = still


class ReviewFailed(PrefectRunwayError):
    """A reviewed shot's still (or its regeneration) could not be made."""
