"""``prefect-runway models``: every model each provider serves, with its rules and price, as
markdown (the docs' models page is this command's output)."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from typing import Any

from prefect_runway.cli.common import Parser
from prefect_runway.errors import UsageError
from prefect_runway.models.catalogue import entries, span_text
from prefect_runway.models.runway_api import (
    COMMON_FIELDS,
    REQUEST_FIELD_NAMES,
    RUNWAY_API,
    RUNWAY_API_CHECKED,
    RUNWAY_API_SDK,
    ApiModel,
    list_item,
    option_name,
)
from prefect_runway.money.prices import PriceTable, UnknownPrice

__all__ = ["add_parser", "models_page"]

#: What each of Runway's endpoints makes, and the flow that runs it.
ENDPOINTS = {
    "text_to_image": "a still from a prompt (and reference images): the still step, `generate_image`",
    "image_to_video": "a video from a first frame (and, where listed, a last one): the video "
                      "step, `animate_image`, `image_to_video`",
    "text_to_video": "a video from a prompt alone: `text_to_video`",
    "video_upscale": "a finished video made larger or smoother",
}

HEADER = """# Models

Every model each provider serves through this package, with the rules a request is checked
against before anything is sent, and its price. This page is the output of
`prefect-runway models` (`prefect-runway models --endpoint text_to_video` prints one table);
a test fails when the two differ.

A price marked *unknown* is not published where we could check it: the plan shows it as
unknown, and a run with a budget refuses the model until the block's `prices` gives one
(see [Money](money.md)).
"""


def _shape(field: Mapping[str, Any] | None) -> str:
    if not field:
        return ""
    if "enum" in field:
        return " / ".join(str(v).lower() if isinstance(v, bool) else str(v) for v in field["enum"])
    if "type" in field:
        return {"string": "text", "boolean": "true / false"}.get(field["type"], field["type"])
    if "list" in field:
        return "list"
    if "object" in field:
        return "object"
    return " or ".join(filter(None, (_shape(m) for m in field.get("any_of", ())))) or "any"


def _range(rules: ApiModel, wire: str) -> str:
    limit = rules.limits.get(wire, {})
    if "min" in limit or "max" in limit:
        return f" {limit.get('min', '')}-{limit.get('max', '')}"
    if "min_items" in limit or "max_items" in limit:
        return f" ({limit.get('min_items', 0)}-{limit.get('max_items', '')})"
    return ""


def _options(rules: ApiModel) -> str:
    return "; ".join(
        f"`{option_name(wire)}` {_shape(field)}{_range(rules, wire)}".strip()
        for wire, field in sorted(rules.options.items())
    ) or "-"


def _needs(rules: ApiModel) -> str:
    """Fields a request must give beyond the model and its prompt/image."""
    given = {"model", "promptText", "promptImage", "ratio", "duration"}  # every request sets
    needed = [w for w in rules.required if w not in given]
    return ", ".join(f"`{REQUEST_FIELD_NAMES.get(w) or option_name(w)}`{_range(rules, w)}"
                     for w in needed) or "-"


def _frames(rules: ApiModel) -> str:
    if "promptImage" not in rules.fields:
        return "-"
    item = list_item(rules.fields.get("promptImage"))
    return ", ".join(rules.positions) or ("references" if item else "first")


def _price(prices: PriceTable, provider: str, model: str) -> str:
    try:
        return prices.entry(provider, model).describe()
    except UnknownPrice:
        return "*unknown*"


def _row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(c.replace("|", "/") for c in cells) + " |"


def endpoint_table(endpoint: str, prices: PriceTable) -> list[str]:
    """One endpoint of Runway's API: a heading, what it makes, a row per model."""
    models = RUNWAY_API[endpoint]
    lines = [f"### `{endpoint}` ({len(models)} models)", "", ENDPOINTS[endpoint] + ".", "",
             _row(["model", "ratios", "seconds", "frames", "needs", "options", "price"]),
             _row(["---"] * 7)]
    for name, rules in models.items():
        durations = ("-" if "duration" not in rules.fields else
                     span_text(rules.durations) if rules.durations else "any (Runway checks)")
        lines.append(_row([f"`{name}`", ", ".join(rules.ratios) or "-", durations,
                           _frames(rules), _needs(rules), _options(rules),
                           _price(prices, "runway", name)]))
    return lines + [""]


def providers_table(prices: PriceTable) -> list[str]:
    """Segmind's and AIMLAPI's models (and Runway's own first ones), with their status."""
    lines = ["## Segmind and AI/ML API", "",
             "The models served through Segmind's and AI/ML API's own protocols (Runway's API "
             "serves these too; its rows are above).", "",
             _row(["provider", "model", "kind", "ratios", "seconds", "last frame", "status",
                   "price"]), _row(["---"] * 8)]
    for e in entries():
        if e.provider == "runway":
            continue
        seconds = span_text(e.spec.durations) if e.spec.kind == "video" else "-"
        lines.append(_row([e.provider, f"`{e.model}`", e.spec.kind, ", ".join(e.spec.ratios),
                           seconds, "yes" if e.spec.last_image else "-", e.status.value,
                           _price(prices, e.provider, e.model)]))
    return lines + [""]


def models_page(endpoint: str | None = None, prices: PriceTable | None = None) -> str:
    """The models page as markdown (one endpoint's table only, when named)."""
    prices = prices or PriceTable.default()
    if endpoint is not None:
        if endpoint not in RUNWAY_API:
            raise UsageError(f"--endpoint: {endpoint!r} is not one of Runway's endpoints; "
                             f"allowed: {', '.join(RUNWAY_API)}")
        return "\n".join(endpoint_table(endpoint, prices))
    lines = [HEADER, "## Runway's API, by endpoint", "",
             f"As the `{RUNWAY_API_SDK}` SDK's request types (generated from Runway's OpenAPI "
             f"spec) state them, checked {RUNWAY_API_CHECKED.isoformat()}. Every field not in "
             f"the table's columns is a model option (`options={{...}}`, snake case); "
             f"`{'`, `'.join(sorted(COMMON_FIELDS))}` are set by the request types.", ""]
    for name in RUNWAY_API:
        lines += endpoint_table(name, prices)
    return "\n".join(lines + providers_table(prices)).rstrip("\n") + "\n"


def run(args: argparse.Namespace) -> int:
    print(models_page(args.endpoint), end="")
    return 0


def add_parser(sub: Any) -> None:
    """``prefect-runway models [--endpoint ENDPOINT]``."""
    parser: Parser = sub.add_parser(
        "models", help="every model each provider serves: its rules and price (markdown)",
        description="Every model each provider serves through prefect-runway: ratios, "
                    "lengths, frames, required fields, options and price, as markdown.",
    )
    parser.add_argument("--endpoint", choices=list(RUNWAY_API), default=None,
                        help="only this endpoint of Runway's API")
    parser.set_defaults(func=run)
