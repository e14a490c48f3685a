"""Prices as data: what one generation costs, per provider and model."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from prefect_runway.errors import UnknownPrice

Unit = Literal["credits", "USD"]
Per = Literal["job", "second"]

PROVIDERS = ("segmind", "aimlapi", "runway")

#: The providers' own model ids -> canonical model names.
ALIASES: dict[str, str] = {
    "runway-gen4-image": "gen4_image",
    "runway-gen4-turbo": "gen4_turbo",
    "runway-gen3-alphaturbo": "gen3a_turbo",
    "runway/gen4_turbo": "gen4_turbo",
    "runway/gen3a_turbo": "gen3a_turbo",
}

CHECKED = "2026-11-30"
RUNWAY_SOURCE = "docs.dev.runwayml.com/guides/pricing (1 credit = $0.01)"
HUB_CHECKED = "2026-12-07"
HUB_SOURCE = ("Runway's published credit costs, April 2026 (docs.dev.runwayml.com/guides/pricing; "
              "1 credit = $0.01)")
#: gen4.5's surcharge a second by ``outputFormat`` (runwayml 5.24.0, ``Gen4_5.output_format``:
#: 5 credits for prores and png_sequence, 20 for the 10-bit and deeper profiles; its outputs
#: are all under the 4-megapixel line past which that is 40).
GEN4_5_FORMAT_SURCHARGES: dict[str, float] = {
    "prores": 5, "png_sequence": 5,
    **dict.fromkeys(("hdr10", "hlg", "sdr_rec709_10bit", "hdr_pq_12bit_master", "hdr_prores",
                     "hdr_png_sequence", "hdr_exr_sequence", "hdr_exr_acescg_sequence_1_3",
                     "hdr_exr_acescg_sequence_2_0"), 20.0),
}


@dataclass(frozen=True)
class PriceEntry:
    """The price rule of one model on one provider."""

    provider: str
    model: str
    unit: Unit
    per: Per = "job"
    amount: float | None = None
    tiers: Mapping[str, float] = field(default_factory=dict)
    source: str = ""
    checked: str = CHECKED
    estimate: bool = False
    #: What some body fields add to the unit price: ``{field: {value: extra}}``, the value
    #: as JSON text (``"true"``, ``"prores"``); :data:`UNSET` prices a field left out.
    extras: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def describe(self) -> str:
        """The rule in words: ``12 credits a second``, ``5 credits (720p), 8 credits (1080p)
        a job``, ``+20 with audio true or unset``; ``(estimate)`` where not published."""
        unit = "credits" if self.unit == "credits" else self.unit
        amounts = ([f"{_number(self.amount)} {unit}"] if self.amount is not None else
                   [f"{_number(v)} {unit} ({tier})" for tier, v in self.tiers.items()])
        text = f"{', '.join(amounts)} a {self.per}"
        for name, by_value in self.extras.items():
            by_extra: dict[float, list[str]] = {}
            for value, extra in by_value.items():
                by_extra.setdefault(extra, []).append("unset" if value == UNSET else value)
            for extra, values in by_extra.items():
                text += f"; +{_number(extra)} with {name} {' or '.join(values)}"
        return text + (" (estimate)" if self.estimate else "")

    def cost(
        self, *, ratio: str | None = None, duration: float | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> float:
        """The price of one generation with this ratio / duration (and, where some of its
        fields change the price, this request body)."""
        if self.tiers:
            if ratio is None:
                raise ValueError(
                    f"{self.provider} {self.model}: the price depends on the resolution; "
                    f"pass ratio= (tiers: {', '.join(self.tiers)})"
                )
            tier = resolution_tier(ratio)
            if tier not in self.tiers:
                raise ValueError(f"{self.provider} {self.model}: no price for tier {tier!r}")
            unit_price = self.tiers[tier]
        else:
            assert self.amount is not None
            unit_price = self.amount
        unit_price += sum(_extra(by_value, (body or {}).get(name))
                          for name, by_value in self.extras.items())
        if self.per == "second":
            if duration is None:
                raise ValueError(
                    f"{self.provider} {self.model}: priced per second; pass duration="
                )
            return round(unit_price * float(duration), 6)
        return float(unit_price)


@dataclass(frozen=True)
class Price:
    """The price of one generation.

    Attributes:
        amount: How much, in `unit`.
        unit: "credits" (the provider's own credits) or "USD".
        provider: The provider.
        model: The canonical model name.
        source: Where the price comes from.
        checked: When it was checked (ISO date).
        estimate: True when the figure is not a published price.
    """

    amount: float
    unit: Unit
    provider: str
    model: str
    source: str
    checked: str
    estimate: bool


#: The key of :attr:`PriceEntry.extras` for a field the body leaves out.
UNSET = "(unset)"


def _extra(by_value: Mapping[str, float], value: Any) -> float:
    """What one field's value adds (a value not listed adds nothing)."""
    key = UNSET if value is None else json.dumps(value) if not isinstance(value, str) else value
    return by_value.get(key, 0.0)


def _number(value: float) -> str:
    return f"{value:g}" if value < 1e6 else f"{value:,.0f}".replace(",", " ")


def resolution_tier(ratio: str) -> str:
    """`"1280:720"` -> "720p"; `"1920:1080"` -> "1080p" (by the shorter side)."""
    try:
        width, height = (int(part) for part in ratio.split(":"))
    except ValueError as exc:
        raise ValueError(f"ratio must look like '1280:720', got {ratio!r}") from exc
    return "720p" if min(width, height) <= 720 else "1080p"


def canonical_model(model: str) -> str:
    """A provider's model id as its canonical name (unchanged when already canonical)."""
    return ALIASES.get(model, model)


_SEGMIND_SOURCE = (
    "estimate: no Segmind price in the seeds; Runway's list price in USD (1 credit = $0.01)"
)
_AIMLAPI_SOURCE = (
    "estimate: no AIMLAPI price in the seeds; 105 000 AIMLAPI credits per video second "
    "($1 = 2 000 000 AIMLAPI credits: $0.0525/s, Runway's $0.05/s plus 5%)"
)

DEFAULT_ENTRIES: tuple[PriceEntry, ...] = (
    # Runway (credits)
    PriceEntry("runway", "gen4_turbo", "credits", "second", 5, source=RUNWAY_SOURCE),
    PriceEntry("runway", "gen4.5", "credits", "second", 12, source=RUNWAY_SOURCE,
               extras={"outputFormat": GEN4_5_FORMAT_SURCHARGES}),
    PriceEntry("runway", "gen4_image", "credits", "job",
               tiers={"720p": 5, "1080p": 8}, source=RUNWAY_SOURCE),
    PriceEntry("runway", "gen4_image_turbo", "credits", "job", 2, source=RUNWAY_SOURCE),
    PriceEntry("runway", "gen3a_turbo", "credits", "second", 5,
               source="Runway's price until it retired the model on 2026-07-30 (no longer "
                      "served by Runway's API)"),
    # Runway's API hub (credits): the published prices of its other models
    PriceEntry("runway", "veo3.1", "credits", "second", 20,
               extras={"audio": {"true": 20, UNSET: 20}},
               source=f"{HUB_SOURCE}: 20 credits a second without audio, 40 with; audio left "
                      "unset is priced as on, the dearer", checked=HUB_CHECKED),
    # Segmind (USD; Segmind's credits are dollars)
    PriceEntry("segmind", "gen4_turbo", "USD", "second", 0.05, source=_SEGMIND_SOURCE,
               estimate=True),
    PriceEntry("segmind", "gen3a_turbo", "USD", "second", 0.05, source=_SEGMIND_SOURCE,
               estimate=True),
    PriceEntry("segmind", "gen4_image", "USD", "job", tiers={"720p": 0.05, "1080p": 0.08},
               source=_SEGMIND_SOURCE, estimate=True),
    # AIMLAPI (AIMLAPI credits, as `meta.usage.credits_used` reports them)
    PriceEntry("aimlapi", "gen4_turbo", "credits", "second", 105_000, source=_AIMLAPI_SOURCE,
               estimate=True),
    PriceEntry("aimlapi", "gen3a_turbo", "credits", "second", 105_000, source=_AIMLAPI_SOURCE,
               estimate=True),
)


class PriceTable:
    """Price entries by (provider, canonical model), with user overrides."""

    def __init__(self, entries: tuple[PriceEntry, ...] | list[PriceEntry]) -> None:
        self.entries: dict[tuple[str, str], PriceEntry] = {
            (entry.provider, entry.model): entry for entry in entries
        }

    @classmethod
    def default(cls) -> PriceTable:
        """The built-in prices."""
        return cls(DEFAULT_ENTRIES)

    def entry(self, provider: str, model: str) -> PriceEntry:
        """The entry of a model on a provider.

        Raises:
            UnknownPrice: none known.
        """
        key = (provider, canonical_model(model))
        if key not in self.entries:
            known = sorted(m for p, m in self.entries if p == provider)
            raise UnknownPrice(
                f"no price for model {model!r} on provider {provider!r}; "
                f"priced models: {', '.join(known) or 'none'}"
            )
        return self.entries[key]

    def price(
        self, provider: str, model: str, *, ratio: str | None = None,
        duration: float | None = None, body: Mapping[str, Any] | None = None,
    ) -> Price:
        """The price of one generation (see `price`)."""
        entry = self.entry(provider, model)
        return Price(
            amount=entry.cost(ratio=ratio, duration=duration, body=body),
            unit=entry.unit,
            provider=provider,
            model=entry.model,
            source=entry.source,
            checked=entry.checked,
            estimate=entry.estimate,
        )

    def with_overrides(self, overrides: Mapping[str, Mapping[str, Any]]) -> PriceTable:
        """A copy with `{provider: {model: {amount|tiers, unit, per, source, ...}}}` applied.

        Fields not given keep the overridden entry's values; a new model needs `unit` and
        `amount` or `tiers`. Overridden entries are no longer estimates unless they say so.

        Raises:
            ValueError: an unknown provider or field, or an incomplete new entry.
        """
        entries = dict(self.entries)
        allowed = {"amount", "tiers", "unit", "per", "source", "checked", "estimate", "extras"}
        for provider, models in overrides.items():
            if provider not in PROVIDERS:
                raise ValueError(
                    f"price override: unknown provider {provider!r}; one of {', '.join(PROVIDERS)}"
                )
            if not isinstance(models, Mapping):
                raise ValueError(f"price override for {provider}: must map model -> fields")
            for model, fields in models.items():
                if isinstance(fields, (int, float)):
                    fields = {"amount": fields}
                if not isinstance(fields, Mapping):
                    raise ValueError(f"price override {provider}.{model}: must be a mapping")
                unknown = set(fields) - allowed
                if unknown:
                    raise ValueError(
                        f"price override {provider}.{model}: unknown field(s) "
                        f"{', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}"
                    )
                name = canonical_model(model)
                changes = {"source": "user override", "checked": "", "estimate": False,
                           **fields}
                if "amount" in fields and "tiers" not in fields:
                    changes["tiers"] = {}
                if "tiers" in fields and "amount" not in fields:
                    changes["amount"] = None
                base = entries.get((provider, name))
                if base is None:
                    if "unit" not in fields or ("amount" not in fields and "tiers" not in fields):
                        raise ValueError(
                            f"price override {provider}.{model}: a new entry needs unit and "
                            "amount (or tiers)"
                        )
                    base = PriceEntry(provider, name, fields["unit"])
                entry = replace(base, **changes)
                if entry.unit not in ("credits", "USD"):
                    raise ValueError(f"price override {provider}.{model}: unit must be credits or USD")
                if entry.per not in ("job", "second"):
                    raise ValueError(f"price override {provider}.{model}: per must be job or second")
                values = list(entry.tiers.values()) if entry.tiers else [entry.amount]
                if not isinstance(entry.extras, Mapping) or not all(
                    isinstance(v, Mapping) for v in entry.extras.values()
                ):
                    raise ValueError(f"price override {provider}.{model}: extras must map "
                                     "field -> {value: amount}")
                values += [v for by_value in entry.extras.values() for v in by_value.values()]
                if any(not isinstance(v, (int, float)) or v < 0 for v in values):
                    raise ValueError(
                        f"price override {provider}.{model}: prices must be numbers >= 0"
                    )
                entries[(provider, name)] = entry
        return PriceTable(list(entries.values()))

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str], base: PriceTable | None = None) -> PriceTable:
        """`base` (default: the built-in prices) with the overrides of a YAML file."""
        import yaml  # only for this optional path

        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
        if not isinstance(data, Mapping):
            raise ValueError(f"{path}: a price file must map provider -> model -> fields")
        return (base or cls.default()).with_overrides(data)


_DEFAULT_TABLE = PriceTable.default()

#: Each provider's own unit (what its status answers and balance endpoints report).
PROVIDER_UNITS: dict[str, str] = {"runway": "credits", "aimlapi": "credits", "segmind": "USD"}


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




def price(
    provider: str,
    model: str,
    *,
    ratio: str | None = None,
    duration: float | None = None,
    table: PriceTable | None = None,
    body: Mapping[str, Any] | None = None,
) -> Price:
    """The price of one generation of `model` on `provider`.

    Args:
        provider: "runway", "segmind" or "aimlapi".
        model: Canonical name or the provider's own id.
        ratio: The output ratio ("1280:720"), where the price depends on the resolution.
        duration: Seconds of video, where priced per second.
        table: Prices to use (default: the built-in table).
        body: The request body, where some of its fields change the price (veo3.1's
            ``audio``, gen4.5's ``outputFormat``).

    Returns:
        The amount, its unit, its source and the date it was checked.

    Raises:
        UnknownPrice: no price for this provider and model.
        ValueError: `ratio` / `duration` needed but missing.
    """
    return (table or _DEFAULT_TABLE).price(provider, model, ratio=ratio, duration=duration,
                                           body=body)
