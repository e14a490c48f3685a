"""The model catalogue: every model each provider sells, its rules, and whether it is served."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import Enum
from importlib import resources
from typing import Any, Literal

from prefect_runway.errors import InvalidRequest, ModelRetired

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

# ---- Runway's API hub: every model of its four generation endpoints, as data ---------------


@dataclass(frozen=True)
class ApiModel:
    """One model of one of Runway's endpoints, as ``runway_api.json`` records it.

    Attributes:
        endpoint: ``image_to_video``, ``text_to_video``, ``text_to_image`` or ``video_upscale``.
        model: The model name, as sent in ``model``.
        sdk_class: The ``runwayml`` TypedDict the fields were read from (``Veo3_1``).
        fields: Every body field by wire name: ``{"required": bool}`` and its shape, one of
            ``{"type": string|integer|number|boolean|any}``, ``{"enum": [...]}``,
            ``{"list": shape}``, ``{"object": {name: field}}``, ``{"any_of": [shape, ...]}``.
        limits: Ranges Runway states in prose only, by field: ``min``/``max`` of a number,
            ``min_items``/``max_items`` of a list.
    """

    endpoint: str
    model: str
    sdk_class: str
    fields: Mapping[str, Mapping[str, Any]]
    limits: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(k for k, v in self.fields.items() if v.get("required"))

    @property
    def optional(self) -> tuple[str, ...]:
        return tuple(k for k, v in self.fields.items() if not v.get("required"))

    def values(self, name: str) -> tuple[Any, ...]:
        """The allowed values of field ``name`` (empty if it is absent or not a choice)."""
        return tuple(v for v in _enum_values(self.fields.get(name)) if not isinstance(v, bool))

    @property
    def ratios(self) -> tuple[str, ...]:
        return tuple(str(v) for v in self.values("ratio"))

    @property
    def durations(self) -> tuple[int, ...]:
        """Allowed whole-second lengths: the spec's choices, else the stated range, else ()."""
        choices = tuple(v for v in self.values("duration") if isinstance(v, int))
        if choices:
            return choices
        span = self.limits.get("duration")
        if span and "min" in span and "max" in span:
            return tuple(range(span["min"], span["max"] + 1))
        return ()

    @property
    def positions(self) -> tuple[str, ...]:
        """Positions a ``promptImage`` list entry may take (``first``, ``last``)."""
        item = _list_item(self.fields.get("promptImage"))
        return tuple(str(v) for v in _enum_values((item or {}).get("object", {}).get("position")))

    @property
    def output_formats(self) -> tuple[str, ...]:
        return tuple(str(v) for v in self.values("outputFormat"))

    @property
    def options(self) -> dict[str, Mapping[str, Any]]:
        """The fields beyond the ones every request type has (``audio``, ``outputFormat``...)."""
        return {k: v for k, v in self.fields.items() if k not in COMMON_FIELDS}


#: Body fields the request types set themselves; the rest of a model's fields are options.
COMMON_FIELDS = frozenset({
    "model", "promptText", "promptImage", "ratio", "duration", "seed", "contentModeration",
    "referenceImages", "videoUri",
})
#: A body field's name in the request types, where it differs (for errors naming the field).
REQUEST_FIELD_NAMES = {
    "promptText": "prompt", "promptImage": "image", "referenceImages": "reference_images",
    "contentModeration": "content_moderation", "videoUri": "video",
}
#: Runway's endpoint of each request type: a still from text, a video from an image.
REQUEST_ENDPOINTS: dict[str, str] = {"image": "text_to_image", "video": "image_to_video"}


def _enum_values(shape: Mapping[str, Any] | None) -> list[Any]:
    if not shape:
        return []
    if "enum" in shape:
        return list(shape["enum"])
    return [v for member in shape.get("any_of", ()) for v in _enum_values(member)]


def _list_item(shape: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if not shape:
        return None
    if "list" in shape:
        return shape["list"]  # type: ignore[no-any-return]
    for member in shape.get("any_of", ()):
        if "list" in member:
            return member["list"]  # type: ignore[no-any-return]
    return None


def _load_runway_api() -> dict[str, Any]:
    text = resources.files("prefect_runway.models").joinpath("runway_api.json").read_text("utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


_RUNWAY_API = _load_runway_api()
#: Where the hub's rules come from, and when they were checked.
RUNWAY_API_SOURCES: tuple[str, ...] = tuple(_RUNWAY_API["sources"])
RUNWAY_API_SDK: str = _RUNWAY_API["sdk"]
RUNWAY_API_CHECKED: date = date.fromisoformat(_RUNWAY_API["checked"])
#: Every model of Runway's four generation endpoints: endpoint -> model -> ApiModel.
RUNWAY_API: dict[str, dict[str, ApiModel]] = {
    endpoint: {
        model: ApiModel(endpoint, model, raw["class"], raw["fields"], raw.get("limits", {}))
        for model, raw in models.items()
    }
    for endpoint, models in _RUNWAY_API["endpoints"].items()
}


def api_model(endpoint: str, model: str) -> ApiModel:
    """The rules of ``model`` on Runway's ``endpoint``.

    Raises:
        InvalidRequest: the endpoint does not serve the model (names the ones it does).
    """
    if endpoint not in RUNWAY_API:
        raise InvalidRequest("endpoint", f"{endpoint!r} is not one of Runway's generation "
                             "endpoints", allowed=sorted(RUNWAY_API), provider="runway")
    found = RUNWAY_API[endpoint].get(model)
    if found is None:
        elsewhere = [e for e, models in RUNWAY_API.items() if model in models]
        hint = f"; served on {', '.join(elsewhere)}" if elsewhere else ""
        raise InvalidRequest("model", f"{model!r} is not a {endpoint} model{hint}",
                             allowed=list(RUNWAY_API[endpoint]), provider="runway")
    return found


def check_body(endpoint: str, body: Mapping[str, Any]) -> ApiModel:
    """Check a body for Runway's ``endpoint`` against the model's rules, before it is sent.

    Every field must be one the model takes, of its type, among its allowed values and within
    the ranges Runway states; every required field must be there.

    Raises:
        InvalidRequest: naming the field (as the request types call it) and what is allowed.
    """
    rules = api_model(endpoint, str(body.get("model")))
    _check_object(body, rules.fields, "", rules)
    return rules


def option_name(wire: str) -> str:
    """An option's name in the request types: the body field in snake case
    (``negativePrompt`` -> ``negative_prompt``)."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in wire).lstrip("_")


def check_options(kind: str, model: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """A request's ``options`` checked against the model's rules, as body fields.

    Args:
        kind: ``image`` (Runway's ``text_to_image``) or ``video`` (``image_to_video``).
        model: The model the request names.
        options: ``{option name: value}``, names as :func:`option_name` gives them.

    Returns:
        ``{wire name: value}``, to add to the body.

    Raises:
        InvalidRequest: an option the model does not have (naming those it has), or a value
            of the wrong type, outside its choices or its stated range.
    """
    if not options:
        return {}
    rules = RUNWAY_API[REQUEST_ENDPOINTS[kind]].get(model)
    offered = {option_name(w): w for w in rules.options} if rules else {}
    body: dict[str, Any] = {}
    for name, value in options.items():
        wire = offered.get(name)
        if wire is None or rules is None:
            raise InvalidRequest(
                f"options.{name}", "is not one of the model's options",
                allowed=sorted(offered) or "none: the model takes no options", model=model,
            )
        if value is None:
            continue
        _check_value(value, rules.fields[wire], wire, rules, rules.limits.get(wire, {}))
        body[wire] = value
    return body


def _field_name(path: str) -> str:
    head, dot, rest = path.partition(".")
    bracket = head.find("[")
    key, tail = (head, "") if bracket < 0 else (head[:bracket], head[bracket:])
    name = REQUEST_FIELD_NAMES.get(key, key) if key in COMMON_FIELDS else f"options.{option_name(key)}"
    return name + tail + dot + rest


def _invalid(rules: ApiModel, path: str, message: str, allowed: Any = None) -> InvalidRequest:
    return InvalidRequest(_field_name(path), message, allowed=allowed, provider="runway",
                          model=rules.model)


def _check_object(
    value: Any, fields: Mapping[str, Mapping[str, Any]], path: str, rules: ApiModel
) -> None:
    prefix = f"{path}." if path else ""
    if not isinstance(value, Mapping):
        raise _invalid(rules, path, f"{type(value).__name__} is not an object",
                       allowed=f"an object of {', '.join(fields)}")
    for key in value:
        if key not in fields:
            raise _invalid(rules, prefix + str(key), f"is not taken by {rules.model}",
                           allowed=[_field_name(prefix + k) for k in fields])
    for key, spec in fields.items():
        if key not in value or value[key] is None:
            if spec.get("required"):
                raise _invalid(rules, prefix + key, "is required")
            continue
        limit = rules.limits.get(key, {}) if not path else {}
        _check_value(value[key], spec, prefix + key, rules, limit)


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "any": (object,),
}


def _check_value(
    value: Any, spec: Mapping[str, Any], path: str, rules: ApiModel, limit: Mapping[str, int]
) -> None:
    if "any_of" in spec:
        problems = []
        for member in spec["any_of"]:
            try:
                _check_value(value, member, path, rules, limit)
                return
            except InvalidRequest as e:
                problems.append(e)
        # The member of the value's own JSON kind explains best (a list's item, a string's...).
        kind = "list" if isinstance(value, list) else "object" if isinstance(value, Mapping) else ""
        for member, problem in zip(spec["any_of"], problems, strict=True):
            if kind and kind in member:
                raise problem
        allowed = [v for m in spec["any_of"] for v in _describe(m)]
        raise _invalid(rules, path, f"{value!r} is not allowed", allowed=allowed)
    if "enum" in spec:
        choices = spec["enum"]
        if isinstance(value, bool) or value not in choices or (
            not isinstance(value, type(choices[0])) and isinstance(choices[0], str)
        ):
            raise _invalid(rules, path, f"{value!r} is not allowed", allowed=choices)
        return
    if "list" in spec:
        if not isinstance(value, list):
            raise _invalid(rules, path, f"{value!r} is not a list", allowed=_describe(spec))
        lo, hi = limit.get("min_items", 0), limit.get("max_items")
        if len(value) < lo or (hi is not None and len(value) > hi):
            span = f"{lo}-{hi}" if hi is not None else f"at least {lo}"
            raise _invalid(rules, path, f"{len(value)} given", allowed=f"{span} items")
        for i, item in enumerate(value):
            _check_value(item, spec["list"], f"{path}[{i}]", rules, {})
        return
    if "object" in spec:
        _check_object(value, spec["object"], path, rules)
        return
    kind = spec.get("type", "any")
    wrong_bool = isinstance(value, bool) and kind not in ("boolean", "any")
    if wrong_bool or not isinstance(value, _JSON_TYPES[kind]):
        raise _invalid(rules, path, f"{value!r} is not of type {kind}", allowed=_describe(spec))
    if isinstance(value, str) and not value.strip() and path in ("promptText", "negativePrompt"):
        raise _invalid(rules, path, "must not be empty")
    lo_value, hi_value = limit.get("min"), limit.get("max")
    if not isinstance(value, (int, float)):
        return
    if (lo_value is not None and value < lo_value) or (hi_value is not None and value > hi_value):
        raise _invalid(rules, path, f"{value!r} is out of range",
                       allowed=f"{lo_value}-{hi_value}")


def _describe(spec: Mapping[str, Any]) -> list[str]:
    if "enum" in spec:
        return [repr(v) for v in spec["enum"]]
    if "list" in spec:
        return ["a list"]
    if "object" in spec:
        return ["an object"]
    if "any_of" in spec:
        return [d for m in spec["any_of"] for d in _describe(m)]
    return [f"a {spec.get('type', 'value')}"]


def _hub_spec(rules: ApiModel) -> ModelSpec:
    """The request rules of a hub model, in the shape the providers read."""
    kind: Literal["image", "video"] = "image" if rules.endpoint == "text_to_image" else "video"
    ratios = rules.ratios
    ratio_required = bool(rules.fields.get("ratio", {}).get("required"))
    default_ratio = ""
    if ratio_required:  # 1280:720 as for the hand-made models, else the shape nearest 16:9
        default_ratio = "1280:720" if "1280:720" in ratios else min(ratios, key=_off_wide)
    refs = rules.limits.get("referenceImages", {})
    item = _list_item(rules.fields.get("referenceImages")) or {}
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

hub_spec = _hub_spec  # public: the request rules of any hub model (text_to_video ones too)


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
        _hub_spec(rules),
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
        parts.append(f"{e.provider} {_span(e.spec.durations)}")
    return "; ".join(parts)


def _span(values: tuple[int, ...]) -> str:
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
