"""Typed requests and results.

The request models (:class:`ImageRequest`, :class:`VideoRequest`) are provider-neutral and
check what holds for every provider (prompt length, seed range, image source shape), and the
lengths some provider takes for the model (the catalogue's union:
:mod:`prefect_runway.providers.catalogue`). The rules of a particular provider and model (its ratio vocabulary, its seed range,
whether it takes data URIs) are checked by that provider's ``prepare`` step, which turns a
request into the exact body it would send — still before any request goes out.

The result models describe what happened: a :class:`Generation` is a submitted job, a
:class:`GenerationResult` is a finished one, a :class:`StoredOutput` is a verified file.
None of them ever holds an API key.
"""

from __future__ import annotations

import base64
import math
import mimetypes
import re
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from prefect_runway.errors import InvalidRequest
from prefect_runway.names import check_name

ImageModel = Literal["gen4_image", "gen4_image_turbo"]
VideoModel = Literal["gen4_turbo", "gen4.5", "gen3a_turbo"]
Kind = Literal["image", "video"]
PublicFigureThreshold = Literal["auto", "low"]

IMAGE_MODELS: tuple[str, ...] = ("gen4_image", "gen4_image_turbo")
VIDEO_MODELS: tuple[str, ...] = ("gen4_turbo", "gen4.5", "gen3a_turbo")
#: The lengths every provider takes (5 or 10 s). Runway's own API takes more for some models;
#: :func:`prefect_runway.providers.catalogue.durations` has the lengths by model and provider.
DURATIONS: tuple[int, ...] = (5, 10)
MAX_PROMPT_UTF16 = 1000
SEED_MAX = 4_294_967_295

_TAG_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{2,15}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def utf16_len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units, the unit the providers count prompts in."""
    return len(text.encode("utf-16-le")) // 2


def bytes_to_data_uri(data: bytes, media_type: str | None = None) -> str:
    """Encode raw image bytes as a ``data:`` URI, sniffing the media type when not given."""
    media_type = media_type or sniff_media_type(data) or "application/octet-stream"
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


def sniff_media_type(data: bytes) -> str | None:
    """Media type from magic bytes, for the formats this package reads and writes."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":
        return "video/mp4"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None


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
    """
    from prefect_runway.providers import catalogue  # the catalogue imports no models

    return catalogue.durations(model) or DURATIONS


def as_invalid_request(error: ValidationError) -> InvalidRequest:
    """The first problem in a pydantic ValidationError, as the typed InvalidRequest."""
    first = error.errors()[0]
    original = (first.get("ctx") or {}).get("error")
    if isinstance(original, InvalidRequest):
        return original
    field = ".".join(str(p) for p in first.get("loc", ())) or "request"
    return InvalidRequest(field, first.get("msg", "is invalid"))


class _Strict(BaseModel):
    """Raises InvalidRequest (naming the field) instead of pydantic's ValidationError."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise as_invalid_request(e) from None

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as e:
            raise as_invalid_request(e) from None


class ReferenceImage(_Strict):
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


class ContentModeration(_Strict):
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


class _Request(_Strict):
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


class ImageRequest(_Request):
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

    @field_validator("prompt")
    @classmethod
    def _prompt_nonempty(cls, v: str) -> str:
        if not v.strip():
            raise InvalidRequest("prompt", "must not be empty")
        return v

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
        return _duration_seconds(v, model_durations(info.data.get("model", "gen4_turbo")))


def _duration_seconds(v: Any, allowed: Any, *, check_allowed: bool = True) -> int:
    """A duration in whole seconds, or a typed error naming the allowed lengths."""
    if isinstance(v, bool):
        raise InvalidRequest("duration", f"{v!r} is not a number", allowed=allowed)
    try:
        d = int(v)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an infinite float
        raise InvalidRequest("duration", f"{v!r} is not a number", allowed=allowed) from None
    if (check_allowed and d not in allowed) or (isinstance(v, float) and v != d):
        raise InvalidRequest("duration", f"{v!r} is not allowed", allowed=allowed)
    return d


def seconds_value(field: str, value: Any, allowed: str = "a number of seconds > 0") -> float:
    """A length of time in seconds, finite and above 0 (a flow's ``timeout``, a review's
    ``review_timeout``), or a typed error naming ``field``."""
    try:
        seconds = math.nan if isinstance(value, bool) else float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int past float's range
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise InvalidRequest(field, f"{value!r} is not a number of seconds", allowed=allowed)
    return seconds


Request = ImageRequest | VideoRequest

#: The first frame used to check a shot's video step before its still exists.
PLACEHOLDER_IMAGE = "https://example.invalid/still.png"


def _renamed(error: InvalidRequest, field: str) -> InvalidRequest:
    """The same error, naming ``field`` (a shot's field) instead of the request's field."""
    if error.field != field:
        text = str(error)
        prefix = f"{error.field}: "
        error.field = field
        error.args = (field + ": " + (text[len(prefix):] if text.startswith(prefix) else text),)
    return error


class Shot(_Strict):
    """One shot of a storyboard: a gen4_image still, then that still animated.

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
    still_prompt: str = Field(
        description="The still's prompt; refer to reference images as @tag."
    )
    reference_images: list[ReferenceImage] = Field(
        default_factory=list,
        description="Tagged reference images for the still (Segmind needs at least one).",
    )
    motion_prompt: str = Field(default="", description="The animation's prompt.")
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
                    "provider provably does not take the job (see prefect_runway.fallback).",
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
        return _duration_seconds(v, allowed, check_allowed=False)

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
        self.still_request()
        self.video_request(PLACEHOLDER_IMAGE)
        return self

    def shot_field(self, step: Literal["still", "video"], field: str) -> str:
        """What a request's ``field`` is called in a shot, for the still or the video step."""
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
                prompt=self.still_prompt, reference_images=list(self.reference_images),
                ratio=self.ratio, seed=self.seed,
            )
        except InvalidRequest as e:
            raise _renamed(e, self.shot_field("still", e.field)) from None

    def video_request(self, image: str, image_sha256: str | None = None) -> VideoRequest:
        """The shot's animation of ``image`` as a :class:`VideoRequest`."""
        try:
            return VideoRequest(
                image=image, image_sha256=image_sha256, prompt=self.motion_prompt,
                model=self.video_model, ratio=self.video_ratio or self.ratio,
                duration=self.duration, seed=self.seed,
            )
        except InvalidRequest as e:
            raise _renamed(e, self.shot_field("video", e.field)) from None


class JobState(str, Enum):
    """A provider-neutral job state."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class Generation(BaseModel):
    """A job the provider accepted: enough to poll it, resume it, or cancel it later.

    Holds no secret: the API key stays in the credentials block.
    """

    provider: str = Field(description="Provider name: segmind, aimlapi or runway.")
    model: str = Field(description="Runway model name, e.g. gen4_turbo.")
    kind: Kind = Field(description="image or video.")
    job_id: str = Field(description="The provider's id for the job.")
    fingerprint: str = Field(description="sha256 of (provider, model, canonical request).")
    base_url: str = Field(description="The API base URL the job was submitted to.")
    status_url: str | None = Field(default=None, description="Where to poll, if given.")
    result_url: str | None = Field(default=None, description="Where the result is, if given.")
    submitted_at: datetime = Field(default_factory=utc_now, description="When it was submitted.")
    request: dict[str, Any] = Field(
        default_factory=dict,
        description="The request as sent, with data URIs shortened to their sha256.",
    )
    charged: float | None = Field(
        default=None,
        description=(
            "What the account was charged for this submit, where provable from the submit "
            "answer (Segmind: the balance before it minus x-remaining-credits, see "
            "prefect_runway.engine.credits); None: not known."
        ),
    )


class StatusUpdate(BaseModel):
    """What one status answer says, in provider-neutral terms (the output of a parser).

    ``throttled`` marks a pending job the provider is holding back (Runway ``THROTTLED``: the
    account is at its concurrency limit for the model); the engine keeps that time off the
    wait deadline and logs ``throttle_reason``.
    """

    state: JobState
    throttled: bool = False
    throttle_reason: str | None = None
    raw_status: str | None = None
    outputs: list[str] = Field(default_factory=list)
    error: str | None = None
    failure_code: str | None = None
    progress: float | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    cost: float | None = None
    needs_result_call: bool = False


class GenerationResult(BaseModel):
    """A finished job: its output URLs, the provider's metrics and the cost where reported."""

    generation: Generation
    state: JobState
    outputs: list[str] = Field(description="Output media URLs (may be signed and short-lived).")
    metrics: dict[str, Any] = Field(default_factory=dict)
    cost: float | None = Field(default=None, description="Credits used, where reported.")
    completed_at: datetime = Field(default_factory=utc_now)

    @property
    def seconds(self) -> float:
        return (self.completed_at - self.generation.submitted_at).total_seconds()


class StoredOutput(BaseModel):
    """A generated file that was downloaded, verified and stored; also the sidecar's schema."""

    location: str = Field(description="Where it is: a local path or a storage URI (s3://...).")
    key: str = Field(description="Its key (relative path) inside the storage.")
    size: int = Field(description="Size in bytes.")
    sha256: str = Field(description="sha256 of the bytes, hex.")
    media_type: str = Field(description="image/png, video/mp4, ...")
    provider: str
    model: str
    kind: Kind
    job_id: str
    fingerprint: str
    source_url: str = Field(description="The provider URL it came from, without query string.")
    request: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    cost: float | None = Field(
        default=None, description="What the job cost: charged where reported, else estimated."
    )
    cost_unit: str | None = Field(
        default=None, description="The cost's unit: 'credits' (the provider's own) or 'USD'."
    )
    cost_estimated: bool | None = Field(
        default=None,
        description="True: the provider did not report it; the price table's estimate.",
    )
    submitted_at: datetime | None = None
    completed_at: datetime | None = None
    stored_at: datetime = Field(default_factory=utc_now)
    flow_run_id: str | None = None
    sidecar: str | None = Field(default=None, description="Location of the sidecar JSON.")
    preview_key: str | None = Field(
        default=None,
        description=(
            "For a video: the key of its small preview (an animated GIF or a contact-sheet "
            "PNG) stored beside it, e.g. '<video key>.preview.gif'."
        ),
    )
    fallback: list[dict[str, str]] | None = Field(
        default=None,
        description=(
            "The providers this step did not run on, in order, each {provider, reason, error, "
            "stage}: the step fell back (see prefect_runway.fallback). None: it did not."
        ),
    )

    @property
    def extension(self) -> str:
        return (mimetypes.guess_extension(self.media_type) or ".bin").lstrip(".")


class ModelLimits(BaseModel):
    """An account's limits and usage for one model (Runway ``GET /v1/organization``)."""

    max_concurrent_generations: int | None = Field(
        default=None, description="Jobs that may run at once; None: no limit."
    )
    max_daily_generations: int | None = Field(
        default=None, description="Jobs that may be created in a rolling day; None: no limit."
    )
    daily_generations: int | None = Field(
        default=None, description="Jobs created in the past day, where reported."
    )

    @property
    def daily_remaining(self) -> int | None:
        """Jobs left in the rolling day, where both the limit and the usage are known."""
        if self.max_daily_generations is None or self.daily_generations is None:
            return None
        return max(0, self.max_daily_generations - self.daily_generations)


class Balance(BaseModel):
    """What an account has left to spend, from a provider's balance endpoint.

    ``credits`` is in the provider's own unit (``unit``): Runway credits, Segmind's
    USD-denominated credits, AIMLAPI credits ($1 = 2,000,000). Holds no secret.
    """

    provider: str
    credits: float | None = Field(default=None, description="The spendable balance.")
    unit: str = Field(description="What one unit of `credits` is.")
    free_credits: float | None = Field(default=None, description="Promotional credits (Segmind).")
    max_monthly_credit_spend: int | None = Field(
        default=None, description="Runway tier: credits that may be bought in a month."
    )
    low_balance: bool | None = Field(default=None, description="AIMLAPI: below its threshold.")
    models: dict[str, ModelLimits] = Field(
        default_factory=dict, description="Per-model limits and usage (Runway)."
    )
    checked_at: datetime = Field(default_factory=utc_now)

    def limits(self, model: str) -> ModelLimits | None:
        """The limits of ``model``, if the provider reports any."""
        return self.models.get(model)
