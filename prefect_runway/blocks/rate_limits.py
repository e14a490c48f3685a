"""A block's ``global_rate_limit``: slots of a Prefect global concurrency limit, taken for
the engine's rate limiter (:class:`prefect_runway.engine.ratelimit.GlobalRateLimit`)."""

from __future__ import annotations

from prefect_runway.engine.ratelimit import GlobalSlots
from prefect_runway.errors import InvalidRequest

__all__ = ["PREFECT_GLOBAL_SLOTS", "global_limit_size", "take_global_slots"]


async def global_limit_size(name: str) -> int | None:
    """The global concurrency limit's size (slots), or None when it cannot be read."""
    from prefect.client.orchestration import get_client

    try:
        async with get_client() as client:
            limit = await client.read_global_concurrency_limit_by_name(name)
        return int(limit.limit)
    except Exception:  # noqa: BLE001 - unknown: fetch fixed batches; a missing name fails below
        return None


async def take_global_slots(name: str, count: int) -> None:
    """Take ``count`` slots of the global concurrency limit ``name`` (waits for them).

    Create the limit with slot decay first, e.g.
    ``prefect gcl create segmind-api --limit 20 --slot-decay-per-second 20``.

    Raises:
        InvalidRequest: there is no limit of that name (before the request goes).
    """
    from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError, rate_limit

    try:
        # strict: a misspelled name is an error, not a silently absent limit.
        await rate_limit(name, occupy=count, strict=True)
    except ConcurrencySlotAcquisitionError as exc:
        raise InvalidRequest(
            "global_rate_limit",
            f"there is no Prefect global concurrency limit named {name!r}",
            allowed="the name of an existing limit (create one with `prefect gcl create "
            f"{name} --limit N --slot-decay-per-second R`)",
        ) from exc


#: The slots a block's ``global_rate_limit`` takes: Prefect's global concurrency limits.
PREFECT_GLOBAL_SLOTS = GlobalSlots(take=take_global_slots, size=global_limit_size)
