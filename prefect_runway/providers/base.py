"""What every provider module implements, and the rules they share."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from prefect_runway.errors import (
    AuthenticationError,
    BadResponse,
    GenerationExpired,
    GenerationFailed,
    InsufficientCredits,
    InvalidRequest,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    UnsupportedOption,
)
from prefect_runway.models import (
    Balance,
    FinishRequest,
    Generation,
    ImageRequest,
    Request,
    StatusUpdate,
    TextToVideoRequest,
    VideoRequest,
    bytes_to_data_uri,
    catalogue,
    sniff_media_type,
)
from prefect_runway.models.catalogue import InputLimits, ModelSpec, map_ratio
from prefect_runway.providers.wire import (
    HttpCall,
    PendingUpload,
    UploadForm,
    decode_data_uri,
    error_detail,
    image_size,
    is_loopback_host,
    redact_url,
)

MAX_IMAGE_BYTES = 16 * 1024 * 1024
IMAGE_MEDIA_TYPES = ("image/png", "image/jpeg", "image/webp")


@dataclass(frozen=True)
class PreparedRequest:
    """A request checked against one provider and model, with the body it would send."""

    provider: str
    model: str
    kind: Literal["image", "video"]
    body: dict[str, Any]
    fingerprint: str
    summary: dict[str, Any]
    base_url: str
    spec: ModelSpec = field(repr=False)
    #: The request's model options (``{"audio": True}``), already in ``body``.
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ResolvedImage:
    """An image input, with its bytes where they are at hand (data URI or local file)."""

    wire: str  # what goes in the body: the URL or a data URI
    identity: str  # what the fingerprint uses
    data: bytes | None = None


#: A body to send, and its images' identities (the wire value -> what the fingerprint uses).
_Parts = tuple[dict[str, Any], dict[str, str]]


class Provider(ABC):
    """Base class of the provider translations (see module docstring)."""

    name: ClassVar[str]
    default_base_url: ClassVar[str]
    #: How long the provider holds a finished job and its outputs, in seconds.
    retention_seconds: ClassVar[float]
    accepts_data_uri: ClassVar[bool] = True
    max_data_uri_bytes: ClassVar[int] = MAX_IMAGE_BYTES
    #: Whether the provider checks the first frame's width/height between 0.5 and 2.
    checks_aspect: ClassVar[bool] = False
    can_cancel: ClassVar[bool] = False
    #: Whether the provider has an upload route (``uploads_needed`` / ``upload_call``).
    can_upload: ClassVar[bool] = False
    #: Whether the bodies carry a request's model ``options`` (Runway's API hub).
    takes_options: ClassVar[bool] = False
    #: Input size limits, from the catalogue.
    limits: ClassVar[InputLimits]
    #: The models this provider still serves, from the catalogue.
    models: ClassVar[dict[str, ModelSpec]]

    # ---- request side --------------------------------------------------------------------

    def spec_for(self, model: str) -> ModelSpec:
        """The rules of ``model`` here; raises ModelRetired or InvalidRequest (see catalogue)."""
        if model in self.models:
            return self.models[model]
        return catalogue.check_model(self.name, model)

    def prepare(self, request: Request | FinishRequest,
                base_url: str | None = None) -> PreparedRequest:
        """Check ``request`` against this provider's rules and build the body to send.

        Raises:
            InvalidRequest: naming the field and the allowed values.
        """
        if isinstance(request, TextToVideoRequest):
            return self.prepare_text_to_video(request, base_url or self.default_base_url)
        if isinstance(request, FinishRequest):
            return self.prepare_finish(request, base_url or self.default_base_url)
        spec = self.spec_for(request.model)
        ratio = self._check_shared(spec, request)
        if isinstance(request, VideoRequest):
            body, identities = self._video_parts(spec, request, ratio)
        else:
            assert isinstance(request, ImageRequest)
            body, identities = self._image_parts(spec, request, ratio)
        return self._finish(spec, body, identities, base_url or self.default_base_url,
                            request.options)

    def _check_shared(self, spec: ModelSpec, request: Request) -> str:
        """What a still and a video share checked; returns the ratio in this provider's words."""
        if spec.kind != request.kind:
            raise InvalidRequest("model", f"{request.model!r} is not a {request.kind} model")
        if request.content_moderation is not None and not spec.content_moderation:
            offered = [
                f"{e.provider} {e.model}" for e in catalogue.entries(usable=True)
                if e.spec.content_moderation
            ]
            raise UnsupportedOption(
                "content_moderation", "has no field here", allowed=offered,
                provider=self.name, model=spec.model,
            )
        if request.options and not self.takes_options:
            raise UnsupportedOption(
                f"options.{next(iter(request.options))}", "has no field here",
                allowed="runway (the options of Runway's API hub models)",
                provider=self.name, model=spec.model,
            )
        ratio = map_ratio(request.ratio, spec, self.name)
        lo, hi = spec.seed_range
        if request.seed is not None and not lo <= request.seed <= hi:
            raise InvalidRequest(
                "seed", f"{request.seed} is out of range", allowed=f"{lo}-{hi}",
                provider=self.name, model=spec.model,
            )
        return ratio

    def _video_parts(self, spec: ModelSpec, request: VideoRequest, ratio: str) -> _Parts:
        """A video's body and identities, its length, prompt, first and last frame checked."""
        if not spec.duration_open and request.duration not in spec.durations:
            raise InvalidRequest(
                "duration",
                f"{request.duration} is not allowed "
                f"[{spec.model} lengths by provider: {catalogue.describe_durations(spec.model)}]",
                allowed=spec.durations, provider=self.name, model=spec.model,
            )
        if spec.requires_prompt and not request.prompt.strip():
            raise InvalidRequest(
                "prompt", "is required", allowed="a non-empty motion prompt",
                provider=self.name, model=spec.model,
            )
        image = self.resolve_image(request.image, "image")
        if request.image_sha256:
            image = ResolvedImage(image.wire, f"sha256:{request.image_sha256}", image.data)
        elif self.is_upload_uri(image.wire):
            raise _needs_sha256("image_sha256", self.name)
        last = None
        if request.last_image is not None:
            if not spec.last_image:
                raise InvalidRequest(
                    "last_image", "is not supported", allowed="only for models that take a last frame",
                    provider=self.name, model=spec.model,
                )
            last = self.resolve_image(request.last_image, "last_image")
        for name, img in (("image", image), ("last_image", last)):
            if img is not None and img.data is not None and self.checks_aspect:
                self._check_aspect(img.data, name, spec)
        body = self.video_body(spec, request, ratio, image.wire, last.wire if last else None)
        identities = {image.wire: image.identity}
        if last:
            identities[last.wire] = last.identity
        return body, identities

    def _image_parts(self, spec: ModelSpec, request: ImageRequest, ratio: str) -> _Parts:
        """A still's body and identities, its reference images counted and resolved."""
        n = len(request.reference_images)
        if not spec.min_reference_images <= n <= spec.max_reference_images:
            raise InvalidRequest(
                "reference_images", f"{n} given",
                allowed=f"{spec.min_reference_images}-{spec.max_reference_images} images",
                provider=self.name, model=spec.model,
            )
        identities: dict[str, str] = {}
        refs = []
        for ref in request.reference_images:
            img = self.resolve_image(ref.uri, "reference_images.uri")
            if ref.sha256:
                img = ResolvedImage(img.wire, f"sha256:{ref.sha256}", img.data)
            elif self.is_upload_uri(img.wire):
                raise _needs_sha256("reference_images.sha256", self.name)
            identities[img.wire] = img.identity
            refs.append({"uri": img.wire, "tag": ref.tag})
        return self.image_body(spec, request, ratio, refs), identities

    def prepare_text_to_video(self, request: TextToVideoRequest, base_url: str) -> PreparedRequest:
        """A video from a prompt alone: served by Runway's API only."""
        raise InvalidRequest("model", f"text_to_video ({request.model}) is not served by "
                             f"{self.name}", allowed="runway credentials", provider=self.name,
                             model=request.model)

    def prepare_finish(self, request: FinishRequest, base_url: str) -> PreparedRequest:
        """A finishing step (``video_upscale``): served by Runway's API only."""
        raise InvalidRequest("model", f"the finishing step ({request.model}) is not served "
                             f"by {self.name}", allowed="runway credentials (Runway's API)",
                             provider=self.name, model=request.model)

    def _finish(
        self, spec: ModelSpec, body: dict[str, Any], identities: dict[str, str], base_url: str,
        options: Mapping[str, Any] | None = None,
    ) -> PreparedRequest:
        identified = _replace_strings(body, identities)
        # Catalogue-only kinds (video_to_video) have no request type, so never reach here.
        kind: Literal["image", "video"] = "image" if spec.kind == "image" else "video"
        canonical = json.dumps(
            {"provider": self.name, "model": spec.model, "body": identified},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        fingerprint = hashlib.sha256(canonical.encode()).hexdigest()
        return PreparedRequest(
            provider=self.name,
            model=spec.model,
            kind=kind,
            body=body,
            fingerprint=fingerprint,
            summary=_redact_urls(identified),
            base_url=base_url.rstrip("/"),
            spec=spec,
            options=dict(options or {}),
        )

    def is_upload_uri(self, value: str) -> bool:
        """Whether ``value`` is one of this provider's upload URIs (``runway://...``)."""
        scheme = self.limits.upload_scheme
        return bool(scheme) and value.startswith(f"{scheme}://")

    def resolve_image(self, value: str, field_name: str) -> ResolvedImage:
        """Turn an image input into what this provider accepts on the wire."""
        if value.startswith("runway://"):
            if not self.is_upload_uri(value):
                raise InvalidRequest(
                    field_name, f"{self.name} cannot read a Runway upload URI (runway://)",
                    allowed="https URL or data URI; runway:// URIs are for the runway provider",
                    provider=self.name,
                )
            return ResolvedImage(value, value)
        if value.startswith("data:"):
            media_type, data = decode_data_uri(value, field_name)
            self._check_image_bytes(data, media_type, field_name)
            if not self.accepts_data_uri:
                raise InvalidRequest(
                    field_name, f"{self.name} needs an https URL, not a data URI",
                    allowed="https URL (store the image in S3 and pass a presigned URL)",
                    provider=self.name,
                )
            return ResolvedImage(value, "sha256:" + hashlib.sha256(data).hexdigest(), data)
        parts = urlsplit(value)
        if parts.scheme in ("http", "https"):
            if parts.scheme == "http" and not is_loopback_host(parts.hostname):
                raise InvalidRequest(
                    field_name, f"{redact_url(value)!r} is not https",
                    allowed="https URL (http only for 127.0.0.1/localhost in development)",
                    provider=self.name,
                )
            return ResolvedImage(value, value)
        if parts.scheme and len(parts.scheme) > 1:
            raise InvalidRequest(
                field_name, f"scheme {parts.scheme!r} is not supported",
                allowed="https URL, data URI, or a local file path", provider=self.name,
            )
        path = Path(value).expanduser()
        if not path.is_file():
            raise InvalidRequest(
                field_name, f"{value!r} is neither a URL, a data URI nor an existing file",
                allowed="https URL, data URI, or a local file path",
            )
        data = path.read_bytes()
        media_type = sniff_media_type(data) or "application/octet-stream"
        self._check_image_bytes(data, media_type, field_name)
        if not self.accepts_data_uri:
            raise InvalidRequest(
                field_name, f"{self.name} needs an https URL for a local file",
                allowed="https URL (store the image in S3 and pass a presigned URL)",
                provider=self.name,
            )
        return ResolvedImage(
            bytes_to_data_uri(data, media_type), "sha256:" + hashlib.sha256(data).hexdigest(), data
        )

    def _check_image_bytes(self, data: bytes, media_type: str, field_name: str) -> None:
        if sniff_media_type(data) not in IMAGE_MEDIA_TYPES:
            raise InvalidRequest(
                field_name, f"is not a PNG, JPEG or WebP image (got {media_type})",
                allowed=IMAGE_MEDIA_TYPES,
            )
        limit = min(MAX_IMAGE_BYTES, self.max_data_uri_bytes)
        if len(data) > limit:
            raise InvalidRequest(
                field_name, f"image is {len(data)} bytes", allowed=f"at most {limit} bytes",
                provider=self.name,
            )

    def _check_aspect(self, data: bytes, field_name: str, spec: ModelSpec) -> None:
        size = image_size(data)
        if size is None:
            raise InvalidRequest(field_name, "cannot be decoded as an image")
        w, h = size
        if not 0.5 <= w / h <= 2.0:
            raise InvalidRequest(
                field_name, f"width/height is {w}x{h} = {w / h:.2f}",
                allowed="width/height between 0.5 and 2", provider=self.name, model=spec.model,
            )

    @abstractmethod
    def image_body(
        self, spec: ModelSpec, request: ImageRequest, ratio: str, refs: list[dict[str, str]]
    ) -> dict[str, Any]:
        """The wire body of an image request (already validated)."""

    @abstractmethod
    def video_body(
        self, spec: ModelSpec, request: VideoRequest, ratio: str, image: str, last_image: str | None
    ) -> dict[str, Any]:
        """The wire body of a video request (already validated)."""

    # ---- HTTP side -----------------------------------------------------------------------

    @abstractmethod
    def auth_headers(self, api_key: str) -> dict[str, str]:
        """Headers that authenticate a call. The only place a key meets a request."""

    @abstractmethod
    def submit_call(self, prepared: PreparedRequest) -> HttpCall:
        """The POST that submits the job."""

    @abstractmethod
    def parse_submit(self, prepared: PreparedRequest, body: Any) -> Generation:
        """A 2xx submit answer -> the Generation (raises BadResponse if unreadable)."""

    @abstractmethod
    def status_call(self, generation: Generation) -> HttpCall:
        """The GET that polls the job."""

    @abstractmethod
    def parse_status(self, generation: Generation, status_code: int, body: Any) -> StatusUpdate:
        """A status answer -> StatusUpdate; raises the typed error for error answers."""

    def result_call(self, generation: Generation) -> HttpCall | None:
        """The GET for the final body, where the status answer lacks the outputs."""
        return None

    def cancel_call(self, generation: Generation) -> HttpCall | None:
        """The call that cancels the job, or None where the provider cannot cancel."""
        return None

    def failure_error(self, generation: Generation, update: StatusUpdate) -> GenerationFailed:
        """The typed error for a FAILED status (Runway classifies its failure codes)."""
        return GenerationFailed(
            "the generation failed", provider=generation.provider, job_id=generation.job_id,
            detail=update.error, failure_code=update.failure_code,
        )

    # ---- uploads (providers with an upload route override these) --------------------------

    def uploads_needed(self, request: Request, *, force: bool = False) -> list[PendingUpload]:
        """The local images of ``request`` that must be uploaded before it is sent.

        Empty where the provider has no upload route. ``force`` uploads every local image
        (a file, bytes, a data URI), not only those over the data-URI limit.
        """
        return []

    def upload_call(self, filename: str, base_url: str | None = None) -> HttpCall:
        """The call that opens an upload of ``filename``."""
        raise InvalidRequest("image", f"{self.name} has no upload route", provider=self.name)

    def parse_upload(self, status_code: int, body: Any) -> UploadForm:
        """The answer to ``upload_call`` -> the presigned form and the resulting URI."""
        raise InvalidRequest("image", f"{self.name} has no upload route", provider=self.name)

    # ---- balances ----------------------------------------------------------------------

    @abstractmethod
    def balance_call(self, base_url: str | None = None) -> HttpCall:
        """The GET that reads the account's balance."""

    @abstractmethod
    def parse_balance(self, status_code: int, body: Any) -> Balance:
        """A balance answer -> Balance; raises the typed error for error answers."""

    def remaining_credits(self, headers: Mapping[str, str]) -> float | None:
        """The account's balance after a submit, where the submit answer's headers carry
        it (Segmind's ``x-remaining-credits``); None where they do not."""
        return None

    def error_for(
        self, status_code: int, body: Any, *, job_id: str | None = None, on_job: bool = False
    ) -> ProviderError:
        """The typed error for an HTTP error answer.

        Args:
            status_code: The HTTP status.
            body: The parsed JSON body, or the text when it was not JSON.
            job_id: The job concerned, if any.
            on_job: True for calls about an existing job (status, result), where 404
                means the provider no longer holds it.
        """
        detail = error_detail(body)
        kw: dict[str, Any] = {
            "provider": self.name, "status_code": status_code, "job_id": job_id, "detail": detail,
        }
        if status_code == 401:
            return AuthenticationError("the API key was rejected", **kw)
        if status_code == 403:
            return AuthenticationError("the API key is not allowed to do this", **kw)
        if status_code == 404 and on_job:
            return GenerationExpired("the provider no longer holds this job", **kw)
        if status_code == 406:
            return InsufficientCredits("not enough credits for this job", **kw)
        if status_code == 429:
            return RateLimited("rate limited", **kw)
        if status_code >= 500:
            return ProviderUnavailable("the provider had a server error", **kw)
        return ProviderRejected("the provider rejected the request", **kw)

    def bad_response(self, what: str, body: Any, job_id: str | None = None) -> BadResponse:
        return BadResponse(
            f"unreadable {what} answer", provider=self.name, job_id=job_id,
            detail=error_detail(body),
        )


def _needs_sha256(field_name: str, provider: str) -> InvalidRequest:
    return InvalidRequest(
        field_name, "is required with a runway:// upload URI",
        allowed="the sha256 of the uploaded image's bytes (64 hex digits): the fingerprint "
                "identifies an image by its bytes, never by an upload URI",
        provider=provider,
    )


def _replace_strings(value: Any, identities: dict[str, str]) -> Any:
    """Copy of a body with image inputs replaced by their identities (for fingerprints/logs)."""
    if isinstance(value, str):
        if value in identities:
            return identities[value]
        if value.startswith("data:"):
            return "sha256:" + hashlib.sha256(value.encode()).hexdigest()
        return value
    if isinstance(value, dict):
        return {k: _replace_strings(v, identities) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_strings(v, identities) for v in value]
    return value


def _redact_urls(value: Any) -> Any:
    """Copy of a body with URLs stripped of their query strings (signatures), for records."""
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        return redact_url(value)
    if isinstance(value, dict):
        return {k: _redact_urls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_urls(v) for v in value]
    return value
