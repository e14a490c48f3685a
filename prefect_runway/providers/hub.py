"""Runway's API hub requests built from the catalogue's rules alone: ``text_to_video`` (a
prompt, no image), the endpoint each request goes to, and ``contentModeration``."""

from __future__ import annotations

from typing import Any

from prefect_runway.models import Request, TextToVideoRequest, catalogue, runway_api
from prefect_runway.models.catalogue import ModelSpec, map_ratio
from prefect_runway.providers.base import PreparedRequest

__all__ = ["add_content_moderation", "endpoint_of", "text_to_video_body"]


def text_to_video_body(request: TextToVideoRequest, provider: str) -> tuple[ModelSpec, dict[str, Any]]:
    """The model's text_to_video rules and the body: the prompt, ratio, length, seed and the
    model's options (checked whole against the rules by the provider's ``prepare``)."""
    rules = runway_api.api_model("text_to_video", request.model)
    spec = catalogue.hub_spec(rules)
    body: dict[str, Any] = {"model": spec.wire_name, "promptText": request.prompt}
    ratio = map_ratio(request.ratio, spec, provider) if "ratio" in rules.fields else ""
    if ratio:
        body["ratio"] = ratio
    if "duration" in rules.fields:
        body["duration"] = request.duration
    if request.seed is not None:
        body["seed"] = request.seed
    add_content_moderation(body, request)
    wire = {runway_api.option_name(w): w for w in rules.options}
    body.update({wire[k]: v for k, v in request.options.items() if v is not None})
    return spec, body


def endpoint_of(prepared: PreparedRequest) -> str:
    """Runway's endpoint of a prepared request: its model's (a text_to_video one), else its
    kind's."""
    return prepared.spec.endpoint or runway_api.REQUEST_ENDPOINTS[prepared.kind]


def add_content_moderation(body: dict[str, Any], request: Request) -> None:
    """``contentModeration: {publicFigureThreshold}``, only when the request sets it."""
    if request.content_moderation is not None:
        body["contentModeration"] = {
            "publicFigureThreshold": request.content_moderation.public_figure_threshold,
        }
