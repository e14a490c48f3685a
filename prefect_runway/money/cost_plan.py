"""A run's cost plan: what its planned steps will pay (identical requests once), and its worst
case (every fallback and allowed resubmit taken)."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prefect_runway.models import PLACEHOLDER_IMAGE
from prefect_runway.money.costs import (
    PROVIDER_UNITS,
    Cost,
    estimate_step,
    format_amount,
    output_cost,
    to_usd,
)
from prefect_runway.money.prices import PriceTable

__all__ = ["Attempts", "CostPlan", "CostRow", "PlannedStep", "plan_costs", "spending"]


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
    #: The model options of its requests (``audio=true``), where they set any.
    options: str = ""

    @property
    def label(self) -> str:
        """The model, and its options where set: ``veo3.1 [audio=true]``."""
        return f"{self.model} [{self.options}]" if self.options else self.model

    @property
    def usd(self) -> float | None:
        return None if self.unpriced else to_usd(self.provider, self.amount, self.unit)

    @property
    def estimated(self) -> str:
        """The estimated cost as the plan shows it: ``unknown`` for requests with no price."""
        if not self.unpriced:
            return format_amount(self.amount)
        return "unknown" if not self.amount else f"{format_amount(self.amount)} + unknown"


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
            lines.append((r.provider, r.label, str(r.steps), str(r.cached), str(r.requests),
                          r.estimated, r.unit, "" if r.usd is None else f"{r.usd:.2f}"))
        usd = self.total_usd
        lines.append(("total", "", str(self.steps), str(self.cached), str(self.requests), "", "",
                      "" if usd is None else f"{usd:.2f}"))
        widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
        text = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in lines]
        text.insert(1, "  ".join("-" * w for w in widths))
        footer = [f"{self.shots} shot(s), {self.steps} step(s), {self.requests} request(s) to pay"]
        for (provider, unit), amount in sorted(self.totals().items()):
            footer.append(f"total {provider}: {format_amount(amount)} {unit}")
        return "\n".join(text + [""] + footer)

    def worst_case(self) -> list[str]:
        """The worst case in lines of text (``prefect-runway plan`` prints them)."""
        if self.unpriced:
            return [f"worst case: unbounded: no known price for {', '.join(self.unpriced)} "
                    "(give it in the credentials block's prices)"]
        usd = "" if self.worst_usd is None else f": USD {self.worst_usd:.2f}"
        lines = [f"worst case, every fallback and allowed resubmit taken "
                 f"({self.attempts.describe()}){usd}"]
        lines += [f"  at most {format_amount(amount)} {unit} on {provider}"
                  for (provider, unit), amount in sorted(self.worst.items())]
        return lines

    def markdown(self) -> str:
        """The plan as a markdown table (the flow's ``cost-plan`` artifact)."""
        lines = [f"# Cost plan: {self.requests} request(s) to pay for {self.shots} shot(s)", "",
                 "| provider | model | steps | cached | requests to pay | estimated cost | unit "
                 "| USD |",
                 "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in self.rows:
            lines.append(f"| {r.provider} | {r.label} | {r.steps} | {r.cached} | {r.requests} | "
                         f"{r.estimated} | {r.unit} | {'' if r.usd is None else f'{r.usd:.2f}'} |")
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
        lines += [f"| {provider} | {format_amount(amount)} | {unit} |"
                  for (provider, unit), amount in sorted(self.worst.items())]
        return "\n".join(lines)


def plan_costs(
    plans: Sequence[Any], *, table: PriceTable | None = None, cached: Collection[str] = (),
    routes: Sequence[tuple[Any, Any]] | None = None, attempts: Attempts | None = None,
) -> CostPlan:
    """Price a run's planned steps, identical requests and shared stills once; and its worst
    case, every fallback and allowed resubmit taken.

    Args:
        plans: Shot plans (:class:`~prefect_runway.flows.plan.ShotPlan`) or chain plans
            (:class:`~prefect_runway.flows.plan.ChainPlan`).
        table: The prices (default: each step's block's, see :func:`prices_of`).
        cached: Step keys (a chain's ``still_key`` / ``chain_key``) already submitted, not
            paid again (see :func:`cached_steps`).
        routes: Per plan, in order, the still's and the video's route
            (:class:`~prefect_runway.flows.fallback.Route`, or None: no fallback), each of whose
            providers the step may go to.
        attempts: The run's resubmits and review (default: :class:`Attempts`'s).

    Returns:
        The rows per provider and model, the totals and the worst case.
    """
    attempts = attempts or Attempts()
    result = CostPlan(shots=len(plans), attempts=attempts)
    rows: dict[tuple[str, str, str, str], CostRow] = {}
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
        ) + _finish_step(chain)
        for key, prepared, credentials, route, request, count, requests in steps:
            if prepared is None:  # a chain with no still (text-to-video; continuity)
                continue
            cost = estimate_step(prepared, table, credentials)
            unit = cost.unit if cost else PROVIDER_UNITS.get(prepared.provider, "credits")
            options = options_label(prepared)
            row = rows.setdefault((prepared.provider, prepared.model, unit, options),
                                  CostRow(prepared.provider, prepared.model, unit, options=options))
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


def _finish_step(chain: Any) -> tuple[tuple[Any, ...], ...]:
    """A chain's finishing step, as :func:`plan_costs` walks its steps (once per chain and
    finishing request; on Runway alone, so no fallback); none where it has none."""
    finish = getattr(chain, "finish_check", None)
    if finish is None:
        return ()
    return ((f"{chain.chain_key}|{finish.fingerprint}", finish, chain.finish_credentials, None,
             lambda: None, 1, 1),)


def options_label(prepared: Any) -> str:
    """A prepared request's model options as a plan shows them: ``audio=true, ...``."""
    options = getattr(prepared, "options", None) or {}
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(options.items()))


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


def spending(outputs: Iterable[Any], plan: CostPlan | None = None) -> list[dict[str, Any]]:
    """Spent per provider and model (each job once), beside what the plan estimated.

    Returns:
        Rows ``{provider, model, unit, jobs, spent, estimated, planned, unpriced}``;
        ``estimated`` counts the jobs whose cost is the price table's estimate (the provider
        reported none); ``unpriced`` the planned requests with no known price.
    """
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    if plan is not None:
        for r in plan.rows:  # a model's rows of several options: planned together
            row = rows.setdefault((r.provider, r.model, r.unit), {
                "provider": r.provider, "model": r.model, "unit": r.unit, "jobs": 0,
                "spent": 0.0, "estimated": 0, "planned": 0.0, "unpriced": 0,
            })
            row["planned"] = round(row["planned"] + r.amount, 6)
            row["unpriced"] += r.unpriced
    seen: set[tuple[str, str]] = set()
    for output in outputs:
        if output is None or (output.provider, output.job_id) in seen:
            continue
        seen.add((output.provider, output.job_id))
        cost = output_cost(output)
        unit = cost.unit if cost else PROVIDER_UNITS.get(output.provider, "credits")
        row = rows.setdefault((output.provider, output.model, unit), {
            "provider": output.provider, "model": output.model, "unit": unit, "jobs": 0,
            "spent": 0.0, "estimated": 0, "planned": None, "unpriced": 0,
        })
        row["jobs"] += 1
        if cost is not None:
            row["spent"] = round(row["spent"] + cost.amount, 6)
            row["estimated"] += int(cost.estimated)
    return [rows[k] for k in sorted(rows)]
