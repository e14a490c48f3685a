"""Prefect global concurrency limits per provider: which exist, and a slot of one per job.

A storyboard's jobs each hold a slot of the limit named for their provider
(``segmind-jobs``, ...) where it exists, so that several workers share a provider's
concurrency. The lookup runs once per flow run.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable

from prefect.client.orchestration import get_client
from prefect.concurrency.asyncio import concurrency as global_concurrency
from prefect.exceptions import ObjectNotFound

__all__ = ["DEFAULT_PROVIDER_LIMIT", "ProviderSlots", "existing_limits"]

#: The Prefect global concurrency limit each job takes a slot of, when it exists.
DEFAULT_PROVIDER_LIMIT = "{provider}-jobs"


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
