"""A run's budget: its cap, and the guard that reserves every submit's estimate in it (and in
its blocks' daily budgets) before the submit is sent."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

from prefect_runway.errors import BudgetExceeded, InvalidRequest, NotStarted
from prefect_runway.money.cost_plan import CostPlan
from prefect_runway.money.costs import Cost, format_amount, to_usd

__all__ = ["Budget", "BudgetGuard", "Reservation"]

_MONEY = re.compile(r"^\s*(USD|\$)\s*([0-9]+(?:\.[0-9]+)?)\s*$|^\s*([0-9]+(?:\.[0-9]+)?)\s*USD\s*$",
                    re.IGNORECASE)


@dataclass(frozen=True)
class Budget:
    """A run's cap: ``amount`` in US dollars (``usd=True``) or in the provider's own unit."""

    amount: float
    usd: bool

    @classmethod
    def parse(
        cls, value: Budget | float | int | str | None, field: str = "budget",
    ) -> Budget | None:
        """``30`` (the provider's unit), ``"USD 5.00"`` / ``"$5"`` / ``"5 USD"`` (dollars).

        Args:
            value: The budget.
            field: The parameter or block field it came from (named in errors).

        Raises:
            InvalidRequest: naming ``field`` and the allowed forms.
        """
        allowed = "a number >= 0 in the provider's unit, or a currency like 'USD 5.00'"
        if value is None or isinstance(value, Budget):
            return value
        if isinstance(value, bool):
            raise InvalidRequest(field, f"{value!r} is not a budget", allowed=allowed)
        if isinstance(value, (int, float)):
            if value < 0 or value != value or value == float("inf"):
                raise InvalidRequest(field, f"{value} is not a budget", allowed=allowed)
            return cls(float(value), usd=False)
        if isinstance(value, str):
            text = value.strip()
            try:
                number = float(text)
            except ValueError:
                match = _MONEY.match(text)
                if not match:
                    raise InvalidRequest(field, f"{value!r} is not a budget",
                                         allowed=allowed) from None
                return cls(float(match.group(2) or match.group(3)), usd=True)
            return cls.parse(number, field)
        raise InvalidRequest(field, f"{type(value).__name__} is not a budget", allowed=allowed)

    def value_of(self, provider: str, amount: float, unit: str) -> float:
        """``amount`` of ``unit`` on ``provider`` in this budget's terms."""
        if not self.usd:
            return amount
        usd = to_usd(provider, amount, unit)
        if usd is None:
            raise InvalidRequest("budget", f"no dollar rate for {provider} {unit}",
                                 allowed="a number in the provider's unit")
        return usd

    def describe(self) -> str:
        return f"USD {self.amount:.2f}" if self.usd else f"{format_amount(self.amount)} (provider's unit)"

    def check(self, plan: CostPlan) -> float:
        """The plan's cost in this budget's terms; raise if it is over.

        Raises:
            InvalidRequest: a number budget for a plan in several units.
            BudgetExceeded: the plan costs more than the budget; nothing was sent.
        """
        if plan.unpriced or any(r.unpriced for r in plan.rows):
            names = plan.unpriced or sorted(f"{r.model} on {r.provider}" for r in plan.rows
                                            if r.unpriced)
            raise BudgetExceeded(
                f"the plan has no known price for {', '.join(names)}, so it could pass the "
                f"budget of {self.describe()}; give its price in the credentials block's "
                "prices; nothing was sent", budget=self.amount,
            )
        if not self.usd:  # every unit the run may pay in, fallbacks' included
            units = {(r.provider, r.unit) for r in plan.rows} | set(plan.worst)
            if len({u for _, u in units}) > 1 or len({p for p, _ in units}) > 1:
                raise InvalidRequest(
                    "budget", f"{self.amount:g} is ambiguous: the plan spends on "
                    f"{', '.join(sorted(f'{p} ({u})' for p, u in units))}",
                    allowed="a currency like 'USD 5.00'",
                )
        total = round(sum(self.value_of(r.provider, r.amount, r.unit) for r in plan.rows), 6)
        if total > self.amount + 1e-9:
            raise BudgetExceeded(
                f"the plan costs {format_amount(total)}, over the budget of {self.describe()}: "
                f"{plan.requests} request(s) to pay; nothing was sent",
                planned=total, budget=self.amount,
            )
        return total


@dataclass
class Reservation:
    """What :meth:`BudgetGuard.admit` reserved for one submit: in the run's budget, and in its
    block's daily budget (a :class:`prefect_runway.spend.DailySpend`) where it has one.

    Attributes:
        run: The amount reserved in the run's budget (its terms).
        daily: The block's daily budget, or None.
        daily_amount: The amount reserved there (its terms).
        provider: The provider the submit goes to.
        cost: The estimate reserved.
        hold: The daily budget's record of the reservation.
    """

    run: float = 0.0
    daily: Any = None
    daily_amount: float = 0.0
    provider: str = ""
    cost: Cost | None = None
    hold: Any = None


class BudgetGuard:
    """The one reservation path of a run's submits, against the run's budget (one flow run)
    and the daily budgets of its blocks (``daily``: :class:`prefect_runway.spend.DailyBudgets`).

    Before each submit, :meth:`admit` reserves its estimate in both; one that would pass
    either (or that has no known price while there is a budget) is refused with
    :class:`NotStarted` and nothing is sent. When the submit is known to have cost nothing
    (refused, or an earlier job reused) or its job ended, :meth:`settle` releases the
    reservation and counts what was charged. The run's reservations are taken under one
    lock, shared by the flow run's concurrent chains; a daily budget's on the spend records'
    storage, shared by every run (see :mod:`prefect_runway.spend`).
    """

    def __init__(self, budget: Budget | None, daily: Any = None) -> None:
        self.budget = budget
        self.daily = daily
        self.spent = 0.0
        self.in_flight = 0.0
        self._lock = asyncio.Lock()

    async def reserve(self, provider: str, cost: Cost | None) -> float | None:
        """Reserve ``cost`` in the run's budget; the amount reserved, or None when it would
        pass the budget (an unknown cost, None, passes any budget)."""
        if self.budget is None:
            return 0.0
        if cost is None:
            return None
        amount = self.budget.value_of(provider, cost.amount, cost.unit)
        async with self._lock:
            if self.spent + self.in_flight + amount > self.budget.amount + 1e-9:
                return None
            self.in_flight += amount
            return amount

    def _limits(self, entry: Any) -> str:
        limits = [f"the budget of {self.budget.describe()}"] if self.budget is not None else []
        return " and ".join(limits + ([entry.describe()] if entry is not None else []))

    async def admit(
        self, provider: str, cost: Cost | None, credentials: Any = None, what: str = "it",
        *, model: str = "",
    ) -> Reservation:
        """Reserve a submit's estimate in the run's budget and its block's daily budget.

        Args:
            provider: Where the submit goes.
            cost: Its estimate (None: no known price).
            credentials: Its credentials block (whose daily budget applies, if it has one).
            what: The step, for the error (``its video``).
            model: The model, for the error of an unknown price.

        Raises:
            NotStarted: it would pass one of them, or has no known price and there is a
                budget (the message names which); nothing was reserved.
        """
        entry = self.daily.entry(credentials) if self.daily and credentials is not None else None
        if cost is None and (self.budget is not None or entry is not None):
            raise NotStarted(what, self._limits(entry),
                             unpriced=f"{model or 'its model'} on {provider}")
        run = await self.reserve(provider, cost)
        if run is None:
            assert self.budget is not None and cost is not None
            raise NotStarted(
                what, self._limits(None), budget=self.budget.amount,
                planned=round(self.spent + self.in_flight + self.budget.value_of(
                    provider, cost.amount, cost.unit), 6),
            )
        if entry is None:
            return Reservation(run, provider=provider, cost=cost)
        hold = await entry.reserve(cost, what)
        if hold is None:
            await self.settle(provider, run, None)
            raise NotStarted(what, entry.describe(), budget=entry.budget.amount)
        return Reservation(run, entry, hold.amount, provider, cost, hold)

    async def settle(
        self, provider: str, reserved: float | Reservation, cost: Cost | None,
        job_id: str | None = None,
    ) -> None:
        """Release a reservation and count what was charged (None: nothing).

        Args:
            provider: Where the submit went (a :class:`Reservation` knows it).
            reserved: What :meth:`admit` (or :meth:`reserve`) returned.
            cost: What the job was charged (or, where unknown but possible, its estimate);
                None when it provably cost nothing.
            job_id: The job, whose spend record (if written) then counts it once.
        """
        if isinstance(reserved, Reservation):
            if reserved.daily is not None:
                await reserved.daily.release(reserved.hold, cost, job_id)
            provider = reserved.provider or provider
            reserved = reserved.run
        if self.budget is None:
            return
        async with self._lock:
            self.in_flight = max(0.0, self.in_flight - reserved)
            if cost is not None:
                self.spent += self.budget.value_of(provider, cost.amount, cost.unit)


