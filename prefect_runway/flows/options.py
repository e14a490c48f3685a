"""The flows' grouped parameters (the still, the video, its finishing, the run, the review),
as the Prefect UI's run form shows them; each group also takes its old flat keywords."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from prefect_runway.blocks.credentials import ProviderCredentials
from prefect_runway.errors import InvalidRequest
from prefect_runway.flows.review_form import DEFAULT_REVIEW_TIMEOUT, plain_optional
from prefect_runway.models import ReferenceImage
from prefect_runway.storage import STORYBOARD_KEY_TEMPLATE
from prefect_runway.tasks.limits import DEFAULT_PROVIDER_LIMIT

__all__ = ["UNSET", "FinishOptions", "Group", "ImageToVideoRun", "Providers", "ReviewOptions",
           "StillOptions", "StoryboardReview", "StoryboardRun", "VideoOptions", "accepting_flat",
           "flatten", "fold", "without_unset"]

#: Chains in flight at once in one flow run. Runway runs only a few jobs per key at once
#: (more wait THROTTLED), and Segmind and AIMLAPI queue the rest: more buys little.
DEFAULT_CONCURRENCY = 4

_OPTIONAL: dict[str, Any] = {"json_schema_extra": plain_optional}


class Group(BaseModel):
    """A group of a flow's parameters. ``FLAT``: field -> the flat keyword it replaces."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    FLAT: ClassVar[dict[str, str]] = {}


class Providers(Group):
    """Where a step goes: its credentials and its fallback providers."""

    credentials: ProviderCredentials | str | None = Field(
        default=None, description="Credentials for this step (default: the flow's "
        "credentials): a block or a saved block's name ('segmind-credentials/nightly').",
        **_OPTIONAL)
    fallback: list[ProviderCredentials | str] | None = Field(
        default=None, description="Where the step goes, in order, when its provider provably "
        "does not take the job: blocks or saved blocks' names.", **_OPTIONAL)


class StillOptions(Providers):
    """The still: its reference images and ratio, and where it is made."""

    FLAT: ClassVar[dict[str, str]] = {
        "reference_images": "reference_images", "ratio": "still_ratio",
        "options": "still_options", "credentials": "image_credentials",
        "fallback": "image_fallback"}
    reference_images: list[ReferenceImage | dict[str, Any]] = Field(
        default_factory=list, description="Tagged reference images {uri, tag}, referred to "
        "as @tag in the still's prompt.")
    ratio: str | None = Field(default=None, description="The still's ratio (e.g. 1920:1080; "
                              "default: the provider's).", **_OPTIONAL)
    options: dict[str, Any] = Field(default_factory=dict, description="The still model's "
                                    "own options (Runway's API), e.g. {'output_format': 'png'}.")


class FinishOptions(Group):
    """The finishing step after the video (Runway's ``video_upscale``): its model, its
    options, and where it is made."""

    model: str = Field(description="magnific_video_upscaler_creative (an upscale to 720p, "
                       "1k, 2k or 4k) or enhance_frame_rate (a new frame rate).")
    options: dict[str, Any] = Field(
        default_factory=dict, description="The model's own options: for the upscale "
        "resolution (720p, 1k, 2k, 4k), creativity, sharpen and smart_grain (0-100), flavor "
        "(vivid, natural), fps_boost; for enhance_frame_rate target_framerate (required: "
        "'24', '25', '30', '48', '50', '60', '120', '23_98', '29_97', '59_94').")
    credentials: ProviderCredentials | str | None = Field(
        default=None, description="Runway's credentials for this step (default: the "
        "video's, else the flow's): a block or a saved block's name.", **_OPTIONAL)


class VideoOptions(Providers):
    """The video: its model, ratio and length, where it is made, and its finishing."""

    FLAT: ClassVar[dict[str, str]] = {
        "model": "video_model", "ratio": "video_ratio", "duration": "duration",
        "options": "video_options", "credentials": "video_credentials", "fallback": "video_fallback"}
    model: str = Field(default="gen4_turbo", description="The video model: gen4_turbo or "
                       "gen3a_turbo (or another the provider serves).")
    ratio: str | None = Field(default=None, description="The video's ratio (default: the "
                              "still's, mapped to the video model's).", **_OPTIONAL)
    duration: int = Field(default=5, description="Seconds: 5 or 10.")
    options: dict[str, Any] = Field(default_factory=dict, description="The video model's "
                                    "own options (Runway's API), e.g. {'audio': true} for veo3.1.")
    finish: FinishOptions | None = Field(
        default=None, description="A finishing step after the video (Runway's API): an "
        "upscale or a new frame rate, e.g. {'model': 'magnific_video_upscaler_creative', "
        "'options': {'resolution': '4k'}}; null for none.", **_OPTIONAL)


class StoryboardProviders(Providers):
    """Where every shot's step goes unless the shot names its own."""


class StoryboardStill(StoryboardProviders):
    FLAT: ClassVar[dict[str, str]] = {"credentials": "image_credentials",
                                      "fallback": "image_fallback"}


class StoryboardVideo(StoryboardProviders):
    FLAT: ClassVar[dict[str, str]] = {"credentials": "video_credentials",
                                      "fallback": "video_fallback"}


class _RunOptions(Group):
    """How the run's jobs run: storage keys, deadlines, caching, previews, checks."""

    key_template: str | None = Field(default=None, description="Storage key template, e.g. "
                                     "'{flow_run}/{name}-{seed}.{ext}'.", **_OPTIONAL)
    timeout: float | None = Field(default=None, description="Wait deadline per job, in "
                                  "seconds (default: the block's).", **_OPTIONAL)
    force: bool = Field(default=False, description="Submit new jobs even where the same "
                        "requests are cached.")
    preview: str | None = Field(default="gif", description="Each video's preview stored "
                                "beside it: gif, png (contact sheet), or null for none.")
    progress: bool = Field(default=True, description="Keep a progress artifact up to date.")
    check_balance: bool = Field(default=True, description="Read each provider's balance "
                                "first and refuse a plan it cannot pay.")
    fallback_on: list[str] | str | None = Field(
        default=None, description="The reasons that allow a fallback (default: all): "
        "unavailable, rate_limited, daily_quota, insufficient_credits, model_unsupported.",
        **_OPTIONAL)


class ImageToVideoRun(_RunOptions):
    __doc__ = _RunOptions.__doc__
    FLAT: ClassVar[dict[str, str]] = {name: name for name in (
        "key_template", "timeout", "force", "preview", "progress", "check_balance",
        "fallback_on", "upload", "queue_timeout", "retry_unsafe_output", "resubmit_internal")}
    upload: bool = Field(default=False, description="Send local images as uploads (Runway: "
                         "ephemeral runway:// uploads) even when they fit a data URI.")
    queue_timeout: float | None = Field(
        default=None, description="How long a job may sit THROTTLED, in seconds; not counted "
        "against timeout (default: the block's).", **_OPTIONAL)
    retry_unsafe_output: int = Field(default=0, description="How many times an output "
                                     "rejected by moderation is retried with a new seed.")
    resubmit_internal: bool = Field(default=True, description="Resubmit a job that failed "
                                    "internally once (not when it was charged).")


class StoryboardRun(_RunOptions):
    __doc__ = _RunOptions.__doc__
    FLAT: ClassVar[dict[str, str]] = {name: name for name in (
        "key_template", "timeout", "force", "preview", "progress", "check_balance",
        "fallback_on", "concurrency", "provider_limit", "dry_run", "continuity")}
    key_template: str | None = Field(default=STORYBOARD_KEY_TEMPLATE, description="Storage "
                                     "key template; {name} is the shot's name.")
    concurrency: int = Field(default=DEFAULT_CONCURRENCY, description="Shots at once in "
                             "this flow run.")
    provider_limit: str | None = Field(
        default=DEFAULT_PROVIDER_LIMIT, description="The Prefect global concurrency limit "
        "each job holds a slot of, {provider} replaced; empty for none.")
    dry_run: bool = Field(default=False, description="Plan and price the run (the cost-plan "
                          "artifact), submit nothing.")
    continuity: bool = Field(default=False, description="Each shot after the first starts "
                             "on the previous shot's last frame (no still of its own); the "
                             "shots run one after another.")


class ReviewOptions(Group):
    """How a person reviews the stills (with review on)."""

    FLAT: ClassVar[dict[str, str]] = {"timeout": "review_timeout", "on_timeout": "on_timeout",
                                      "mode": "review_mode"}
    timeout: float = Field(default=DEFAULT_REVIEW_TIMEOUT, description="How long the review "
                           "waits, in seconds.")
    on_timeout: str = Field(default="fail", description="When nobody answers in time: fail, "
                            "reject or approve.")
    mode: str = Field(default="auto", description="auto, pause (keep the process) or suspend "
                      "(free the worker; deployments only).")


class StoryboardReview(ReviewOptions):
    __doc__ = ReviewOptions.__doc__
    FLAT: ClassVar[dict[str, str]] = {**ReviewOptions.FLAT, "variants": "variants"}
    variants: int = Field(default=1, description="Stills per shot to choose from (1-8).")


def _groups(signature: Mapping[str, Any]) -> dict[str, type[Group]]:
    """The flow's group parameters: name -> its model."""
    return {name: kind for name, kind in signature.items()
            if isinstance(kind, type) and issubclass(kind, Group)}


def fold(parameters: Mapping[str, Any], signature: Mapping[str, Any]) -> dict[str, Any]:
    """``parameters`` with each old flat keyword (``video_model``) moved into its group
    (``video.model``), for a flow whose parameters are ``signature`` (name -> annotation)."""
    out = dict(parameters)
    for group, model in _groups(signature).items():
        given = out.get(group)
        moved = {field: out.pop(flat) for field, flat in model.FLAT.items()
                 if flat in out and flat not in signature}
        if not moved:
            continue
        values = (given.model_dump(exclude_unset=True) if isinstance(given, BaseModel)
                  else dict(given or {}))
        out[group] = {**values, **moved}
    return out


def flatten(parameters: Mapping[str, Any], signature: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters as flat keywords (``video.model`` as ``video_model``): what
    :func:`prefect_runway.flows.parameters.check_parameters` checks, by the names it
    reports."""
    out = dict(parameters)
    for group, model in _groups(signature).items():
        given = out.pop(group, None)
        if isinstance(given, BaseModel):
            given = {k: getattr(given, k) for k in given.model_fields_set}
        if isinstance(given, Mapping):
            for key, value in given.items():
                if key not in model.model_fields:
                    raise InvalidRequest(f"{group}.{key}", "is not an option of "
                                         f"{group}", allowed=sorted(model.model_fields))
                out[model.FLAT.get(str(key), str(key))] = value
        elif given is not None:
            out[group] = given
    return out


class _Unset:
    """An old flat keyword not given (so the group's value stands)."""

    def __repr__(self) -> str:
        return "<not given>"


#: The default of every old flat keyword in a flow's calling signature.
UNSET: Any = _Unset()


def without_unset(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """``parameters`` without the old flat keywords that were not given."""
    return {k: v for k, v in parameters.items() if v is not UNSET}


def accepting_flat(fn: Callable[..., Awaitable[Any]],
                   signature: Mapping[str, Any]) -> Callable[..., Awaitable[Any]]:
    """``fn`` (a flow's function, ``signature``: its annotations) callable with the old flat
    keywords too (each keyword-only, default :data:`UNSET`): Prefect binds a deployment's
    stored parameters to the flow's function before the flow sees them, and those may name
    the old keywords. They are folded into their groups before ``fn`` runs."""
    groups = _groups(signature)
    flat = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=UNSET,
                              annotation=Any)
            for model in groups.values() for name in model.FLAT.values()
            if name not in signature]
    original = inspect.signature(fn, eval_str=True)  # its annotations resolved where it lives

    @functools.wraps(fn)
    async def call(*args: Any, **kwargs: Any) -> Any:
        folded = fold(without_unset(kwargs), signature)
        for group, model in groups.items():
            if isinstance(folded.get(group), Mapping):
                folded[group] = model(**folded[group])
        return await fn(*args, **folded)

    call.__signature__ = original.replace(  # type: ignore[attr-defined]
        parameters=[*original.parameters.values(), *flat])
    return call
