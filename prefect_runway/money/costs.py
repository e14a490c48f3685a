"""What one generation costs: estimated from the price table, or as the provider reported it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect_runway.errors import UnknownPrice
from prefect_runway.models import GenerationResult
from prefect_runway.money.prices import PROVIDER_UNITS, PriceTable, price, prices_of

__all__ = [
    "PROVIDER_UNITS", "USD_PER_UNIT", "Cost", "charged_cost", "estimate", "estimate_step",
    "format_amount", "output_cost", "submit_charge", "to_usd",
]

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
        found = price(provider, model, ratio=ratio, duration=duration, table=table, body=body)
    except (UnknownPrice, ValueError):
        return None
    return Cost(found.amount, found.unit, True, found.source)


def estimate_step(
    prepared: Any, table: PriceTable | None = None, credentials: Any = None,
) -> Cost | None:
    """The estimate of one prepared request (a :class:`PreparedRequest`): by ``table``, else
    by the prices of ``credentials`` (:func:`prices_of`), else by the built-in prices."""
    if table is None and credentials is not None:
        table = prices_of(credentials)
    # The summary: the body's fields, and a finishing step's source length (what it is priced on).
    return estimate(prepared.provider, prepared.model, prepared.kind, prepared.summary, table)


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


def format_amount(value: float) -> str:
    """An amount as a person reads it: ``5``, ``0.15`` (no trailing zeros)."""
    return f"{value:.6f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))



def output_cost(output: Any) -> Cost | None:
    """The ledger entry a stored output carries (None when it has none)."""
    if output is None or output.cost is None:
        return None
    return Cost(output.cost, output.cost_unit or PROVIDER_UNITS.get(output.provider, "credits"),
                bool(output.cost_estimated), "sidecar")
