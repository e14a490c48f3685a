"""Runway's request rules read from the ``runwayml`` SDK's TypedDicts (generated from Runway's
OpenAPI spec): the emulator's own table, and the referee of the client's catalogue."""

from __future__ import annotations

import importlib
import json
import sys
import typing
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

from typing_extensions import NotRequired, Required, is_typeddict

from ._common import FieldError

#: The endpoints whose models the catalogue lists: endpoint -> the SDK module's union alias.
ENDPOINTS: dict[str, str] = {
    "image_to_video": "ImageToVideoCreateParams",
    "text_to_video": "TextToVideoCreateParams",
    "text_to_image": "TextToImageCreateParams",
    "video_upscale": "VideoUpscaleCreateParams",
}

_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean", object: "any"}


def available() -> bool:
    """Whether the ``runwayml`` SDK is installed (it is in the package's test extra)."""
    try:
        importlib.import_module("runwayml")
    except ImportError:
        return False
    return True


def sdk_version() -> str:
    import runwayml

    return str(runwayml.__version__)


def shape(tp: Any) -> dict[str, Any]:
    """The JSON shape of one type hint: ``{"type"}``, ``{"enum"}``, ``{"list"}``,
    ``{"object"}`` (fields by wire name, each with ``required``) or ``{"any_of"}``."""
    origin = get_origin(tp)
    if origin is Annotated:
        return shape(get_args(tp)[0])
    if origin in (Required, NotRequired):
        return shape(get_args(tp)[0])
    if origin is typing.Literal:
        return {"enum": list(get_args(tp))}
    if origin is Union:
        members = [shape(a) for a in get_args(tp) if a is not type(None)]
        if all("enum" in m for m in members):
            return {"enum": [v for m in members for v in m["enum"]]}
        return {"any_of": members}
    if is_typeddict(tp):
        return {"object": fields_of(tp)}
    if tp in _SCALARS:
        return {"type": _SCALARS[tp]}
    args = get_args(tp)
    name = getattr(origin, "__name__", "") or getattr(tp, "__name__", "")
    if len(args) == 1 and (name in ("Iterable", "SequenceNotStr", "Sequence", "list")):
        return {"list": shape(args[0])}
    raise TypeError(f"no JSON shape for the type hint {tp!r}")


def _wire_name(name: str, hint: Any) -> str:
    """The JSON key of a TypedDict key (its ``PropertyInfo(alias=...)``, if any)."""
    while get_origin(hint) in (Required, NotRequired):
        hint = get_args(hint)[0]
    if get_origin(hint) is Annotated:
        for meta in hint.__metadata__:
            alias = getattr(meta, "alias", None)
            if alias:
                return str(alias)
    return name


def fields_of(typed_dict: type) -> dict[str, dict[str, Any]]:
    """A TypedDict's fields by wire name: ``{"required": bool, **shape}``."""
    hints = get_type_hints(typed_dict, include_extras=True)
    total = getattr(typed_dict, "__total__", True)
    out: dict[str, dict[str, Any]] = {}
    for name, hint in hints.items():
        origin = get_origin(hint)
        required = origin is Required or (total and origin is not NotRequired)
        out[_wire_name(name, hint)] = {"required": required, **shape(hint)}
    return dict(sorted(out.items()))


@cache
def endpoint_models(endpoint: str) -> dict[str, dict[str, Any]]:
    """Every model of ``endpoint`` in the installed SDK: model -> ``{"class", "fields"}``."""
    return models_of(importlib.import_module(f"runwayml.types.{endpoint}_create_params"), endpoint)


def models_of(module: Any, endpoint: str) -> dict[str, dict[str, Any]]:
    """Every model of an SDK ``types/<endpoint>_create_params`` module."""
    union = getattr(module, ENDPOINTS[endpoint])
    members = get_args(union) or (union,)
    out: dict[str, dict[str, Any]] = {}
    for member in members:
        fields = fields_of(member)
        names = fields["model"]["enum"]
        for model in names:
            out[model] = {"class": member.__name__, "fields": fields}
    return out


def spec() -> dict[str, dict[str, dict[str, Any]]]:
    """The four endpoints' models, as :func:`endpoint_models` reads them."""
    return {endpoint: endpoint_models(endpoint) for endpoint in ENDPOINTS}


@cache
def table() -> dict[str, dict[str, dict[str, Any]]]:
    """The emulator's rules: endpoint -> model -> fields, read from the SDK's types where the
    SDK is installed, else from the snapshot of them the package ships (``runway_api.json``,
    read here without the client's catalogue code)."""
    if available():
        return {e: {m: v["fields"] for m, v in models.items()} for e, models in spec().items()}
    text = resources.files("prefect_runway.models").joinpath("runway_api.json").read_text("utf-8")
    data = json.loads(text)["endpoints"]
    return {e: {m: v["fields"] for m, v in models.items()} for e, models in data.items()}


def check(fields: Mapping[str, Any], body: Any, path: str = "") -> None:
    """Check a body (or a nested object) against fields as :func:`fields_of` gives them.

    Raises:
        FieldError: naming the first bad field (``promptImage[1].position``).
    """
    if not isinstance(body, Mapping):
        raise FieldError(path or None, "must be an object")
    prefix = f"{path}." if path else ""
    for key in body:
        if key not in fields:
            raise FieldError(prefix + str(key), "is not a known field")
    for key, rule in fields.items():
        if body.get(key) is None:
            if rule.get("required"):
                raise FieldError(prefix + key, "is required")
            continue
        _check_one(rule, body[key], prefix + key)


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "any": (object,),
}


def _check_one(rule: Mapping[str, Any], value: Any, path: str) -> None:
    if "any_of" in rule:
        errors: list[tuple[Mapping[str, Any], FieldError]] = []
        for member in rule["any_of"]:
            try:
                _check_one(member, value, path)
                return
            except FieldError as problem:
                errors.append((member, problem))
        # the member of the value's own kind explains it best
        fitting = [e for m, e in errors if ("list" in m) == isinstance(value, list)]
        raise (fitting or [errors[0][1]])[0]
    if "enum" in rule:
        if isinstance(value, bool) or value not in rule["enum"] or type(value) is not type(
            next(v for v in rule["enum"] if v == value)
        ):
            raise FieldError(path, "must be one of " + ", ".join(map(str, rule["enum"])))
        return
    if "list" in rule:
        if not isinstance(value, list):
            raise FieldError(path, "must be an array")
        for index, item in enumerate(value):
            _check_one(rule["list"], item, f"{path}[{index}]")
        return
    if "object" in rule:
        check(rule["object"], value, path)
        return
    kind = rule.get("type", "any")
    if (isinstance(value, bool) and kind not in ("boolean", "any")) or not isinstance(
        value, _TYPES[kind]
    ):
        raise FieldError(path, f"must be of type {kind}")


def main() -> None:
    """Print the installed SDK's rules as JSON (to compare with, or refresh, the catalogue)."""
    json.dump({"sdk": f"runwayml {sdk_version()}", "endpoints": spec()}, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
