"""The model catalogue: every model each provider sells, its rules, and whether it is served."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import Enum
from typing import Literal

from prefect_runway.errors import InvalidRequest, ModelRetired
from prefect_runway.models.runway_api import (
    REQUEST_ENDPOINTS,
    RUNWAY_API,
    RUNWAY_API_CHECKED,
    RUNWAY_API_SDK,
    RUNWAY_API_SOURCES,
    ApiModel,
    list_item,
)

#: The day the entries below were last checked against their sources.
CHECKED = date(2026, 12, 1)

SEED_MAX = 4_294_967_295
MiB = 1024 * 1024


class ModelStatus(str, Enum):
    """A model's status on one provider."""

    SERVED = "served"
    NEW = "new"
    RETIRED = "retired"

    @property
    def usable(self) -> bool:
        return self is not ModelStatus.RETIRED


@dataclass(frozen=True)
class ModelSpec:
    """One model as one provider sells it: its wire name and the rules of its request.

    Attributes:
        model: The Runway model name used in requests (``gen4_turbo``).
        wire_name: What the provider calls it (a Segmind slug, an AIMLAPI id, ...).
        kind: ``image`` or ``video`` (``video_to_video`` for catalogue-only entries).
        ratios: The ratios the provider takes for this model, in its own vocabulary.
        default_ratio: What is sent when the request names none.
        seed_range: Inclusive bounds of ``seed``.
        durations: Allowed video lengths in seconds.
        min_reference_images: Reference images required (stills).
        max_reference_images: Reference images allowed (stills).
        last_image: Whether a last frame may be given.
        requires_prompt: Whether a non-empty prompt is required.
        content_moderation: Whether ``contentModeration.publicFigureThreshold`` is taken.
        endpoint: Runway's endpoint of a model of its API hub (``image_to_video``, ...).
        fields: The body fields a hub model takes (wire names); empty for the hand-made
            entries, whose bodies the providers build as they always have.
        ratio_required: Whether a ratio is always sent (else only when the request names one).
        duration_open: Whether any whole number of seconds is sent on (Runway publishes no
            range for the model's ``duration``; Runway checks it).
        reference_tags: Whether reference images carry a ``tag``.
    """

    model: str
    wire_name: str
    kind: Literal["image", "video", "video_to_video"]
    ratios: tuple[str, ...]
    default_ratio: str
    seed_range: tuple[int, int] = (0, SEED_MAX)
    durations: tuple[int, ...] = (5, 10)
    min_reference_images: int = 0
    max_reference_images: int = 3
    last_image: bool = False
    requires_prompt: bool = False
    content_moderation: bool = False
    endpoint: str = ""
    fields: tuple[str, ...] = ()
    ratio_required: bool = True
    duration_open: bool = False
    reference_tags: bool = True


@dataclass(frozen=True)
class CatalogueEntry:
    """A model on a provider: its rules, its status, and where the facts come from."""

    provider: str
    spec: ModelSpec
    status: ModelStatus = ModelStatus.SERVED
    retired_on: date | None = None
    replacement: str | None = None
    added_on: date | None = None
    sources: tuple[str, ...] = ()
    checked: date = CHECKED
    note: str = ""

    @property
    def model(self) -> str:
        return self.spec.model


@dataclass(frozen=True)
class InputLimits:
    """How large an input image may be on a provider, by the way it is passed (bytes).

    Attributes:
        data_uri: Longest accepted ``data:`` URI, counted in characters of the encoded URI
            (None: data URIs are not accepted).
        url: Largest image behind an https URL.
        upload: Largest image sent through the provider's upload route (None: no uploads).
        upload_scheme: The URI scheme of an uploaded image (``runway://``), if any.
        aspect: Inclusive width/height bounds checked by the provider, if any.
    """

    data_uri: int | None
    url: int
    upload: int | None = None
    upload_scheme: str | None = None
    aspect: tuple[float, float] | None = None
    sources: tuple[str, ...] = field(default=(), compare=False)


# ---- ratio vocabularies ----------------------------------------------------------------------

# gen4_image: the 16 resolutions of runwayml 5.24.0 `Gen4Image.ratio` (and `Gen4ImageTurbo.ratio`).
# Ordered 720p tier first, so that a generic ratio ("16:9", "4:3", "1:1", ...) maps to the
# cheaper 720p resolution of its shape, like the default; 1080p-class resolutions are used
# when asked for by name.
GEN4_IMAGE_RATIOS = (
    "1280:720", "720:1280", "720:720", "960:720", "720:960", "1680:720",
    "1920:1080", "1080:1920", "1080:1080", "1024:1024", "1360:768",
    "1440:1080", "1080:1440", "1168:880", "1808:768", "2112:912",
)
# gen4_turbo and gen4.5: runwayml 5.24.0 `Gen4Turbo.ratio`, `Gen4_5.ratio`; Segmind's seed 001.
GEN4_TURBO_RATIOS = ("1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672")
# gen3a_turbo on Runway: runwayml 4.18.0 `Gen3aTurbo.ratio`.
GEN3A_TURBO_RATIOS = ("1280:768", "768:1280")
AIMLAPI_GEN4_RATIOS = ("16:9", "9:16", "4:3", "3:4", "1:1", "21:9")
WIDE_TALL = ("16:9", "9:16")

RUNWAY_DURATIONS = tuple(range(2, 11))
FIVE_OR_TEN = (5, 10)
SEGMIND_SEEDS = (1, 99_999)

# Ratios that mean the same picture shape across the providers' vocabularies. A ratio that a
# model does not list is mapped to the member of its group that the model does list.
RATIO_GROUPS: tuple[frozenset[str], ...] = (
    frozenset({"16:9", "1280:720", "1920:1080", "1280:768", "1360:768"}),
    frozenset({"9:16", "720:1280", "1080:1920", "768:1280"}),
    frozenset({"1:1", "960:960", "1024:1024", "1080:1080", "720:720"}),
    frozenset({"4:3", "1104:832", "1168:880", "1440:1080", "960:720"}),
    frozenset({"3:4", "832:1104", "1080:1440", "720:960"}),
    frozenset({"21:9", "1584:672", "1808:768", "2112:912", "1680:720"}),
)


def map_ratio(ratio: str | None, spec: ModelSpec, provider: str) -> str:
    """Return ``ratio`` in the model's own vocabulary, or raise naming the allowed values."""
    if ratio is None:
        return spec.default_ratio
    if not spec.ratios:
        raise InvalidRequest("ratio", f"is not taken by {spec.model}", allowed="none: leave it unset",
                             provider=provider, model=spec.model)
    if ratio in spec.ratios:
        return ratio
    for group in RATIO_GROUPS:
        if ratio in group:
            candidates = [r for r in spec.ratios if r in group]
            if candidates:
                return spec.default_ratio if spec.default_ratio in candidates else candidates[0]
    raise InvalidRequest(
        "ratio",
        f"{ratio!r} has no equivalent",
        allowed=spec.ratios,
        provider=provider,
        model=spec.model,
    )


# ---- sources -----------------------------------------------------------------------------------

_SDK = "runwayml 5.24.0"
_RW_I2V = f"{_SDK} types/image_to_video_create_params.py"
_RW_T2I = f"{_SDK} types/text_to_image_create_params.py"
_RW_418 = "runwayml 4.18.0 types/image_to_video_create_params.py class Gen3aTurbo"
_RW_CHANGELOG = "runwayml 5.0.0 (June 2026) dropped gen3a_turbo and gen4_aleph from the SDK"
_RW_RETIRED = "Runway API changelog: Gen-3 Alpha Turbo retired 2026-07-30 (issue 17)"
_RW_INPUTS = "https://docs.dev.runwayml.com/assets/inputs (size limits table)"
_SEG_000 = "seeds/000 (Segmind runway-gen4-image)"
_SEG_001 = "seeds/001 (Segmind runway-gen4-turbo)"
_SEG_002 = "seeds/002 (Segmind runway-gen3-alphaturbo)"
_AIML_003 = "seeds/003 (AIMLAPI universal video route)"
_AIML_004 = "seeds/004 (AIMLAPI legacy runway route)"
_AIML_API_DOCS = "aimlapi/api-docs docs/api-references/video-models/runway/{gen4_turbo,gen3a_turbo}.json"

_RETIRED_ON = date(2026, 7, 30)

CATALOGUE: tuple[CatalogueEntry, ...] = (
    # ---- Runway ---------------------------------------------------------------------------
    CatalogueEntry(
        "runway",
        ModelSpec("gen4_image", "gen4_image", "image", GEN4_IMAGE_RATIOS, "1280:720",
                  content_moderation=True),
        sources=(f"{_RW_T2I} class Gen4Image",),
    ),
    CatalogueEntry(
        "runway",
        ModelSpec("gen4_image_turbo", "gen4_image_turbo", "image", GEN4_IMAGE_RATIOS, "1280:720",
                  min_reference_images=1, max_reference_images=3, content_moderation=True),
        status=ModelStatus.NEW,
        sources=(f"{_RW_T2I} class Gen4ImageTurbo (referenceImages required, one to three)",),
        note="2 credits a still (gen4_image: 5 at 720p, 8 at 1080p).",
    ),
    CatalogueEntry(
        "runway",
        ModelSpec("gen4_turbo", "gen4_turbo", "video", GEN4_TURBO_RATIOS, "1280:720",
                  durations=RUNWAY_DURATIONS, content_moderation=True),
        sources=(f"{_RW_I2V} class Gen4Turbo", "issue 17: any duration from 2 to 10 seconds"),
    ),
    CatalogueEntry(
        "runway",
        ModelSpec("gen4.5", "gen4.5", "video", GEN4_TURBO_RATIOS, "1280:720",
                  durations=RUNWAY_DURATIONS, requires_prompt=True, content_moderation=True),
        status=ModelStatus.NEW,
        sources=(f"{_RW_I2V} class Gen4_5 (duration 2-10 and promptText required)",),
    ),
    CatalogueEntry(
        "runway",
        ModelSpec("gen3a_turbo", "gen3a_turbo", "video", GEN3A_TURBO_RATIOS, "1280:768",
                  last_image=True, requires_prompt=True),
        status=ModelStatus.RETIRED, retired_on=_RETIRED_ON, replacement="gen4_turbo",
        sources=(_RW_418, _RW_CHANGELOG, _RW_RETIRED),
    ),
    CatalogueEntry(
        "runway",
        ModelSpec("gen4_aleph", "gen4_aleph", "video_to_video", (), ""),
        status=ModelStatus.RETIRED, retired_on=_RETIRED_ON, replacement="aleph2",
        sources=(_RW_CHANGELOG, f"{_SDK} types/video_to_video_create_params.py (model aleph2)"),
        note="video-to-video; not a request model of this package, listed for completeness.",
    ),
    # ---- Segmind --------------------------------------------------------------------------
    CatalogueEntry(
        "segmind",
        ModelSpec("gen4_image", "runway-gen4-image", "image",
                  (*GEN4_TURBO_RATIOS, "1920:1080", "1080:1920"), "1280:720",
                  seed_range=SEGMIND_SEEDS, min_reference_images=1, max_reference_images=3),
        sources=(_SEG_000,),
    ),
    CatalogueEntry(
        "segmind",
        ModelSpec("gen4_turbo", "runway-gen4-turbo", "video", GEN4_TURBO_RATIOS, "1280:720",
                  seed_range=SEGMIND_SEEDS, durations=FIVE_OR_TEN, requires_prompt=True),
        sources=(_SEG_001,),
    ),
    CatalogueEntry(
        "segmind",
        ModelSpec("gen3a_turbo", "runway-gen3-alphaturbo", "video", WIDE_TALL, "16:9",
                  seed_range=SEGMIND_SEEDS, durations=FIVE_OR_TEN, requires_prompt=True),
        sources=(_SEG_002,),
        note="still listed by Segmind after Runway's own API retired the model.",
    ),
    # ---- AIMLAPI --------------------------------------------------------------------------
    CatalogueEntry(
        "aimlapi",
        ModelSpec("gen4_turbo", "runway/gen4_turbo", "video", AIMLAPI_GEN4_RATIOS, "16:9",
                  durations=FIVE_OR_TEN),
        sources=(_AIML_003, _AIML_004, _AIML_API_DOCS),
    ),
    CatalogueEntry(
        "aimlapi",
        ModelSpec("gen3a_turbo", "gen3a_turbo", "video", WIDE_TALL, "16:9",
                  durations=FIVE_OR_TEN, last_image=True),
        sources=(_AIML_004, _AIML_API_DOCS),
        note="AIMLAPI's id has no 'runway/' prefix; still listed after Runway retired it.",
    ),
)

#: Input size limits per provider (bytes; data URIs counted in encoded characters).
LIMITS: dict[str, InputLimits] = {
    "runway": InputLimits(
        data_uri=5 * MiB, url=16 * MiB, upload=200 * MiB, upload_scheme="runway",
        aspect=(0.5, 2.0),
        sources=(_RW_INPUTS, "issue 17 (uploads: 200 MB, runway:// valid 24 h)"),
    ),
    "segmind": InputLimits(data_uri=None, url=16 * MiB, sources=(_SEG_001,)),
    "aimlapi": InputLimits(
        data_uri=16 * MiB, url=16 * MiB, aspect=(0.5, 2.0), sources=(_AIML_003, _AIML_004),
    ),
}


# ---- Runway's API hub: its image_to_video and text_to_image models, as catalogue entries ----


def hub_spec(rules: ApiModel) -> ModelSpec:
    """The request rules of a hub model, in the shape the providers read."""
    kind: Literal["image", "video"] = "image" if rules.endpoint == "text_to_image" else "video"
    ratios = rules.ratios
    ratio_required = bool(rules.fields.get("ratio", {}).get("required"))
    default_ratio = ""
    if ratio_required:  # 1280:720 as for the hand-made models, else the shape nearest 16:9
        default_ratio = "1280:720" if "1280:720" in ratios else min(ratios, key=_off_wide)
    refs = rules.limits.get("referenceImages", {})
    item = list_item(rules.fields.get("referenceImages")) or {}
    required_refs = bool(rules.fields.get("referenceImages", {}).get("required"))
    return ModelSpec(
        rules.model, rules.model, kind, ratios, default_ratio,
        durations=rules.durations,
        min_reference_images=refs.get("min_items", int(required_refs)),
        max_reference_images=(
            refs.get("max_items", MAX_UNSTATED_REFERENCES) if "referenceImages" in rules.fields
            else 0
        ),
        last_image="last" in rules.positions,
        requires_prompt=bool(rules.fields.get("promptText", {}).get("required")),
        content_moderation="contentModeration" in rules.fields,
        endpoint=rules.endpoint,
        fields=tuple(rules.fields),
        ratio_required=ratio_required,
        duration_open="duration" in rules.fields and not rules.durations,
        reference_tags="tag" in item.get("object", {}),
    )



def _off_wide(ratio: str) -> float:
    """How far ``W:H`` is from 16:9 (``auto`` and other words: furthest)."""
    width, _, height = ratio.partition(":")
    if not (width.isdigit() and height.isdigit()) or not int(height):
        return float("inf")
    return abs(int(width) / int(height) - 16 / 9)


#: Reference images sent at most to a hub model whose count Runway does not state.
MAX_UNSTATED_REFERENCES = 16

#: The hub models a request type can name (image_to_video and text_to_image), beyond the
#: hand-made entries above: served by Runway's API only.
RUNWAY_HUB: tuple[CatalogueEntry, ...] = tuple(
    CatalogueEntry(
        "runway",
        hub_spec(rules),
        status=ModelStatus.NEW,
        added_on=RUNWAY_API_CHECKED,
        sources=(f"{RUNWAY_API_SDK} types/{endpoint}_create_params.py class {rules.sdk_class}",
                 *RUNWAY_API_SOURCES[1:2]),
        checked=RUNWAY_API_CHECKED,
    )
    for endpoint in REQUEST_ENDPOINTS.values()
    for rules in RUNWAY_API[endpoint].values()
    if not any(e.provider == "runway" and e.model == rules.model for e in CATALOGUE)
)


#: Models a request may name, by kind (the union over providers, retired ones included so
#: that a request for one is refused with the replacement named, not "unknown model").
IMAGE_MODELS: tuple[str, ...] = ("gen4_image", "gen4_image_turbo")
VIDEO_MODELS: tuple[str, ...] = ("gen4_turbo", "gen4.5", "gen3a_turbo")
#: ... and with the models of Runway's API hub, the vocabulary of the request types.
REQUEST_IMAGE_MODELS: tuple[str, ...] = IMAGE_MODELS + tuple(
    e.model for e in RUNWAY_HUB if e.spec.kind == "image")
REQUEST_VIDEO_MODELS: tuple[str, ...] = VIDEO_MODELS + tuple(
    e.model for e in RUNWAY_HUB if e.spec.kind == "video")

_ALL: tuple[CatalogueEntry, ...] = CATALOGUE + RUNWAY_HUB
_BY_KEY: dict[tuple[str, str], CatalogueEntry] = {(e.provider, e.model): e for e in _ALL}


def entry(provider: str, model: str) -> CatalogueEntry | None:
    """The catalogue entry of ``model`` on ``provider``, or None if the provider never sold it."""
    return _BY_KEY.get((provider, model))


def entries(
    provider: str | None = None, model: str | None = None, *, usable: bool | None = None
) -> list[CatalogueEntry]:
    """Catalogue entries, filtered by provider, model and whether they are still served."""
    return [
        e for e in _ALL
        if (provider is None or e.provider == provider)
        and (model is None or e.model == model)
        and (usable is None or e.status.usable == usable)
    ]


def providers() -> tuple[str, ...]:
    """Every provider in the catalogue, in catalogue order."""
    return tuple(dict.fromkeys(e.provider for e in _ALL))


def status(provider: str, model: str) -> ModelStatus | None:
    """``model``'s status on ``provider`` (None if the provider never sold it)."""
    found = entry(provider, model)
    return found.status if found else None


def served_by(model: str) -> tuple[str, ...]:
    """The providers that still serve ``model``."""
    return tuple(e.provider for e in entries(model=model, usable=True))


def specs(provider: str) -> dict[str, ModelSpec]:
    """The rules of every model ``provider`` still serves, by model name."""
    return {e.model: e.spec for e in entries(provider, usable=True) if e.spec.kind != "video_to_video"}


def durations(model: str, provider: str | None = None) -> tuple[int, ...]:
    """Allowed lengths of ``model`` on ``provider``; without a provider, on any that serve it."""
    found = entries(provider, model, usable=True) or entries(provider, model)
    return tuple(sorted({d for e in found for d in e.spec.durations}))


def open_durations(model: str) -> bool:
    """Whether every provider serving ``model`` takes any whole number of seconds (Runway
    publishes no range for it)."""
    found = entries(model=model, usable=True)
    return bool(found) and all(e.spec.duration_open for e in found)


def describe_durations(model: str) -> str:
    """Which provider takes which lengths of ``model``, e.g. ``runway 2-10; segmind 5 or 10``."""
    parts = []
    for e in entries(model=model, usable=True):
        parts.append(f"{e.provider} {span_text(e.spec.durations)}")
    return "; ".join(parts)


def span_text(values: tuple[int, ...]) -> str:
    """Lengths in words: ``2-10``, ``5 or 10``; none: any whole number of seconds."""
    if not values:
        return "any whole number of seconds"
    if len(values) > 2 and list(values) == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}-{values[-1]}"
    return " or ".join(str(v) for v in values)


def check_model(provider: str, model: str, kind: str | None = None) -> ModelSpec:
    """The rules of ``model`` on ``provider``, or the typed error that says why not.

    Raises:
        ModelRetired: the provider retired the model (names the replacement and the providers
            that still serve it).
        InvalidRequest: the provider does not sell the model (names the ones it does, and who
            serves this one), or the model is not of ``kind``.
    """
    served = specs(provider)
    found = entry(provider, model)
    if found is not None and found.status is ModelStatus.RETIRED:
        raise ModelRetired(
            model,
            provider=provider,
            retired_on=found.retired_on,
            replacement=found.replacement,
            served_by=served_by(model),
            allowed=sorted(served),
        )
    spec = served.get(model)
    if spec is None:
        elsewhere = served_by(model)
        hint = f"; served by {', '.join(elsewhere)}" if elsewhere else ""
        raise InvalidRequest(
            "model", f"{model!r} is not offered{hint}", allowed=sorted(served), provider=provider,
        )
    if kind is not None and spec.kind != kind:
        raise InvalidRequest("model", f"{model!r} is not a {kind} model")
    return spec
