"""Money under control: what a run will cost, what it may spend, what it did spend.

* :func:`plan_costs` prices a run before its first submit: the planned steps (from
  :func:`~prefect_runway.plan.plan_storyboard` or :func:`~prefect_runway.plan.plan_chain`),
  identical requests and shared stills counted once (by fingerprint), one row per provider
  and model: requests to pay, the estimated cost, its unit, and the totals.
* :class:`Budget` is a run's cap: a number in the provider's own unit (``30`` Runway
  credits) or a currency (``"USD 5.00"``, converted per provider, see :data:`USD_PER_UNIT`).
  :meth:`Budget.check` refuses a plan over it (:class:`~prefect_runway.errors.BudgetExceeded`,
  nothing sent); :class:`BudgetGuard` stops new submits during a run once what was spent plus
  what is in flight would pass it.
* :func:`charged_cost` is the cost ledger's rule: what the provider reported it charged
  (Runway's task ``cost``, AIMLAPI's ``meta.usage.credits_used``, Segmind's
  ``x-remaining-credits`` difference where provable), else the estimate from
  :mod:`prefect_runway.pricing`, marked ``estimated``. :func:`emit_charged` emits the Prefect
  event ``prefect-runway.generation.charged`` per generation.
* :func:`check_balances` reads each provider's balance (where it has an endpoint) and refuses a
  plan the balance cannot pay (:class:`~prefect_runway.errors.InsufficientCredits`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prefect_runway.errors import BudgetExceeded, InsufficientCredits, InvalidRequest
from prefect_runway.models import Balance, GenerationResult
from prefect_runway.pricing import PriceTable, UnknownPrice, price

__all__ = [
    "CHARGED_EVENT", "Budget", "BudgetGuard", "Cost", "CostPlan", "CostRow", "PlannedStep",
    "Reservation",
    "charged_cost", "check_balances", "emit_charged", "estimate", "plan_costs",
]

#: The Prefect event emitted once per finished generation.
CHARGED_EVENT = "prefect-runway.generation.charged"

#: Each provider's own unit (what its status answers and balance endpoints report).
PROVIDER_UNITS: dict[str, str] = {"runway": "credits", "aimlapi": "credits", "segmind": "USD"}

#: US dollars per unit, per provider: Runway 1 credit = $0.01; AIMLAPI $1 = 2,000,000
#: credits; Segmind's credits are dollars.
USD_PER_UNIT: dict[tuple[str, str], float] = {
    ("runway", "credits"): 0.01,
    ("aimlapi", "credits"): 1 / 2_000_000,
    ("segmind", "USD"): 1.0,
    ("runway", "USD"): 1.0,
    ("aimlapi", "USD"): 1.0,
}


@dataclass(frozen=True)
class Cost:
    """What one generation cost (or will cost).

    Attributes:
        amount: How much, in ``unit``.
        unit: ``"credits"`` (the provider's own) or ``"USD"``.
        estimated: True when the provider did not report it and it comes from the price table.
        source: ``"provider"`` or the price table entry's source.
    """

    amount: float
    unit: str
    estimated: bool
    source: str


def _ratio_duration(kind: str, body: dict[str, Any]) -> tuple[str | None, float | None]:
    ratio = body.get("ratio") or body.get("aspect_ratio")
    duration = body.get("duration") if kind == "video" else None
    return (str(ratio) if ratio else None), (float(duration) if duration is not None else None)


def estimate(
    provider: str, model: str, kind: str, body: dict[str, Any], table: PriceTable | None = None,
) -> Cost | None:
    """The price-table estimate of one request (its body or summary); None if unpriced."""
    ratio, duration = _ratio_duration(kind, body)
    try:
        found = price(provider, model, ratio=ratio, duration=duration, table=table)
    except (UnknownPrice, ValueError):
        return None
    return Cost(found.amount, found.unit, True, found.source)


def charged_cost(result: GenerationResult, table: PriceTable | None = None) -> Cost | None:
    """The cost ledger's entry for a finished job: reported where the provider reports it.

    Runway's task ``cost.credits`` and AIMLAPI's ``credits_used`` arrive as
    ``result.cost`` (parsed by the providers); Segmind's charge is the balance difference
    around the submit (``generation.charged``, where the engine could prove it: see
    :mod:`prefect_runway.engine.credits`); otherwise the estimate from the price table,
    marked ``estimated``. None when neither is known.
    """
    g = result.generation
    guess = estimate(g.provider, g.model, g.kind, g.request, table)
    unit = guess.unit if guess else PROVIDER_UNITS.get(g.provider, "credits")
    if result.cost is not None:
        return Cost(float(result.cost), unit, False, "provider")
    if g.charged is not None:
        return Cost(float(g.charged), PROVIDER_UNITS.get(g.provider, unit), False,
                    "remaining-credits")
    return guess


def to_usd(provider: str, amount: float, unit: str) -> float | None:
    """``amount`` of ``unit`` on ``provider`` in US dollars, where the rate is known."""
    rate = USD_PER_UNIT.get((provider, unit))
    return None if rate is None else amount * rate


@dataclass(frozen=True)
class PlannedStep:
    """One request a run will pay for (identical requests once)."""

    key: str
    provider: str
    model: str
    kind: str
    cost: Cost | None


@dataclass
class CostRow:
    """One provider and model of a plan."""

    provider: str
    model: str
    unit: str
    steps: int = 0
    requests: int = 0
    amount: float = 0.0
    unpriced: int = 0
    cached: int = 0

    @property
    def usd(self) -> float | None:
        return to_usd(self.provider, self.amount, self.unit)


@dataclass
class CostPlan:
    """What a run will pay: per provider and model, and the totals.

    Attributes:
        rows: One row per provider and model, sorted.
        shots: Planned shots (chains).
        steps: Planned steps (every still and video of every shot, duplicates included).
        requests: Distinct requests to pay.
    """

    rows: list[CostRow] = field(default_factory=list)
    shots: int = 0
    steps: int = 0
    planned: list[PlannedStep] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.rows)

    @property
    def cached(self) -> int:
        """Distinct requests already submitted (in the task cache): not paid again."""
        return sum(r.cached for r in self.rows)

    def totals(self) -> dict[tuple[str, str], float]:
        """Total per (provider, unit)."""
        out: dict[tuple[str, str], float] = {}
        for r in self.rows:
            out[(r.provider, r.unit)] = round(out.get((r.provider, r.unit), 0.0) + r.amount, 6)
        return out

    @property
    def total_usd(self) -> float | None:
        """The whole plan in US dollars (None if a unit has no known rate)."""
        values = [r.usd for r in self.rows]
        return None if any(v is None for v in values) else round(sum(values), 6)  # type: ignore[arg-type]

    def table(self) -> str:
        """A plain-text table (what ``prefect-runway plan`` prints)."""
        head = ("provider", "model", "steps", "cached", "requests to pay", "estimated cost",
                "unit", "USD")
        lines = [head]
        for r in self.rows:
            lines.append((r.provider, r.model, str(r.steps), str(r.cached), str(r.requests),
                          _num(r.amount), r.unit, "" if r.usd is None else f"{r.usd:.2f}"))
        usd = self.total_usd
        lines.append(("total", "", str(self.steps), str(self.cached), str(self.requests), "", "",
                      "" if usd is None else f"{usd:.2f}"))
        widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
        text = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in lines]
        text.insert(1, "  ".join("-" * w for w in widths))
        footer = [f"{self.shots} shot(s), {self.steps} step(s), {self.requests} request(s) to pay"]
        for (provider, unit), amount in sorted(self.totals().items()):
            footer.append(f"total {provider}: {_num(amount)} {unit}")
        return "\n".join(text + [""] + footer)

    def markdown(self) -> str:
        """The plan as a markdown table (the flow's ``cost-plan`` artifact)."""
        lines = [f"# Cost plan: {self.requests} request(s) to pay for {self.shots} shot(s)", "",
                 "| provider | model | steps | cached | requests to pay | estimated cost | unit "
                 "| USD |",
                 "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in self.rows:
            lines.append(f"| {r.provider} | {r.model} | {r.steps} | {r.cached} | {r.requests} | "
                         f"{_num(r.amount)} | {r.unit} | {'' if r.usd is None else f'{r.usd:.2f}'} |")
        usd = self.total_usd
        lines.append(f"| **total** | | {self.steps} | {self.cached} | {self.requests} | | | "
                     f"{'' if usd is None else f'{usd:.2f}'} |")
        return "\n".join(lines)


def _num(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def plan_costs(
    plans: Sequence[Any], *, table: PriceTable | None = None, cached: Collection[str] = (),
) -> CostPlan:
    """Price a run's planned steps, identical requests and shared stills once.

    Args:
        plans: Shot plans (:class:`~prefect_runway.plan.ShotPlan`) or chain plans
            (:class:`~prefect_runway.plan.ChainPlan`).
        table: The prices (default: :mod:`prefect_runway.pricing`'s built-in table).
        cached: Step keys (a chain's ``still_key`` / ``chain_key``) already submitted, not
            paid again (see :func:`cached_steps`).

    Returns:
        The rows per provider and model and the totals.
    """
    result = CostPlan(shots=len(plans))
    rows: dict[tuple[str, str, str], CostRow] = {}
    seen: set[str] = set()
    for plan in plans:
        chain = getattr(plan, "chain", plan)
        # The still is paid once per still_key; the video once per chain (its input is the
        # still, so identical chains share it).
        for key, prepared in ((chain.still_key, chain.still), (chain.chain_key, chain.video_check)):
            cost = estimate(prepared.provider, prepared.model, prepared.kind, prepared.body, table)
            unit = cost.unit if cost else PROVIDER_UNITS.get(prepared.provider, "credits")
            row = rows.setdefault((prepared.provider, prepared.model, unit),
                                  CostRow(prepared.provider, prepared.model, unit))
            row.steps += 1
            result.steps += 1
            if key in seen:
                continue
            seen.add(key)
            if key in cached:
                row.cached += 1
                continue
            row.requests += 1
            if cost is None:
                row.unpriced += 1
            else:
                row.amount = round(row.amount + cost.amount, 6)
            result.planned.append(PlannedStep(key, prepared.provider, prepared.model,
                                              prepared.kind, cost))
    result.rows = [rows[k] for k in sorted(rows)]
    return result


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
        return f"USD {self.amount:.2f}" if self.usd else f"{_num(self.amount)} (provider's unit)"

    def check(self, plan: CostPlan) -> float:
        """The plan's cost in this budget's terms; raise if it is over.

        Raises:
            InvalidRequest: a number budget for a plan in several units.
            BudgetExceeded: the plan costs more than the budget; nothing was sent.
        """
        if not self.usd:
            units = {(r.provider, r.unit) for r in plan.rows}
            if len({u for _, u in units}) > 1 or len({p for p, _ in units}) > 1:
                raise InvalidRequest(
                    "budget", f"{self.amount:g} is ambiguous: the plan spends on "
                    f"{', '.join(sorted(f'{p} ({u})' for p, u in units))}",
                    allowed="a currency like 'USD 5.00'",
                )
        total = round(sum(self.value_of(r.provider, r.amount, r.unit) for r in plan.rows), 6)
        if total > self.amount + 1e-9:
            raise BudgetExceeded(
                f"the plan costs {_num(total)}, over the budget of {self.describe()}: "
                f"{plan.requests} request(s) to pay; nothing was sent",
                planned=total, budget=self.amount,
            )
        return total


@dataclass
class Reservation:
    """What :meth:`BudgetGuard.admit` reserved for one job: in the run's budget, and in its
    block's daily budget (a :class:`prefect_runway.spend.DailySpend`) where it has one."""

    run: float = 0.0
    daily: Any = None
    daily_amount: float = 0.0


class BudgetGuard:
    """Stops new submits once spent + in flight would pass the budget (one flow run), or a
    block's daily budget (``daily``: :class:`prefect_runway.spend.DailyBudgets`).

    ``admit`` (or ``reserve``) before a submit; ``settle`` when it ends, with what it was
    charged (the reservation is released).
    """

    def __init__(self, budget: Budget | None, daily: Any = None) -> None:
        self.budget = budget
        self.daily = daily
        self.spent = 0.0
        self.in_flight = 0.0
        self._lock = asyncio.Lock()

    async def reserve(self, provider: str, cost: Cost | None) -> float | None:
        """Reserve ``cost``; the amount reserved, or None when it would pass the budget."""
        if self.budget is None:
            return 0.0
        amount = 0.0 if cost is None else self.budget.value_of(provider, cost.amount, cost.unit)
        async with self._lock:
            if self.spent + self.in_flight + amount > self.budget.amount + 1e-9:
                return None
            self.in_flight += amount
            return amount

    async def admit(
        self, provider: str, cost: Cost | None, credentials: Any = None, what: str = "it",
    ) -> Reservation:
        """Reserve a job's estimate in the run's budget and its block's daily budget.

        Raises:
            NotStarted: it would pass one of them (the message names which).
        """
        run = await self.reserve(provider, cost)
        if run is None:
            raise NotStarted(
                f"not started: {what} would pass the budget of {self.budget.describe()}"  # type: ignore[union-attr]
            )
        entry = self.daily.entry(credentials) if self.daily and credentials is not None else None
        if entry is None:
            return Reservation(run)
        amount = await entry.reserve(cost)
        if amount is None:
            await self.settle(provider, run, None)
            raise NotStarted(f"not started: {what} would pass {entry.describe()}")
        return Reservation(run, entry, amount)

    async def settle(self, provider: str, reserved: float | Reservation, cost: Cost | None) -> None:
        """Release a reservation and count what was charged (None: nothing known)."""
        if isinstance(reserved, Reservation):
            if reserved.daily is not None:
                await reserved.daily.release(reserved.daily_amount)
            reserved = reserved.run
        if self.budget is None:
            return
        async with self._lock:
            self.in_flight = max(0.0, self.in_flight - reserved)
            if cost is not None:
                self.spent += self.budget.value_of(provider, cost.amount, cost.unit)


async def emit_charged(result: GenerationResult, cost: Cost | None) -> None:
    """Emit ``prefect-runway.generation.charged`` for a finished generation (never raises)."""
    from prefect_runway.artifacts import emit_quietly, runway_resource

    g = result.generation
    emit_quietly(CHARGED_EVENT, runway_resource("generation", g.job_id, g.provider, g.model), {
        "amount": None if cost is None else cost.amount,
        "unit": None if cost is None else cost.unit,
        "estimated": None if cost is None else cost.estimated,
        "provider": g.provider,
        "model": g.model,
        "kind": g.kind,
        "job_id": g.job_id,
        "fingerprint": g.fingerprint,
    })


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
                f"the plan needs {_num(amount)} {unit} on {provider}, the balance is "
                f"{_num(balance.credits)}; nothing was sent",
                provider=provider,
            )
    return balances


class NotStarted(Exception):
    """A step was not started: it would have passed the run's budget."""


def output_cost(output: Any) -> Cost | None:
    """The ledger entry a stored output carries (None when it has none)."""
    if output is None or output.cost is None:
        return None
    return Cost(output.cost, output.cost_unit or PROVIDER_UNITS.get(output.provider, "credits"),
                bool(output.cost_estimated), "sidecar")


def spending(outputs: Iterable[Any], plan: CostPlan | None = None) -> list[dict[str, Any]]:
    """Spent per provider and model (each job once), beside what the plan estimated.

    Returns:
        Rows ``{provider, model, unit, jobs, spent, estimated, planned}``; ``estimated`` counts
        the jobs whose cost is the price table's estimate (the provider reported none).
    """
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    if plan is not None:
        for r in plan.rows:
            rows[(r.provider, r.model, r.unit)] = {
                "provider": r.provider, "model": r.model, "unit": r.unit, "jobs": 0,
                "spent": 0.0, "estimated": 0, "planned": r.amount,
            }
    seen: set[tuple[str, str]] = set()
    for output in outputs:
        if output is None or (output.provider, output.job_id) in seen:
            continue
        seen.add((output.provider, output.job_id))
        cost = output_cost(output)
        unit = cost.unit if cost else PROVIDER_UNITS.get(output.provider, "credits")
        row = rows.setdefault((output.provider, output.model, unit), {
            "provider": output.provider, "model": output.model, "unit": unit, "jobs": 0,
            "spent": 0.0, "estimated": 0, "planned": None,
        })
        row["jobs"] += 1
        if cost is not None:
            row["spent"] = round(row["spent"] + cost.amount, 6)
            row["estimated"] += int(cost.estimated)
    return [rows[k] for k in sorted(rows)]


def spending_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The spending rows as a markdown table."""
    lines = ["| provider | model | jobs | spent | unit | planned | of which estimated |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        planned = "" if r["planned"] is None else _num(r["planned"])
        lines.append(f"| {r['provider']} | {r['model']} | {r['jobs']} | {_num(r['spent'])} | "
                     f"{r['unit']} | {planned} | {r['estimated']} job(s) |")
    return "\n".join(lines)


async def publish_cost_plan(plan: CostPlan, key: str = "cost-plan") -> None:
    """The plan as a markdown artifact (published before the run's first submit)."""
    from prefect.artifacts import acreate_markdown_artifact

    usd = plan.total_usd
    await acreate_markdown_artifact(
        markdown=plan.markdown(), key=key,
        description=f"{plan.requests} request(s) to pay"
        + ("" if usd is None else f", about USD {usd:.2f}"),
    )


def estimate_step(prepared: Any, table: PriceTable | None = None) -> Cost | None:
    """The estimate of one prepared request (a :class:`PreparedRequest`)."""
    return estimate(prepared.provider, prepared.model, prepared.kind, prepared.body, table)


async def cached_steps(
    plans: Sequence[Any], cache_key: Callable[[Any, Any], str], task: Any,
) -> set[str]:
    """The steps of ``plans`` the submit task's cache already holds: not paid again.

    Args:
        plans: Shot plans or chain plans.
        cache_key: The submit task's cache key of (credentials, prepared request)
            (:func:`prefect_runway.tasks.generation.submission_cache_key`).
        task: The submit task (``submit_generation``), whose result store holds the records.

    Looks up each distinct still's submission cache key in the current result store (the
    flow's, inside a flow run). A video's request names its still's bytes, unknown until the
    still is stored, so videos are not looked up here: a cached video still counts as a
    request to pay (the plan errs on the side of paying).
    """
    from prefect.results import get_result_store

    try:  # the submit task's own store: where its cache records are
        store = await get_result_store().aupdate_for_task(task)
    except Exception:
        return set()
    found: set[str] = set()
    looked: set[str] = set()
    for plan in plans:
        chain = getattr(plan, "chain", plan)
        if chain.still_key in looked:
            continue
        looked.add(chain.still_key)
        try:
            if await store.aexists(cache_key(chain.image_credentials, chain.still)):
                found.add(chain.still_key)
        except Exception:  # an unreadable cache only makes the plan pay more
            continue
    return found
