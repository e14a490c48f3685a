"""Runway's API hub as data: every model of its four generation endpoints (``runway_api.json``)
and the check of a body or a request's options against a model's rules, before it is sent."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from typing import Any

from prefect_runway.errors import InvalidRequest


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
        item = list_item(self.fields.get("promptImage"))
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


def list_item(shape: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The shape of a list field's items (of its list member, if it is a choice), or None."""
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


def check_options(
    kind: str, model: str, options: Mapping[str, Any], endpoint: str | None = None
) -> dict[str, Any]:
    """A request's ``options`` checked against the model's rules, as body fields.

    Args:
        kind: ``image`` (Runway's ``text_to_image``) or ``video`` (``image_to_video``).
        model: The model the request names.
        options: ``{option name: value}``, names as :func:`option_name` gives them.
        endpoint: The model's endpoint, where it is not ``kind``'s (``video_upscale``).

    Returns:
        ``{wire name: value}``, to add to the body.

    Raises:
        InvalidRequest: an option the model does not have (naming those it has), or a value
            of the wrong type, outside its choices or its stated range.
    """
    if not options:
        return {}
    rules = RUNWAY_API[endpoint or REQUEST_ENDPOINTS[kind]].get(model)
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
