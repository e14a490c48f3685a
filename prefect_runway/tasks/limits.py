"""Prefect global concurrency limits per provider: which exist, and a slot of one per job.

A storyboard's jobs each hold a slot of the limit named for their provider
(``segmind-jobs``, ...) where it exists, so that several workers share a provider's
concurrency. The lookup runs once per flow run.

Where a provider has no such limit, :class:`ModelSlots` bounds its jobs per model in this
flow run by what the account itself allows at once (Runway's ``GET /v1/organization``:
``tier.models[m].maxConcurrentGenerations``, read with the balance before the run), so that
no job waits THROTTLED at the provider.

:func:`task_run_slot` bounds this package's Prefect task runs open at once in one event loop
(``PREFECT_RUNWAY_MAX_TASK_RUNS``, default 64): each holds Prefect's objects for a running
task (its TaskRun, states, contexts, engine), so the chains of a large batch wait for a place
in the flow, where waiting costs a coroutine.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from prefect.client.orchestration import get_client
from prefect.concurrency.asyncio import concurrency as global_concurrency
from prefect.exceptions import ObjectNotFound

from prefect_runway.engine.slots import LoopSlots
from prefect_runway.settings import get_settings

__all__ = [
    "DEFAULT_PROVIDER_LIMIT", "ModelSlots",
    "ProviderSlots", "existing_limits", "max_task_runs", "task_run_slot",
]

#: The Prefect global concurrency limit each job takes a slot of, when it exists.
DEFAULT_PROVIDER_LIMIT = "{provider}-jobs"

def max_task_runs() -> int:
    """This package's task runs open at once per event loop (see the module's docstring):
    the setting ``PREFECT_RUNWAY_MAX_TASK_RUNS`` (1 to 10000), or 64.

    Raises:
        InvalidRequest: a setting holds a value it does not take (the flows check it before
            anything is sent).
    """
    return get_settings().max_task_runs


_TASK_RUN_SLOTS = LoopSlots(max_task_runs)


@contextlib.asynccontextmanager
async def task_run_slot() -> AsyncIterator[None]:
    """Hold one of this event loop's places for a task run (the flows' submits), for as long
    as the task run lasts. Nothing held may wait for another place: the task runs do not
    start task runs."""
    async with _TASK_RUN_SLOTS.semaphore():
        yield


async def existing_limits(names: set[str]) -> dict[str, bool]:
    """Which of these Prefect global concurrency limits exist and are active."""
    found: dict[str, bool] = {}
    async with get_client() as client:
        for name in sorted(names):
            try:
                limit = await client.read_global_concurrency_limit_by_name(name)
                found[name] = bool(getattr(limit, "active", True))
            except ObjectNotFound:
                found[name] = False
    return found


class ProviderSlots:
    """A slot of each provider's global concurrency limit, where that limit exists.

    Args:
        providers: The providers a run uses.
        template: The limit's name, ``{provider}`` replaced; None or empty for none.
    """

    def __init__(self, providers: Iterable[str], template: str | None) -> None:
        self.limit_of = {p: template.format(provider=p) for p in providers} if template else {}
        self.existing: dict[str, bool] = {}

    async def lookup(self) -> None:
        """Find which limits exist (once per run)."""
        if self.limit_of:
            self.existing = await existing_limits(set(self.limit_of.values()))

    def active(self, provider: str) -> str | None:
        """The name of ``provider``'s limit if it exists, else None."""
        name = self.limit_of.get(provider)
        return name if name and self.existing.get(name) else None

    @contextlib.asynccontextmanager
    async def slot(self, provider: str) -> AsyncIterator[None]:
        """Hold a slot of ``provider``'s limit (nothing where it has none)."""
        name = self.active(provider)
        if name:
            async with global_concurrency(name, occupy=1):
                yield
        else:
            yield


class ModelSlots:
    """This flow run's bound on each provider model's jobs at once, from the account's limits.

    Runway's organization reports, per model, how many generations may run at once
    (``maxConcurrentGenerations``); more wait THROTTLED at Runway. Where the user set no
    provider limit (no active Prefect global concurrency limit for the provider, see
    :class:`ProviderSlots`), that number bounds this run's jobs of the model, so none waits
    THROTTLED because of this run. Other flow runs with the same key are not counted.

    Args:
        bounds: Jobs at once per ``(provider, model)``.
    """

    def __init__(self, bounds: Mapping[tuple[str, str], int] | None = None) -> None:
        self.bounds = dict(bounds or {})
        self._semaphores = {key: asyncio.Semaphore(n) for key, n in self.bounds.items()}

    @classmethod
    def from_balances(cls, balances: Mapping[str, Any], slots: ProviderSlots) -> ModelSlots:
        """The bounds from balances read before the run (``costs.check_balances``).

        A provider whose global concurrency limit is active keeps that limit only.
        """
        bounds: dict[tuple[str, str], int] = {}
        for provider, balance in balances.items():
            if slots.active(provider):
                continue
            for model, limits in (getattr(balance, "models", None) or {}).items():
                n = getattr(limits, "max_concurrent_generations", None)
                if isinstance(n, int) and n >= 1:
                    bounds[(provider, model)] = n
        return cls(bounds)

    def bound(self, provider: str, model: str) -> int | None:
        """Jobs of ``model`` on ``provider`` at once in this run, or None (unbounded here)."""
        return self.bounds.get((provider, model))

    @contextlib.asynccontextmanager
    async def slot(self, provider: str, model: str) -> AsyncIterator[None]:
        """Hold one of the model's places (nothing where it has no bound)."""
        semaphore = self._semaphores.get((provider, model))
        if semaphore is None:
            yield
            return
        async with semaphore:
            yield
