"""Runway's request rules read from the ``runwayml`` SDK's TypedDicts (generated from Runway's
OpenAPI spec): the emulator's own table, and the referee of the client's catalogue."""

from __future__ import annotations

import importlib
import json
import sys
import typing
from functools import cache
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

from typing_extensions import NotRequired, Required, is_typeddict

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


def main() -> None:
    """Print the installed SDK's rules as JSON (to compare with, or refresh, the catalogue)."""
    json.dump({"sdk": f"runwayml {sdk_version()}", "endpoints": spec()}, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
