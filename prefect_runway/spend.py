"""A credentials block's daily budget, and what was spent with the block each day.

A block's ``daily_budget`` (``ProviderCredentials.daily_budget``: a number in the provider's
unit, or a currency like ``"USD 50"``) caps what all flow runs spend with that block in one
**day: the UTC calendar day** (00:00 to 24:00 UTC), whatever the workers' time zones.

* **Before a run** (:meth:`DailyBudgets.check`): a plan whose cost on a block plus what was
  already recorded for that block today would pass its daily budget is refused with
  :class:`~prefect_runway.errors.BudgetExceeded`; nothing is sent.
* **During a run** (:meth:`DailyBudgets.reserve`, through
  :class:`~prefect_runway.costs.BudgetGuard`): before each submit, what is recorded today
  (re-read, so other runs' charges count) plus this run's estimates in flight plus the new
  job's estimate must fit; otherwise the job is not started (running jobs finish).
* **After each job** (:func:`record_spend`): its charged cost (or the estimate, marked) is
  recorded under the block and the day it was submitted (when the providers charge).

Where: beside the submission ledger (:func:`prefect_runway.ledger.ledger_of`), in the run's
result storage — locally ``<dir>/prefect-runway-spend/<YYYY-MM-DD>/<block>/``, in S3
``<prefix>/prefect-runway-spend/<YYYY-MM-DD>/<block>/`` — one small JSON record per job,
written once and atomically (a temporary file linked into place locally, a conditional
``PUT`` in S3). Records are never rewritten, so concurrent runs on several workers never
lose each other's charges, and a job reused by a re-run is counted once. What was spent
today is the sum of the day's records.

What it does not see: jobs of the block run before it had a daily budget (nothing is
recorded without one), jobs whose outputs were never stored (a failed job Runway still
charged), runs whose storage is elsewhere (the records live with the storage), and two
runs' estimates in flight at the same moment (each sees the other's recorded charges, not
its reservations). A block is known by its saved name (``runway-credentials/nightly``); an
unsaved block by its provider and API origin.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from prefect_runway.costs import Budget, Cost, CostPlan, _num
from prefect_runway.errors import BudgetExceeded, InvalidRequest, StorageError
from prefect_runway.ledger import (
    LocalLedgerBackend,
    S3LedgerBackend,
    _current_run_ids,
    api_origin,
    ledger_of,
)

__all__ = ["SPEND_FOLDER", "DailyBudgets", "DailySpend", "block_identity", "record_spend",
           "utc_day"]

#: The folder of the spend records, beside the submission ledger's.
SPEND_FOLDER = "prefect-runway-spend"
RECORD_VERSION = 1


def utc_day(moment: datetime | None = None) -> str:
    """The UTC calendar day of ``moment`` (default now), ``YYYY-MM-DD``."""
    moment = moment or datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d")


def block_identity(credentials: Any) -> tuple[str, str]:
    """``(folder name, label)`` of a credentials block: its saved name, else its provider
    and API origin. Holds no secret."""
    label = credentials.saved_name()
    if not label:
        label = f"{credentials.provider_name} at {api_origin(credentials.resolved_base_url())}"
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._-")[:80] or "block"
    return f"{safe}-{hashlib.sha256(label.encode()).hexdigest()[:12]}", label


def _backend(storage: Any, day: str, folder: str) -> Any:
    """The backend of one block's records of one day, beside the ledger of ``storage``."""
    ledger = ledger_of(storage).backend
    if isinstance(ledger, LocalLedgerBackend):
        return LocalLedgerBackend(ledger.directory.parent / SPEND_FOLDER / day / folder)
    if isinstance(ledger, S3LedgerBackend):
        parent = ledger.prefix.rsplit("/", 1)[0] if "/" in ledger.prefix else ""
        prefix = "/".join(p for p in (parent, SPEND_FOLDER, day, folder) if p)
        return S3LedgerBackend(ledger.client, ledger.bucket, prefix)
    raise InvalidRequest("storage", f"spend records cannot live beside {ledger!r}",
                         allowed="a local directory or S3")


def _record_scope(provider: str, job_id: str) -> str:
    return f"{provider}-{hashlib.sha256(job_id.encode()).hexdigest()[:40]}"


class DailySpend:
    """One block's daily budget and the spend recorded under it.

    Args:
        credentials: The credentials block.
        storage: The run's storage (the records live beside its submission ledger).
        budget: The block's daily budget.
    """

    def __init__(self, credentials: Any, storage: Any, budget: Budget) -> None:
        self.credentials = credentials
        self.provider: str = credentials.provider_name
        self.storage = storage
        self.budget = budget
        self.folder, self.label = block_identity(credentials)
        self.in_flight = 0.0
        self._seen: dict[str, dict[str, float]] = {}  # day -> record scope -> value
        self._lock = asyncio.Lock()

    def value(self, cost: Cost | None) -> float:
        """A cost in this budget's terms (0 for an unknown one)."""
        return 0.0 if cost is None else self.budget.value_of(self.provider, cost.amount, cost.unit)

    def _spent(self, day: str) -> float:
        backend = _backend(self.storage, day, self.folder)
        seen = self._seen.setdefault(day, {})
        for scope in backend.scopes():
            if scope in seen:
                continue  # records are written once: read each once
            data = backend.read(scope)
            if data is None:
                continue
            try:
                record = json.loads(data)
                seen[scope] = self.budget.value_of(
                    record["provider"], float(record["amount"]), str(record["unit"]))
            except (ValueError, KeyError, TypeError) as exc:
                raise StorageError(
                    f"the spend record {backend.location(scope)} cannot be read "
                    f"({type(exc).__name__}); what {self.label} spent today is unknown, so "
                    f"nothing is sent: remove or repair it"
                ) from None
        return round(sum(seen.values()), 6)

    async def spent(self, day: str | None = None) -> float:
        """What was recorded for this block on ``day`` (default today, UTC), in the
        budget's terms."""
        return await asyncio.to_thread(self._spent, day or utc_day())

    async def reserve(self, cost: Cost | None) -> float | None:
        """Reserve a job's estimate; the amount reserved, or None when it would pass the
        daily budget (what is recorded today, re-read, plus what this run has in flight)."""
        amount = self.value(cost)
        async with self._lock:
            spent = await self.spent()
            if spent + self.in_flight + amount > self.budget.amount + 1e-9:
                return None
            self.in_flight += amount
            return amount

    async def release(self, amount: float) -> None:
        """Release a reservation (the job ended; its charge is recorded by then)."""
        async with self._lock:
            self.in_flight = max(0.0, self.in_flight - amount)

    def describe(self) -> str:
        return f"the daily budget of {self.budget.describe()} of {self.label}"


def _record(storage: Any, credentials: Any, result: Any, cost: Cost, day: str) -> bool:
    folder, label = block_identity(credentials)
    backend = _backend(storage, day, folder)
    g = result.generation
    record = {
        "version": RECORD_VERSION, "day": day, "block": label, "provider": g.provider,
        "model": g.model, "kind": g.kind, "job_id": g.job_id, "fingerprint": g.fingerprint,
        "amount": cost.amount, "unit": cost.unit, "estimated": cost.estimated,
        "recorded_at": datetime.now(timezone.utc).isoformat(), "flow_run_id": _current_run_ids()[0],
    }
    data = json.dumps(record, indent=1).encode() + b"\n"
    return bool(backend.create(_record_scope(g.provider, g.job_id), data))


async def record_spend(credentials: Any, storage: Any, result: Any, cost: Cost | None,
                       logger: Any = None) -> bool:
    """Record a finished job's cost under its block and the (UTC) day it was submitted, where
    the block has a daily budget. A job already recorded is not counted again. Never raises: a record that
    cannot be written is logged (the job is paid and stored either way).

    Returns:
        True when a new record was written.
    """
    if getattr(credentials, "daily_budget", None) is None or cost is None:
        return False
    try:
        day = utc_day(result.generation.submitted_at)
        return await asyncio.to_thread(_record, storage, credentials, result, cost, day)
    except Exception as exc:  # the job is paid and stored: never fail it over the record
        if logger is not None:
            logger.warning("Could not record the cost of %s job %s for the daily budget: %s",
                           result.generation.provider, result.generation.job_id, exc)
        return False


class DailyBudgets:
    """The daily budgets of a run's credentials blocks (those that have one)."""

    def __init__(self, entries: dict[str, DailySpend] | None = None) -> None:
        self.entries = entries or {}

    @classmethod
    def of(cls, credentials: Iterable[Any], storage: Any) -> DailyBudgets:
        """The daily budgets of these blocks, kept beside ``storage``'s ledger.

        Raises:
            InvalidRequest: a block's ``daily_budget`` is not a budget.
        """
        entries: dict[str, DailySpend] = {}
        for creds in credentials:
            budget = Budget.parse(getattr(creds, "daily_budget", None), field="daily_budget")
            if budget is None:
                continue
            folder, _ = block_identity(creds)
            entries.setdefault(folder, DailySpend(creds, storage, budget))
        return cls(entries)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def entry(self, credentials: Any) -> DailySpend | None:
        """The daily budget of this block, if it has one."""
        if not self.entries or getattr(credentials, "daily_budget", None) is None:
            return None
        return self.entries.get(block_identity(credentials)[0])

    def planned(self, plan: CostPlan, plans: Sequence[Any]) -> dict[str, float]:
        """What the plan will pay on each block with a daily budget (its terms)."""
        to_pay = {step.key: step for step in plan.planned}
        amounts: dict[str, float] = {}
        seen: set[str] = set()
        for shot in plans:
            chain = getattr(shot, "chain", shot)
            for key, creds in ((chain.still_key, chain.image_credentials),
                               (chain.chain_key, chain.video_credentials)):
                if key in seen or key not in to_pay:
                    continue
                seen.add(key)
                entry = self.entry(creds)
                if entry is not None:
                    amounts[entry.folder] = round(
                        amounts.get(entry.folder, 0.0) + entry.value(to_pay[key].cost), 6)
        return amounts

    async def check(self, plan: CostPlan, plans: Sequence[Any]) -> dict[str, float]:
        """Refuse a plan that would pass a block's daily budget with today's spend.

        Returns:
            What each block with a daily budget spent today (UTC), before this run.

        Raises:
            BudgetExceeded: nothing was sent.
        """
        planned = self.planned(plan, plans)
        spent: dict[str, float] = {}
        for folder, entry in sorted(self.entries.items()):
            spent[folder] = today = await entry.spent()
            cost = planned.get(folder, 0.0)
            if today + cost > entry.budget.amount + 1e-9:
                raise BudgetExceeded(
                    f"the plan costs {_num(cost)} on {entry.label}, which spent {_num(today)} "
                    f"today ({utc_day()} UTC): over {entry.describe()}; nothing was sent",
                    planned=round(today + cost, 6), budget=entry.budget.amount,
                )
        return spent
