"""A storyboard's shot: a still, then that still animated; or, with no still, a video from its
prompt alone (text-to-video) or from the previous shot's last frame (continuity)."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from prefect_runway.errors import InvalidRequest
from prefect_runway.models.base import StrictModel, check_name
from prefect_runway.models.requests import (
    PLACEHOLDER_IMAGE,
    PLACEHOLDER_VIDEO,
    FinishRequest,
    ImageRequest,
    ReferenceImage,
    TextToVideoRequest,
    VideoModel,
    VideoRequest,
    duration_seconds,
    model_durations,
)

__all__ = ["Shot"]


def _renamed(error: InvalidRequest, field: str) -> InvalidRequest:
    """The same error, naming ``field`` (a shot's field) instead of the request's field."""
    if error.field != field:
        text = str(error)
        prefix = f"{error.field}: "
        error.field = field
        error.args = (field + ": " + (text[len(prefix):] if text.startswith(prefix) else text),)
    return error


class Shot(StrictModel):
    """One shot of a storyboard: a gen4_image still, then that still animated; with no
    ``still_prompt``, a video from ``motion_prompt`` alone (text-to-video), or, in a
    storyboard with continuity, from the previous shot's last frame.

    Shots are checked here for what holds everywhere (prompt length, seed range, duration,
    ratio form, reference image tags); the ``storyboard`` flow then checks every shot
    against its provider before it submits anything.

    Example:
        ```python
        from prefect_runway import Shot

        shot = Shot(
            name="harbour",
            still_prompt="a harbour at dawn, in the style of @style",
            reference_images=[{"uri": "https://example.com/style.png", "tag": "style"}],
            motion_prompt="slow pan right, gulls overhead",
            ratio="1280:720",
            duration=5,
            seed=42,
            video_credentials="runway-credentials/nightly",
        )
        ```
    """

    name: str | None = Field(
        default=None,
        description="The shot's name, used in the summary and storage keys; default shot-NNN.",
    )
    still_prompt: str | None = Field(
        default=None,
        description="The still's prompt; refer to reference images as @tag. Empty: the shot "
                    "has no still, and its video is made from motion_prompt alone "
                    "(text-to-video: a text_to_video video_model such as gen4.5 or veo3.1 on "
                    "Runway's API), or, with the storyboard's continuity, from the previous "
                    "shot's last frame.",
    )
    reference_images: list[ReferenceImage] = Field(
        default_factory=list,
        description="Tagged reference images for the still (Segmind needs at least one).",
    )
    motion_prompt: str = Field(default="", description="The animation's prompt (a shot with no "
                               "still: the whole video's prompt).")
    ratio: str | None = Field(
        default=None, description="The still's ratio, e.g. '1280:720'; provider default if empty."
    )
    video_ratio: str | None = Field(
        default=None, description="The video's ratio; default: the still's ratio."
    )
    duration: int = Field(
        default=5,
        description="The video's length in seconds: 5 or 10; 2-10 for gen4_turbo/gen4.5 on Runway.",
    )
    seed: int | None = Field(default=None, description="Seed for both steps; random if empty.")
    video_model: VideoModel = Field(
        default="gen4_turbo",
        description=(
            "The video model: gen4_turbo, gen4.5 (Runway only) or gen3a_turbo (Segmind and "
            "AIMLAPI; retired on Runway's own API)."
        ),
    )
    still_options: dict[str, Any] = Field(
        default_factory=dict,
        description="The still model's own options, e.g. {'output_format': 'png'} (Runway's "
                    "API; a JSON object in a CSV cell).",
    )
    video_options: dict[str, Any] = Field(
        default_factory=dict,
        description="The video model's own options, e.g. {'audio': true} for veo3.1 "
                    "(Runway's API; a JSON object in a CSV cell).",
    )
    credentials: str | None = Field(
        default=None,
        description="A saved credentials block for both steps ('segmind-credentials/nightly').",
    )
    image_credentials: str | None = Field(
        default=None, description="A saved credentials block for the still only."
    )
    video_credentials: str | None = Field(
        default=None, description="A saved credentials block for the video only."
    )
    image_fallback: list[str] | None = Field(
        default=None,
        description="Saved credentials blocks the still falls back to, in order, when its "
                    "provider provably does not take the job (see prefect_runway.flows.fallback).",
    )
    video_fallback: list[str] | None = Field(
        default=None,
        description="Saved credentials blocks the video falls back to, in order.",
    )

    @field_validator("image_fallback", "video_fallback", mode="before")
    @classmethod
    def _fallback(cls, v: Any) -> Any:
        # A CSV cell (or a YAML scalar): block names separated by "|" or ",".
        if isinstance(v, str):
            return [part.strip() for part in v.replace(",", "|").split("|") if part.strip()]
        return v

    @field_validator("still_options", "video_options", "finish_options", mode="before")
    @classmethod
    def _options(cls, v: Any, info: Any) -> Any:
        # A CSV cell (or a YAML scalar): a JSON object of the model's options.
        if isinstance(v, str):
            try:
                v = json.loads(v) if v.strip() else {}
            except (json.JSONDecodeError, RecursionError):
                v = None
        if not isinstance(v, dict):
            raise InvalidRequest(info.field_name, "is not a mapping of the model's options",
                                 allowed="a JSON object, e.g. {\"audio\": true}")
        return v

    @field_validator("still_prompt")
    @classmethod
    def _still_prompt(cls, v: str | None) -> str | None:
        return v if v is not None and v.strip() else None  # empty: no still

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None:
            v = v.strip()
            if not v:
                raise InvalidRequest("name", "must not be empty when given")
        return check_name(v)

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, v: Any, info: Any) -> Any:
        # A typed error naming the allowed lengths, not pydantic's "valid integer"; the
        # model's own lengths are checked with the video step (video_request).
        allowed = model_durations(info.data.get("video_model", "gen4_turbo"))
        return duration_seconds(v, allowed, check_allowed=False)

    @field_validator("credentials", "image_credentials", "video_credentials")
    @classmethod
    def _block_name(cls, v: str | None, info: Any) -> str | None:
        if v is not None:
            v = v.strip()
            if v.count("/") != 1 or v.startswith("/") or v.endswith("/"):
                raise InvalidRequest(
                    info.field_name, f"{v!r} is not a saved block's name",
                    allowed="'block-type/name', e.g. 'segmind-credentials/nightly'",
                )
        return v or None

    @model_validator(mode="after")
    def _both_steps(self) -> Shot:
        # A shot with no still is checked as it is planned: text-to-video (text_request), or
        # from the previous shot's last frame, which only the storyboard knows.
        if self.still_prompt is not None:
            self.still_request()
            self.video_request(PLACEHOLDER_IMAGE)
        return self

    def shot_field(self, step: Literal["still", "video"], field: str) -> str:
        """What a request's ``field`` is called in a shot, for the still or the video step."""
        if field.startswith("options."):  # a model option: still_options.x, video_options.x
            return f"{step}_{field}"
        if step == "still":
            return {"prompt": "still_prompt"}.get(field, field)
        return {
            "prompt": "motion_prompt",
            "model": "video_model",
            "ratio": "video_ratio" if self.video_ratio else "ratio",
        }.get(field, field)

    def still_request(self) -> ImageRequest:
        """The shot's still as an :class:`ImageRequest`."""
        try:
            return ImageRequest(
                prompt=self.still_prompt or "", reference_images=list(self.reference_images),
                ratio=self.ratio, seed=self.seed, options=dict(self.still_options),
            )
        except InvalidRequest as e:
            raise _renamed(e, self.shot_field("still", e.field)) from None

    def video_request(self, image: str, image_sha256: str | None = None) -> VideoRequest:
        """The shot's animation of ``image`` as a :class:`VideoRequest`."""
        try:
            return VideoRequest(
                image=image, image_sha256=image_sha256, prompt=self.motion_prompt,
                model=self.video_model, ratio=self.video_ratio or self.ratio,
                duration=self.duration, seed=self.seed, options=dict(self.video_options),
            )
        except InvalidRequest as e:
            raise _renamed(e, self.shot_field("video", e.field)) from None

    def text_request(self) -> TextToVideoRequest:
        """The shot's video from its ``motion_prompt`` alone, as a :class:`TextToVideoRequest`
        (a shot with no still, and not continued from the previous shot).

        Raises:
            InvalidRequest: naming the shot's field; a video model that makes no video from
                text names ``still_prompt`` (the shot needs one, or a text_to_video model).
        """
        try:
            return TextToVideoRequest(
                prompt=self.motion_prompt, model=self.video_model,
                ratio=self.video_ratio or self.ratio, duration=self.duration, seed=self.seed,
                options=dict(self.video_options),
            )
        except InvalidRequest as e:
            if e.field != "model":
                raise _renamed(e, self.shot_field("video", e.field)) from None
            raise InvalidRequest(
                "still_prompt", f"is empty, so the shot is text-to-video, and {self.video_model} "
                "makes no video from text", model=self.video_model,
                allowed=f"a still prompt, or a text_to_video video_model: {', '.join(e.allowed)}"
                if isinstance(e.allowed, list) else "a still prompt",
            ) from None

    finish_model: str | None = Field(
        default=None,
        description="A finishing step after the video (Runway's API): "
                    "magnific_video_upscaler_creative (an upscale) or enhance_frame_rate; "
                    "empty for none. Made on the shot's video credentials.",
    )
    finish_options: dict[str, Any] = Field(
        default_factory=dict,
        description="The finishing model's options, e.g. {\"resolution\": \"4k\"} or "
                    "{\"target_framerate\": \"60\"}.",
    )

    @field_validator("finish_model", mode="before")
    @classmethod
    def _finish_model(cls, v: Any) -> Any:
        return v.strip() or None if isinstance(v, str) else v  # an empty CSV cell: none

    @model_validator(mode="after")
    def _finish_step(self) -> Shot:
        if self.finish_model is not None:
            self.finish_request(PLACEHOLDER_VIDEO)
        return self

    def finish_request(self, video: str, video_sha256: str | None = None,
                       duration: float | None = None) -> FinishRequest:
        """The shot's finishing step on ``video`` as a :class:`FinishRequest`."""
        try:
            return FinishRequest(model=self.finish_model or "", video=video,
                                 video_sha256=video_sha256, options=dict(self.finish_options),
                                 duration=duration)
        except InvalidRequest as e:
            raise _renamed(e, "finish_model" if e.field == "model" else f"finish_{e.field}"
                           ) from None
