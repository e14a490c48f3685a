"""Before a run: each provider's balance, read where it has an endpoint, against the plan."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prefect_runway.errors import InsufficientCredits
from prefect_runway.models import Balance
from prefect_runway.money.cost_plan import CostPlan
from prefect_runway.money.costs import format_amount

__all__ = ["check_balances"]


async def check_balances(plan: CostPlan, credentials: Iterable[Any]) -> dict[str, Balance]:
    """Read the balance of each provider the plan spends on; refuse a plan it cannot pay.

    Providers without a balance endpoint (or whose endpoint does not answer) are skipped.

    Raises:
        InsufficientCredits: a provider's balance is below the plan's cost there; nothing sent.
    """
    needed: dict[str, tuple[float, str]] = {}
    for (provider, unit), amount in plan.totals().items():
        needed[provider] = (needed.get(provider, (0.0, unit))[0] + amount, unit)
    balances: dict[str, Balance] = {}
    done: set[str] = set()
    for creds in credentials:
        provider = creds.provider_name
        if provider in done or provider not in needed:
            continue
        done.add(provider)
        async with creds.get_client() as client:
            try:
                balance = await client.balance()
            except NotImplementedError:
                continue
        balances[provider] = balance
        amount, unit = needed[provider]
        if balance.credits is not None and balance.credits + 1e-9 < amount:
            raise InsufficientCredits(
                f"the plan needs {format_amount(amount)} {unit} on {provider}, the balance is "
                f"{format_amount(balance.credits)}; nothing was sent",
                provider=provider,
            )
    return balances


