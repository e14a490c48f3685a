"""The request models: a still (:class:`ImageRequest`) and a video (:class:`VideoRequest`),
checked for what holds on every provider; each provider's ``prepare`` checks the rest."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from prefect_runway.errors import InvalidRequest
from prefect_runway.models import catalogue, runway_api
from prefect_runway.models.base import StrictModel, bytes_to_data_uri, sniff_media_type, utf16_len
from prefect_runway.models.catalogue import (
    IMAGE_MODELS,
    REQUEST_IMAGE_MODELS,
    REQUEST_VIDEO_MODELS,
    SEED_MAX,
    VIDEO_MODELS,
)

__all__ = [
    "DURATIONS", "IMAGE_MODELS", "MAX_PROMPT_UTF16", "PLACEHOLDER_IMAGE", "PLACEHOLDER_VIDEO",
    "SEED_MAX", "VIDEO_MODELS", "ContentModeration", "FinishRequest", "ImageRequest", "Kind", "ReferenceImage", "Request",
    "TextToVideoRequest", "VideoModel", "VideoRequest", "duration_seconds", "model_durations",
]

if TYPE_CHECKING:
    ImageModel = str
    VideoModel = str
else:  # the catalogue's models (Runway's API hub included), as a closed choice
    ImageModel = Literal[REQUEST_IMAGE_MODELS]
    VideoModel = Literal[REQUEST_VIDEO_MODELS]
Kind = Literal["image", "video"]
PublicFigureThreshold = Literal["auto", "low"]

#: The lengths every provider takes (5 or 10 s). Runway's own API takes more for some models;
#: :func:`prefect_runway.models.catalogue.durations` has the lengths by model and provider.
DURATIONS: tuple[int, ...] = (5, 10)
MAX_PROMPT_UTF16 = 1000

_TAG_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{2,15}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def _coerce_image(value: Any, field: str) -> Any:
    """Accept a URL, a data URI, a local path, or raw bytes, and return a string."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        if sniff_media_type(data) not in ("image/png", "image/jpeg", "image/webp"):
            raise InvalidRequest(
                field, "bytes are not a PNG, JPEG or WebP image", allowed="PNG, JPEG, WebP"
            )
        return bytes_to_data_uri(data)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        if not value.strip():
            raise InvalidRequest(field, "must not be empty")
        return value
    return value


def model_durations(model: str) -> tuple[int, ...]:
    """The lengths ``model`` takes on any provider that serves it (the catalogue's union).

    Each provider's ``prepare`` then checks its own lengths (Segmind and AIMLAPI: 5 or 10).
    Empty for a model whose range Runway does not publish (any whole number is sent on).
    """
    if catalogue.open_durations(model):
        return ()
    return catalogue.durations(model) or DURATIONS


class ReferenceImage(StrictModel):
    """A reference image for gen4_image, tagged so the prompt can refer to it as ``@tag``."""

    uri: str = Field(description="An https URL, a data URI, or a local file path.")
    tag: str = Field(
        description="3-16 characters, a letter first, then letters, digits or underscores."
    )
    sha256: str | None = Field(
        default=None,
        description=(
            "sha256 of the image's bytes, when known (required with a runway:// upload URI). "
            "The request fingerprint then uses it instead of the URI."
        ),
    )

    @field_validator("uri", mode="before")
    @classmethod
    def _uri(cls, v: Any) -> Any:
        return _coerce_image(v, "reference_images.uri")

    @field_validator("tag")
    @classmethod
    def _tag(cls, v: str) -> str:
        if not _TAG_RE.fullmatch(v):
            raise InvalidRequest(
                "reference_images.tag",
                f"{v!r} is not a valid tag",
                allowed="3-16 characters: a letter, then letters, digits or '_'",
            )
        return v

    @field_validator("sha256")
    @classmethod
    def _sha256(cls, v: str | None) -> str | None:
        return _check_sha256(v, "reference_images.sha256")


def _check_sha256(v: str | None, field: str) -> str | None:
    if v is None:
        return v
    v = v.strip().lower().removeprefix("sha256:")
    if not _SHA256_RE.fullmatch(v):
        raise InvalidRequest(field, "is not a sha256 hex digest", allowed="64 hex digits")
    return v


class ContentModeration(StrictModel):
    """Settings of the provider's content moderation (Runway's ``contentModeration``).

    Only Runway's API has such a field (for gen4_image, gen4_image_turbo, gen4_turbo and
    gen4.5); a request that sets it for another provider or model is refused.

    Example:
        ```python
        VideoRequest(image=..., content_moderation={"public_figure_threshold": "low"})
        ```
    """

    public_figure_threshold: PublicFigureThreshold = Field(
        description=(
            "'low' makes moderation less strict about recognizable public figures; 'auto' is "
            "the provider's default."
        ),
    )


class _Request(StrictModel):
    prompt: str = Field(description="What to generate, at most 1000 UTF-16 code units.")
    ratio: str | None = Field(
        default=None,
        description=(
            "Output ratio, e.g. '1280:720' or '16:9'; mapped to the provider's equivalent "
            "where one exists. None uses the provider's default."
        ),
    )
    seed: int | None = Field(
        default=None,
        description="Seed for reproducible output; None lets the provider choose.",
    )
    content_moderation: ContentModeration | None = Field(
        default=None,
        description=(
            "Content moderation settings, e.g. {'public_figure_threshold': 'low'} "
            "(Runway only). None sends nothing."
        ),
    )

    options: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "The model's own options by name, e.g. {'audio': True, 'negative_prompt': 'text'} "
            "for veo3.1 or {'output_format': 'prores'} for gen4.5 (Runway's API; the catalogue "
            "lists each model's). Checked against the model's rules; part of the request."
        ),
    )

    @model_validator(mode="after")
    def _options(self) -> _Request:
        runway_api.check_options(self.kind, self.model, self.options)  # type: ignore[attr-defined]
        return self

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: str) -> str:
        n = utf16_len(v)
        if n > MAX_PROMPT_UTF16:
            raise InvalidRequest(
                "prompt", f"is {n} UTF-16 code units long", allowed=f"at most {MAX_PROMPT_UTF16}"
            )
        return v

    @field_validator("content_moderation", mode="before")
    @classmethod
    def _content_moderation(cls, v: Any) -> Any:
        if isinstance(v, dict):
            try:
                return ContentModeration(**v)
            except InvalidRequest as e:
                raise InvalidRequest(
                    f"content_moderation.{e.field}", str(e).split(": ", 1)[-1].split("; allowed: ")[0],
                    allowed="{'public_figure_threshold': 'auto' | 'low'}",
                ) from None
        if v is not None and not isinstance(v, ContentModeration):
            raise InvalidRequest(
                "content_moderation", f"{v!r} is not a mapping",
                allowed="{'public_figure_threshold': 'auto' | 'low'}",
            )
        return v

    @field_validator("seed", mode="before")
    @classmethod
    def _seed_not_bool(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise InvalidRequest("seed", f"{v!r} is not a whole number", allowed=f"0-{SEED_MAX}")
        return v

    @field_validator("seed")
    @classmethod
    def _seed(cls, v: int | None) -> int | None:
        if v is not None and not (0 <= v <= SEED_MAX):
            raise InvalidRequest("seed", f"{v} is out of range", allowed=f"0-{SEED_MAX}")
        return v

    @field_validator("ratio")
    @classmethod
    def _ratio(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.strip()
        if not re.fullmatch(r"[1-9][0-9]{0,4}:[1-9][0-9]{0,4}", v):
            raise InvalidRequest("ratio", f"{v!r} is not of the form W:H", allowed="e.g. '1280:720', '16:9'")
        return v


class _PromptRequired(_Request):
    """A request that needs a prompt (a still; a video from text alone): not an empty one."""

    @field_validator("prompt")
    @classmethod
    def _prompt_nonempty(cls, v: str) -> str:
        if not v.strip():
            raise InvalidRequest("prompt", "must not be empty")
        return v


class ImageRequest(_PromptRequired):
    """A gen4_image (or gen4_image_turbo) still: a prompt, tagged reference images, ratio, seed.

    gen4_image_turbo is served by Runway's API only and needs one to three reference images.

    Example:
        ```python
        from prefect_runway import ImageRequest

        request = ImageRequest(
            prompt="a lighthouse at dusk, in the style of @style",
            reference_images=[{"uri": "https://example.com/style.png", "tag": "style"}],
            ratio="1280:720",
            seed=42,
        )
        ```
    """

    model: ImageModel = Field(default="gen4_image", description="The image model.")
    reference_images: list[ReferenceImage] = Field(
        default_factory=list,
        description="Tagged reference images (Runway allows up to 3; Segmind needs at least 1).",
    )

    @property
    def kind(self) -> Kind:
        return "image"

    @model_validator(mode="after")
    def _unique_tags(self) -> ImageRequest:
        tags = [r.tag for r in self.reference_images]
        if len(set(tags)) != len(tags):
            raise InvalidRequest("reference_images.tag", f"tags must be unique, got {tags}")
        return self


class VideoRequest(_Request):
    """An image-to-video animation with gen4_turbo, gen4.5 or gen3a_turbo.

    Example:
        ```python
        from prefect_runway import VideoRequest

        request = VideoRequest(
            model="gen4_turbo",
            image="https://example.com/still.png",
            prompt="slow dolly in, waves rolling",
            ratio="1280:720",
            duration=5,
        )
        ```
    """

    model: VideoModel = Field(default="gen4_turbo", description="The video model.")
    prompt: str = Field(default="", description="Motion prompt, at most 1000 UTF-16 code units.")
    image: str = Field(
        description="The first frame: an https URL, a data URI, a local path, or raw bytes."
    )
    last_image: str | None = Field(
        default=None,
        description="Optional last frame (gen3a_turbo on AIMLAPI and Runway).",
    )
    duration: int = Field(
        default=5,
        description=(
            "Length in seconds: 5 or 10 everywhere; Runway's API also takes 2-10 for gen4_turbo "
            "and gen4.5."
        ),
    )
    image_sha256: str | None = Field(
        default=None,
        description=(
            "sha256 of the first frame's bytes, when known (required with a runway:// upload "
            "URI). The request fingerprint then uses it instead of the URL, so a re-signed URL "
            "or a new upload of the same image is the same request."
        ),
    )

    @property
    def kind(self) -> Kind:
        return "video"

    @field_validator("image", mode="before")
    @classmethod
    def _image(cls, v: Any) -> Any:
        return _coerce_image(v, "image")

    @field_validator("last_image", mode="before")
    @classmethod
    def _last_image(cls, v: Any) -> Any:
        return _coerce_image(v, "last_image")

    @field_validator("image_sha256")
    @classmethod
    def _image_sha256(cls, v: str | None) -> str | None:
        return _check_sha256(v, "image_sha256")

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, v: Any, info: Any) -> int:
        allowed = model_durations(info.data.get("model", "gen4_turbo"))
        if not allowed:
            return duration_seconds(v, "a whole number of seconds >= 1", minimum=1)
        return duration_seconds(v, allowed)


def duration_seconds(
    v: Any, allowed: Any, *, check_allowed: bool = True, minimum: int | None = None
) -> int:
    """A duration in whole seconds, or a typed error naming the allowed lengths (``minimum``:
    any whole number from there on is allowed)."""
    if isinstance(v, bool):
        raise InvalidRequest("duration", f"{v!r} is not a number", allowed=allowed)
    try:
        d = int(v)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an infinite float
        raise InvalidRequest("duration", f"{v!r} is not a number", allowed=allowed) from None
    if minimum is not None:
        refused = d < minimum
    else:
        refused = check_allowed and d not in allowed
    if refused or (isinstance(v, float) and v != d):
        raise InvalidRequest("duration", f"{v!r} is not allowed", allowed=allowed)
    return d



class TextToVideoRequest(_PromptRequired):
    """A video from a prompt alone, no still (Runway's ``text_to_video``: gen4.5, veo3.1, ...).

    Example:
        ```python
        from prefect_runway import TextToVideoRequest

        request = TextToVideoRequest(model="gen4.5", prompt="a harbour at dawn, gulls",
                                     ratio="1280:720", duration=5)
        ```
    """

    model: str = Field(default="gen4.5", description="A text_to_video model of Runway's API.")
    duration: int = Field(default=5, description="Length in seconds, as the model takes.")

    @property
    def kind(self) -> Kind:
        return "video"

    @field_validator("model")
    @classmethod
    def _model(cls, v: str) -> str:
        runway_api.api_model("text_to_video", v)  # names the text_to_video models
        return v

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, v: Any, info: Any) -> int:
        model = info.data.get("model")
        allowed = runway_api.RUNWAY_API["text_to_video"][model].durations if model else ()
        if not allowed:
            return duration_seconds(v, "a whole number of seconds >= 1", minimum=1)
        return duration_seconds(v, allowed)

    @model_validator(mode="after")
    def _options(self) -> TextToVideoRequest:
        """The ratio and the options' names against the model's text_to_video rules (their
        values are checked with the whole body, by the provider)."""
        rules = runway_api.api_model("text_to_video", self.model)
        if self.ratio is not None and rules.ratios and self.ratio not in rules.ratios:
            raise InvalidRequest("ratio", f"{self.ratio!r} is not allowed", allowed=rules.ratios,
                                 model=self.model)
        offered = sorted(runway_api.option_name(w) for w in rules.options)
        for name in self.options:
            if name not in offered:
                raise InvalidRequest(f"options.{name}", "is not one of the model's options",
                                     allowed=offered or "none: the model takes no options",
                                     model=self.model)
        return self


class FinishRequest(StrictModel):
    """A finishing step on a made video (Runway's ``video_upscale``: an upscale with
    ``magnific_video_upscaler_creative``, a new frame rate with ``enhance_frame_rate``).

    Example:
        ```python
        from prefect_runway.models import FinishRequest

        request = FinishRequest(model="magnific_video_upscaler_creative",
                                video="https://example.com/video.mp4",
                                options={"resolution": "4k", "creativity": 20})
        ```
    """

    model: str = Field(description="A video_upscale model of Runway's API.")
    video: str = Field(description="The source video: an https URL, a data URI or a "
                       "runway:// upload URI.")
    video_sha256: str | None = Field(
        default=None, description="sha256 of the source video's bytes (required with a "
        "runway:// URI); the fingerprint then uses it instead of the URI.")
    options: dict[str, Any] = Field(
        default_factory=dict, description="The model's own options by name, e.g. "
        "{'resolution': '4k', 'creativity': 20} or {'target_framerate': '60'}; checked "
        "against the model's rules; part of the request.")
    duration: float | None = Field(
        default=None, description="The source video's length in seconds, where known: what "
        "a per-second price is counted on (not sent).")

    @property
    def kind(self) -> Kind:
        return "video"

    @field_validator("video_sha256")
    @classmethod
    def _video_sha256(cls, v: str | None) -> str | None:
        return _check_sha256(v, "video_sha256")

    @model_validator(mode="after")
    def _rules(self) -> FinishRequest:
        """The model and its options (names, values, the required ones) by the catalogue."""
        rules = runway_api.api_model("video_upscale", self.model)
        runway_api.check_options("video", self.model, self.options, endpoint="video_upscale")
        for wire in rules.options:
            name = runway_api.option_name(wire)
            if rules.fields[wire].get("required") and self.options.get(name) is None:
                raise InvalidRequest(f"options.{name}", "is required",
                                     allowed=list(rules.values(wire)) or None, model=self.model)
        return self


Request = ImageRequest | VideoRequest | TextToVideoRequest

#: The source video used to check a finishing step before its video exists.
PLACEHOLDER_VIDEO = "https://example.invalid/video.mp4"

#: The first frame used to check a shot's video step before its still exists.
PLACEHOLDER_IMAGE = "https://example.invalid/still.png"
