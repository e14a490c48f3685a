"""Runway's API hub requests built from the catalogue's rules alone: ``text_to_video`` (a
prompt, no image), ``video_upscale`` (a made video), each request's endpoint, and
``contentModeration``."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any
from urllib.parse import urlsplit

from prefect_runway.errors import InvalidRequest
from prefect_runway.models import (
    FinishRequest,
    Request,
    TextToVideoRequest,
    catalogue,
    runway_api,
    sniff_media_type,
)
from prefect_runway.models.catalogue import ModelSpec, map_ratio
from prefect_runway.providers.base import PreparedRequest
from prefect_runway.providers.wire import decode_data_uri, is_loopback_host, redact_url

__all__ = ["add_content_moderation", "endpoint_of", "finish_body", "priced_on",
           "text_to_video_body"]

#: What a source video of the finishing step may be, in errors.
VIDEO_ALLOWED = "an https URL, a data URI of an MP4, or a runway:// upload URI (with video_sha256)"


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


def finish_body(
    request: FinishRequest, max_data_uri: int
) -> tuple[ModelSpec, dict[str, Any], dict[str, str]]:
    """The model's video_upscale rules, the body (``videoUri`` and the model's options) and
    the source video's identity for the fingerprint (its sha256 where known).

    Raises:
        InvalidRequest: the video is not one Runway can read, or the body breaks the rules.
    """
    rules = runway_api.api_model("video_upscale", request.model)
    spec = catalogue.hub_spec(rules)
    uri, identity = request.video, request.video
    if uri.startswith("data:"):
        media_type, data = decode_data_uri(uri, "video")
        if sniff_media_type(data) != "video/mp4":
            raise InvalidRequest("video", f"is not an MP4 video (got {media_type})",
                                 allowed=VIDEO_ALLOWED)
        if len(uri) > max_data_uri:
            raise InvalidRequest("video", f"is {len(uri)} characters as a data URI",
                                 allowed=f"at most {max_data_uri}; larger: an upload or a URL",
                                 provider="runway")
        identity = "sha256:" + hashlib.sha256(data).hexdigest()
    elif uri.startswith("runway://"):
        if request.video_sha256 is None:
            raise InvalidRequest("video_sha256", "is required with a runway:// upload URI",
                                 allowed="the sha256 of the uploaded video's bytes")
    else:
        parts = urlsplit(uri)
        if parts.scheme != "https" and not (parts.scheme == "http"
                                            and is_loopback_host(parts.hostname)):
            raise InvalidRequest("video", f"{redact_url(uri)!r} is not a URL Runway can read",
                                 allowed=VIDEO_ALLOWED, provider="runway")
    if request.video_sha256:
        identity = f"sha256:{request.video_sha256}"
    body: dict[str, Any] = {"model": spec.wire_name, "videoUri": uri}
    body.update(runway_api.check_options("video", request.model, request.options,
                                         endpoint="video_upscale"))
    runway_api.check_body("video_upscale", body)
    return spec, body, {uri: identity}


def priced_on(prepared: PreparedRequest, seconds: float | None) -> PreparedRequest:
    """A finishing step with the source video's length in its summary (``duration``, not
    sent): what a per-second price counts."""
    if seconds is None:
        return prepared
    return dataclasses.replace(prepared, summary={**prepared.summary, "duration": seconds})
