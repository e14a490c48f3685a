"""Money under control: what a run will cost, what it may spend, what it did spend.

* :func:`plan_costs` prices a run before its first submit: the planned steps (from
  :func:`~prefect_runway.plan.plan_storyboard` or :func:`~prefect_runway.plan.plan_chain`),
  identical requests and shared stills counted once (by fingerprint), one row per provider
  and model: requests to pay, the estimated cost, its unit, and the totals.
* :class:`Budget` is a run's cap: a number in the provider's own unit (``30`` Runway
  credits) or a currency (``"USD 5.00"``, converted per provider, see :data:`USD_PER_UNIT`).
  :meth:`Budget.check` refuses a plan over it (:class:`~prefect_runway.errors.BudgetExceeded`,
  nothing sent); :class:`BudgetGuard` prices every submit before it is sent (docs/money.md).
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
import json
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prefect_runway.errors import BudgetExceeded, InsufficientCredits, InvalidRequest
from prefect_runway.models import Balance, GenerationResult
from prefect_runway.pricing import PriceTable, UnknownPrice, canonical_model, price

__all__ = [
    "CHARGED_EVENT", "Attempts", "Budget", "BudgetGuard", "Cost", "CostPlan", "CostRow",
    "NotStarted", "PlannedStep", "Reservation",
    "charged_cost", "check_balances", "emit_charged", "estimate", "plan_costs",
    "prices_of", "submit_charge",
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


_DEFAULT_TABLE = PriceTable.default()


def block_prices(provider: str, prices: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A credentials block's ``prices`` in :meth:`PriceTable.with_overrides`' shape.

    Each model maps to an amount, or to ``{amount | tiers, unit, per}``; a model the built-in
    table lacks is priced in the provider's own unit (:data:`PROVIDER_UNITS`), per job,
    unless its entry says otherwise.

    Raises:
        ValueError: an entry is neither a number >= 0 nor a mapping of price fields.
    """
    known = _DEFAULT_TABLE.entries
    out: dict[str, dict[str, Any]] = {}
    for model, entry in prices.items():
        if isinstance(entry, bool) or not isinstance(entry, (int, float, Mapping)):
            raise ValueError(f"prices.{model}: {entry!r} is not a price; give a number >= 0 "
                             "or {amount | tiers, unit, per}")
        fields = dict(entry) if isinstance(entry, Mapping) else {"amount": entry}
        if (provider, canonical_model(str(model))) not in known:
            fields.setdefault("unit", PROVIDER_UNITS.get(provider, "credits"))
        fields.setdefault("source", "the credentials block's prices")
        out[str(model)] = fields
    return out


#: Price tables of blocks with prices of their own, by provider and prices (a few at most).
_BLOCK_TABLES: dict[str, PriceTable] = {}


def prices_of(credentials: Any) -> PriceTable:
    """The prices a block's jobs are estimated by: the built-in table with the block's own
    ``prices`` over it.

    Raises:
        ValueError: the block's prices are not prices (see :func:`block_prices`).
    """
    own = getattr(credentials, "prices", None)
    if not own:
        return _DEFAULT_TABLE
    provider = credentials.provider_name
    key = f"{provider}|{json.dumps(own, sort_keys=True, default=str)}"
    table = _BLOCK_TABLES.get(key)
    if table is None:
        table = _DEFAULT_TABLE.with_overrides({provider: block_prices(provider, own)})
        _BLOCK_TABLES[key] = table
    return table


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


def submit_charge(generation: Any, estimate: Cost | None) -> Cost | None:
    """What a job that ended without a result (failed, lost, cancelled) may have cost: what
    its submit was provably charged (Segmind, see :class:`~prefect_runway.models.Generation`),
    else its estimate (it may have been billed)."""
    if generation.charged is not None:
        return Cost(float(generation.charged), PROVIDER_UNITS.get(generation.provider, "credits"),
                    False, "remaining-credits")
    return estimate


def to_usd(provider: str, amount: float, unit: str) -> float | None:
    """``amount`` of ``unit`` on ``provider`` in US dollars, where the rate is known."""
    rate = USD_PER_UNIT.get((provider, unit))
    return None if rate is None else amount * rate


@dataclass(frozen=True)
class PlannedStep:
    """One request a run will pay for (identical requests once; a still made in ``count``
    variants for a review, ``count`` times)."""

    key: str
    provider: str
    model: str
    kind: str
    cost: Cost | None
    count: int = 1


@dataclass(frozen=True)
class Attempts:
    """How many billed jobs the requests of a run may make at most (the plan's worst case).

    Attributes:
        retry_unsafe_output: Retries of an output rejected by moderation (each a new job).
        resubmit_internal: Whether a job that failed internally is resubmitted once.
        variants: Stills made per shot for a review.
        review: Whether a reviewer may regenerate a shot's still (one more still).
    """

    retry_unsafe_output: int = 0
    resubmit_internal: bool = True
    variants: int = 1
    review: bool = False

    @property
    def per_request(self) -> int:
        """Jobs one request may make: the first; one resubmit when the provider lost a
        finished job whose output was never stored; each unsafe-output retry; one resubmit
        after an internal failure."""
        return 2 + self.retry_unsafe_output + int(self.resubmit_internal)

    @property
    def stills(self) -> int:
        """Still requests per shot at most: each variant, and a regeneration at review."""
        return self.variants + int(self.review)

    def describe(self) -> str:
        text = f"up to {self.per_request} billed jobs a request"
        if self.stills > 1:
            text += f", {self.stills} still requests a shot"
        return text


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
    #: The worst case: what the run may spend per (provider, unit) if every request takes
    #: every fallback and allowed resubmit (each provider as if every step it may serve
    #: went to it), and in US dollars in all (each step on its dearest provider); None
    #: when a unit has no dollar rate or a price is unknown.
    attempts: Attempts = field(default_factory=Attempts)
    worst: dict[tuple[str, str], float] = field(default_factory=dict)
    worst_usd: float | None = 0.0
    #: ``model on provider`` of every step (fallbacks included) with no known price.
    unpriced: list[str] = field(default_factory=list)

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

    def worst_case(self) -> list[str]:
        """The worst case in lines of text (``prefect-runway plan`` prints them)."""
        if self.unpriced:
            return [f"worst case: unbounded: no known price for {', '.join(self.unpriced)} "
                    "(give it in the credentials block's prices)"]
        usd = "" if self.worst_usd is None else f": USD {self.worst_usd:.2f}"
        lines = [f"worst case, every fallback and allowed resubmit taken "
                 f"({self.attempts.describe()}){usd}"]
        lines += [f"  at most {_num(amount)} {unit} on {provider}"
                  for (provider, unit), amount in sorted(self.worst.items())]
        return lines

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
        lines += ["", "## Worst case", ""]
        if self.unpriced:
            lines.append(f"Unbounded: no known price for {', '.join(self.unpriced)} (give it in "
                         "the credentials block's `prices`).")
            return "\n".join(lines)
        worst = "" if self.worst_usd is None else f": **USD {self.worst_usd:.2f}**"
        lines += [f"Every fallback and allowed resubmit taken ({self.attempts.describe()}){worst}. "
                  "The run's budget bounds what is spent: every submit is priced before it is "
                  "sent.",
                  "", "| provider | at most | unit |", "| --- | --- | --- |"]
        lines += [f"| {provider} | {_num(amount)} | {unit} |"
                  for (provider, unit), amount in sorted(self.worst.items())]
        return "\n".join(lines)


def _num(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def plan_costs(
    plans: Sequence[Any], *, table: PriceTable | None = None, cached: Collection[str] = (),
    routes: Sequence[tuple[Any, Any]] | None = None, attempts: Attempts | None = None,
) -> CostPlan:
    """Price a run's planned steps, identical requests and shared stills once; and its worst
    case, every fallback and allowed resubmit taken.

    Args:
        plans: Shot plans (:class:`~prefect_runway.plan.ShotPlan`) or chain plans
            (:class:`~prefect_runway.plan.ChainPlan`).
        table: The prices (default: each step's block's, see :func:`prices_of`).
        cached: Step keys (a chain's ``still_key`` / ``chain_key``) already submitted, not
            paid again (see :func:`cached_steps`).
        routes: Per plan, in order, the still's and the video's route
            (:class:`~prefect_runway.fallback.Route`, or None: no fallback), each of whose
            providers the step may go to.
        attempts: The run's resubmits and review (default: :class:`Attempts`'s).

    Returns:
        The rows per provider and model, the totals and the worst case.
    """
    from prefect_runway.models import PLACEHOLDER_IMAGE

    attempts = attempts or Attempts()
    result = CostPlan(shots=len(plans), attempts=attempts)
    rows: dict[tuple[str, str, str], CostRow] = {}
    seen: set[str] = set()
    unpriced: set[str] = set()
    for index, plan in enumerate(plans):
        chain = getattr(plan, "chain", plan)
        still_route, video_route = routes[index] if routes is not None else (None, None)
        # The still is paid once per still_key (each variant of it, for a review); the
        # video once per chain (its input is the still, so identical chains share it).
        steps = (
            (chain.still_key, chain.still, chain.image_credentials, still_route,
             lambda c=chain: c.still_request, attempts.variants, attempts.stills),
            (chain.chain_key, chain.video_check, chain.video_credentials, video_route,
             lambda c=chain: c.video_request(PLACEHOLDER_IMAGE, None), 1, 1),
        )
        for key, prepared, credentials, route, request, count, requests in steps:
            cost = estimate_step(prepared, table, credentials)
            unit = cost.unit if cost else PROVIDER_UNITS.get(prepared.provider, "credits")
            row = rows.setdefault((prepared.provider, prepared.model, unit),
                                  CostRow(prepared.provider, prepared.model, unit))
            row.steps += 1
            result.steps += 1
            if key in seen:
                continue
            seen.add(key)
            is_cached = key in cached
            jobs = attempts.per_request * requests - int(is_cached)
            _worst_step(result, unpriced, prepared, credentials, route, request, jobs, table)
            if is_cached:
                row.cached += 1
                continue
            row.requests += count
            if cost is None:
                row.unpriced += 1
            else:
                row.amount = round(row.amount + cost.amount * count, 6)
            result.planned.append(PlannedStep(key, prepared.provider, prepared.model,
                                              prepared.kind, cost, count))
    result.rows = [rows[k] for k in sorted(rows)]
    result.unpriced = sorted(unpriced)
    if result.unpriced:
        result.worst_usd = None
    return result


def _worst_step(
    result: CostPlan, unpriced: set[str], prepared: Any, credentials: Any, route: Any,
    request: Callable[[], Any], jobs: int, table: PriceTable | None,
) -> None:
    """Add one step's worst case to ``result``: ``jobs`` billed jobs, on each provider of its
    route (per provider), on its dearest (in dollars, in all)."""
    dearest: float | None = 0.0
    options = ([(credentials, prepared)] if route is None or len(route.providers) < 2
               else route.prepared(request()))
    for option, on in options:
        cost = estimate_step(on, table, option)
        if cost is None:
            unpriced.add(f"{on.model} on {on.provider}")
            continue
        key = (on.provider, cost.unit)
        result.worst[key] = round(result.worst.get(key, 0.0) + jobs * cost.amount, 6)
        usd = to_usd(on.provider, cost.amount, cost.unit)
        dearest = None if usd is None or dearest is None else max(dearest, usd)
    if result.worst_usd is not None:
        result.worst_usd = None if dearest is None else round(result.worst_usd + jobs * dearest, 6)


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
                f"the plan costs {_num(total)}, over the budget of {self.describe()}: "
                f"{plan.requests} request(s) to pay; nothing was sent",
                planned=total, budget=self.amount,
            )
        return total


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


def estimate_step(
    prepared: Any, table: PriceTable | None = None, credentials: Any = None,
) -> Cost | None:
    """The estimate of one prepared request (a :class:`PreparedRequest`): by ``table``, else
    by the prices of ``credentials`` (:func:`prices_of`), else by the built-in prices."""
    if table is None and credentials is not None:
        table = prices_of(credentials)
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
