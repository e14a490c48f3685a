"""A credentials block's daily budget (the UTC day): what every run spent with the block,
and the reservations runs hold in it before each submit, recorded beside the submission
ledger. How it works, and what it does not see: docs/money.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from prefect_runway.errors import BudgetExceeded, StorageError
from prefect_runway.money.budget import Budget, BudgetGuard
from prefect_runway.money.cost_plan import CostPlan
from prefect_runway.money.costs import Cost, format_amount
from prefect_runway.money.prices import PROVIDER_UNITS
from prefect_runway.providers.wire import api_origin
from prefect_runway.storage.records import RecordBackend, ledger_backend

__all__ = ["HOLDS_FOLDER", "SPEND_FOLDER", "DailyBudgets", "DailySpend", "Hold",
           "block_identity", "budget_guard", "record_spend", "utc_day"]

#: The folder of the spend records, beside the submission ledger's.
SPEND_FOLDER = "prefect-runway-spend"
#: The folder of a block's reservations of one day, inside its spend records' folder.
HOLDS_FOLDER = "reservations"
RECORD_VERSION = 1
#: How many times a reservation is tried again after another run took its number first.
MAX_RESERVE_ATTEMPTS = 200
#: How long a reservation outlives its job's longest wait (a process that died leaves it).
HOLD_MARGIN_SECONDS = 600.0

_log = logging.getLogger(__name__)


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


def _backend(storage: Any, day: str, folder: str, *inside: str) -> RecordBackend:
    """The backend of one block's records of one day (or of a folder ``inside`` them),
    beside the ledger of ``storage``."""
    return ledger_backend(storage, fallback=True).sibling(SPEND_FOLDER, day, folder, *inside)


def _record_scope(provider: str, job_id: str) -> str:
    return f"{provider}-{hashlib.sha256(job_id.encode()).hexdigest()[:40]}"


@dataclass(frozen=True)
class Hold:
    """A reservation in a block's daily budget.

    Attributes:
        day: The UTC day it was made on (its record lives there).
        seq: Its number in that day's sequence.
        amount: What it reserves, in the budget's terms.
    """

    day: str
    seq: int
    amount: float


def _hold_scope(seq: int) -> str:
    return f"r-{seq:08d}"


def _release_scope(seq: int) -> str:
    return f"x-{seq:08d}"


class DailySpend:
    """One block's daily budget: the spend recorded under it and the reservations held in it.

    Args:
        credentials: The credentials block.
        storage: The run's storage (the records live beside its submission ledger).
        budget: The block's daily budget.
        flow_run_id: The flow run reserving in it (recorded with each reservation).
    """

    def __init__(self, credentials: Any, storage: Any, budget: Budget,
                 flow_run_id: str | None = None) -> None:
        self.credentials = credentials
        self.flow_run_id = flow_run_id
        self.provider: str = credentials.provider_name
        self.storage = storage
        self.budget = budget
        self.folder, self.label = block_identity(credentials)
        waits = (float(getattr(credentials, "wait_timeout_seconds", 1800.0))
                 + float(getattr(credentials, "queue_timeout_seconds", 3600.0)))
        #: How long a reservation counts when nobody releases it (its process died).
        self.hold_seconds = min(86400.0, waits + HOLD_MARGIN_SECONDS)
        self._held: dict[tuple[str, int], float] = {}  # this object's open reservations
        self._seen: dict[str, dict[str, float]] = {}  # day -> record scope -> value
        self._holds: dict[str, dict[str, tuple[Any, ...]]] = {}  # day -> scope -> _hold()
        self._lock = asyncio.Lock()

    @property
    def in_flight(self) -> float:
        """What this object holds reserved now, in the budget's terms."""
        return round(sum(self._held.values()), 6)

    def value(self, cost: Cost | None) -> float:
        """A cost in this budget's terms (0 for an unknown one)."""
        return 0.0 if cost is None else self.budget.value_of(self.provider, cost.amount, cost.unit)

    def _unreadable(self, backend: Any, scope: str, exc: BaseException) -> StorageError:
        return StorageError(
            f"the spend record {backend.location(scope)} cannot be read "
            f"({type(exc).__name__}); what {self.label} spent today is unknown, so "
            f"nothing is sent: remove or repair it"
        )

    def _value(self, record: dict[str, Any]) -> float:
        """A record's amount in the budget's terms."""
        return self.budget.value_of(record["provider"], float(record["amount"]),
                                    str(record["unit"]))

    def _read_new(self, backend: Any, seen: dict[str, Any],
                  parse: Callable[[str, dict[str, Any]], Any]) -> dict[str, Any]:
        """``seen`` with every record of ``backend`` not in it yet, as ``parse(scope,
        record)`` makes it (records are written once: each is read once).

        Raises:
            StorageError: a record cannot be read; nothing is sent.
        """
        for scope in backend.scopes():
            if scope in seen:
                continue
            data = backend.read(scope)
            if data is None:
                continue
            try:
                seen[scope] = parse(scope, json.loads(data))
            except (ValueError, KeyError, TypeError) as exc:
                raise self._unreadable(backend, scope, exc) from None
        return seen

    def _records(self, day: str) -> dict[str, float]:
        """The day's spend records: scope -> value."""
        return self._read_new(_backend(self.storage, day, self.folder),
                              self._seen.setdefault(day, {}), lambda _, r: self._value(r))

    def _spent(self, day: str) -> float:
        return round(sum(self._records(day).values()), 6)

    def _hold(self, scope: str, record: dict[str, Any]) -> tuple[Any, ...]:
        """A reservation ``("r", seq, value, expires_at)`` or a release ``("x", seq,
        charged value or None, its job's spend record scope or None)``."""
        kind, seq = scope[:1], int(scope[2:])
        if kind == "r":
            return kind, seq, self._value(record), datetime.fromisoformat(record["expires_at"])
        charged = None if record.get("amount") is None else self._value(record)
        return kind, seq, charged, record.get("record")

    def _hold_records(self, day: str) -> dict[str, tuple[Any, ...]]:
        """The day's reservations (``r-<n>``) and releases (``x-<n>``), see :meth:`_hold`."""
        return self._read_new(_backend(self.storage, day, self.folder, HOLDS_FOLDER),
                              self._holds.setdefault(day, {}), self._hold)

    def _committed(self, day: str, now: datetime) -> tuple[float, float, int]:
        """``(spent, held, last)`` on ``day``: what the records count (with what released
        reservations say their jobs were charged, where no record counts it), what open
        reservations hold, and the last reservation's number."""
        holds = self._hold_records(day)  # first: a release read here has its job's record written
        records = self._records(day)
        spent, held, last = sum(records.values()), 0.0, 0
        released = {seq for kind, seq, *_ in holds.values() if kind == "x"}
        for kind, seq, value, extra in holds.values():
            if kind == "x":
                if value is not None and extra not in records:
                    spent += value
            else:
                last = max(last, seq)
                if seq not in released and extra > now:
                    held += value
        return round(spent, 6), round(held, 6), last

    async def spent(self, day: str | None = None) -> float:
        """What was recorded for this block on ``day`` (default today, UTC), in the
        budget's terms."""
        return await asyncio.to_thread(self._spent, day or utc_day())

    async def committed(self, day: str | None = None) -> tuple[float, float]:
        """``(spent, held)`` on ``day`` (default today, UTC): what every run spent with the
        block (its records, and what released reservations say), and what runs in flight
        hold reserved now; in the budget's terms."""
        spent, held, _ = await asyncio.to_thread(
            self._committed, day or utc_day(), datetime.now(timezone.utc))
        return spent, held

    async def reserve(self, cost: Cost | None, what: str = "a job") -> Hold | None:
        """Reserve a job's estimate before it is sent; None when it would pass the daily
        budget (what every run spent today, plus what every run holds reserved, plus it).

        Raises:
            StorageError: the records cannot be read or written (nothing is sent).
        """
        amount = self.value(cost)
        async with self._lock:  # this process's reservations one at a time; others by number
            hold = await asyncio.to_thread(self._reserve, cost, amount, what)
            if hold is not None:
                self._held[(hold.day, hold.seq)] = hold.amount
            return hold

    def _reserve(self, cost: Cost | None, amount: float, what: str) -> Hold | None:
        day = utc_day()
        backend = _backend(self.storage, day, self.folder, HOLDS_FOLDER)
        for _ in range(MAX_RESERVE_ATTEMPTS):
            now = datetime.now(timezone.utc)
            spent, held, last = self._committed(day, now)
            if spent + held + amount > self.budget.amount + 1e-9:
                return None
            record = {
                "version": RECORD_VERSION, "day": day, "block": self.label, "what": what,
                "provider": self.provider,
                "amount": 0.0 if cost is None else cost.amount,
                "unit": PROVIDER_UNITS.get(self.provider, "credits") if cost is None else cost.unit,
                "reserved_at": now.isoformat(),
                "expires_at": (now + timedelta(seconds=self.hold_seconds)).isoformat(),
                "flow_run_id": self.flow_run_id,
            }
            if backend.create(_hold_scope(last + 1), json.dumps(record, indent=1).encode() + b"\n"):
                return Hold(day, last + 1, amount)
            # Another run took that number first: read again, its reservation counted.
        raise StorageError(
            f"could not reserve in {self.describe()}: other runs took every number first "
            f"{MAX_RESERVE_ATTEMPTS} times; nothing was sent"
        )

    async def release(self, hold: Hold | None, charged: Cost | None = None,
                      job_id: str | None = None) -> None:
        """End a reservation: its job ended, charged ``charged`` (None: nothing), or was not
        paid for. Never raises: a release that cannot be written is logged, and the
        reservation counts until it expires."""
        if hold is None:
            return
        self._held.pop((hold.day, hold.seq), None)
        record = {
            "version": RECORD_VERSION, "seq": hold.seq, "job_id": job_id,
            "record": _record_scope(self.provider, job_id) if job_id else None,
            "provider": self.provider,
            "amount": None if charged is None else charged.amount,
            "unit": None if charged is None else charged.unit,
            "released_at": datetime.now(timezone.utc).isoformat(),
        }
        backend = _backend(self.storage, hold.day, self.folder, HOLDS_FOLDER)
        try:
            await asyncio.to_thread(backend.create, _release_scope(hold.seq),
                                    json.dumps(record, indent=1).encode() + b"\n")
        except Exception as exc:  # the job is done either way; the hold expires in time
            _log.warning("Could not release reservation %d of %s (%s: %s); it counts until it "
                         "expires", hold.seq, self.describe(), type(exc).__name__, exc)

    def describe(self) -> str:
        return f"the daily budget of {self.budget.describe()} of {self.label}"


def _record(storage: Any, credentials: Any, result: Any, cost: Cost, day: str,
            flow_run_id: str | None) -> bool:
    folder, label = block_identity(credentials)
    backend = _backend(storage, day, folder)
    g = result.generation
    record = {
        "version": RECORD_VERSION, "day": day, "block": label, "provider": g.provider,
        "model": g.model, "kind": g.kind, "job_id": g.job_id, "fingerprint": g.fingerprint,
        "amount": cost.amount, "unit": cost.unit, "estimated": cost.estimated,
        "recorded_at": datetime.now(timezone.utc).isoformat(), "flow_run_id": flow_run_id,
    }
    data = json.dumps(record, indent=1).encode() + b"\n"
    return bool(backend.create(_record_scope(g.provider, g.job_id), data))


async def record_spend(credentials: Any, storage: Any, result: Any, cost: Cost | None,
                       logger: Any = None, flow_run_id: str | None = None) -> bool:
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
        return await asyncio.to_thread(_record, storage, credentials, result, cost, day,
                                       flow_run_id)
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
    def of(cls, credentials: Iterable[Any], storage: Any,
           flow_run_id: str | None = None) -> DailyBudgets:
        """The daily budgets of these blocks, kept beside ``storage``'s ledger, for the flow
        run ``flow_run_id`` (recorded with its reservations).

        Raises:
            InvalidRequest: a block's ``daily_budget`` is not a budget.
        """
        entries: dict[str, DailySpend] = {}
        for creds in credentials:
            budget = Budget.parse(getattr(creds, "daily_budget", None), field="daily_budget")
            if budget is None:
                continue
            folder, _ = block_identity(creds)
            entries.setdefault(folder, DailySpend(creds, storage, budget, flow_run_id))
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
        return self._planned(plan, plans)[0]

    def _planned(
        self, plan: CostPlan, plans: Sequence[Any],
    ) -> tuple[dict[str, float], dict[str, set[str]]]:
        """:meth:`planned`, and per block the steps with no known price (``model on
        provider``)."""
        to_pay = {step.key: step for step in plan.planned}
        amounts: dict[str, float] = {}
        unpriced: dict[str, set[str]] = {}
        seen: set[str] = set()
        for shot in plans:
            chain = getattr(shot, "chain", shot)
            for key, creds in ((chain.still_key, chain.image_credentials),
                               (chain.chain_key, chain.video_credentials)):
                if key in seen or key not in to_pay:
                    continue
                seen.add(key)
                entry = self.entry(creds)
                if entry is None:
                    continue
                step = to_pay[key]
                if step.cost is None:
                    unpriced.setdefault(entry.folder, set()).add(f"{step.model} on {step.provider}")
                amounts[entry.folder] = round(
                    amounts.get(entry.folder, 0.0) + entry.value(step.cost) * step.count, 6)
        return amounts, unpriced

    async def check(self, plan: CostPlan, plans: Sequence[Any]) -> dict[str, float]:
        """Refuse a plan that would pass a block's daily budget with today's spend.

        Returns:
            What each block with a daily budget spent today (UTC), before this run.

        Raises:
            BudgetExceeded: nothing was sent.
        """
        planned, unpriced = self._planned(plan, plans)
        spent: dict[str, float] = {}
        for folder, entry in sorted(self.entries.items()):
            if unpriced.get(folder):
                raise BudgetExceeded(
                    f"the plan has no known price for {', '.join(sorted(unpriced[folder]))}, "
                    f"so it could pass {entry.describe()}; give its price in the block's "
                    "prices; nothing was sent", budget=entry.budget.amount,
                )
            today, held = await entry.committed()
            spent[folder] = today
            cost = planned.get(folder, 0.0)
            if today + held + cost > entry.budget.amount + 1e-9:
                holding = f" and holds {format_amount(held)} for runs in flight" if held else ""
                raise BudgetExceeded(
                    f"the plan costs {format_amount(cost)} on {entry.label}, which spent {format_amount(today)} "
                    f"today ({utc_day()} UTC){holding}: over {entry.describe()}; nothing was "
                    "sent",
                    planned=round(today + held + cost, 6), budget=entry.budget.amount,
                )
        return spent


def budget_guard(budget: Budget | None, credentials: Iterable[Any], storage: Any,
                 flow_run_id: str | None = None) -> BudgetGuard | None:
    """The guard of flow run ``flow_run_id`` with this budget whose submits may go to these
    blocks (their daily budgets kept beside ``storage``'s ledger), or None when there is
    nothing to guard.

    Raises:
        InvalidRequest: a block's ``daily_budget`` is not a budget.
    """
    daily = DailyBudgets.of(credentials, storage, flow_run_id)
    return BudgetGuard(budget, daily) if budget is not None or daily else None
