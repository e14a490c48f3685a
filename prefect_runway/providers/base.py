"""What every provider module implements, and the rules they share.

A provider is *pure translation*: it knows endpoints, headers, field names, allowed values
and status vocabularies, and turns

* a request into the exact body it would POST (``prepare``, which validates first),
* a submit answer into a :class:`~prefect_runway.models.Generation`,
* a status answer into a :class:`~prefect_runway.models.StatusUpdate`,
* an HTTP error into the right typed exception.

It never opens a socket; the one HTTP engine is :mod:`prefect_runway.engine`. (``prepare``
does read a local image file when a request names one: that is input, not network.)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import io
import ipaddress
import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit, urlunsplit

from prefect_runway.errors import (
    AuthenticationError,
    BadResponse,
    GenerationExpired,
    InsufficientCredits,
    InvalidRequest,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
)
from prefect_runway.models import (
    Generation,
    ImageRequest,
    Request,
    StatusUpdate,
    VideoRequest,
    bytes_to_data_uri,
    sniff_media_type,
)

MAX_IMAGE_BYTES = 16 * 1024 * 1024
IMAGE_MEDIA_TYPES = ("image/png", "image/jpeg", "image/webp")


@dataclass(frozen=True)
class HttpCall:
    """One HTTP request, described but not sent. ``url`` is absolute."""

    method: Literal["GET", "POST", "DELETE"]
    url: str
    json: dict[str, Any] | None = None
    params: dict[str, str] | None = None


@dataclass(frozen=True)
class ModelSpec:
    """One model as one provider sells it."""

    model: str
    wire_name: str
    kind: Literal["image", "video"]
    ratios: tuple[str, ...]
    default_ratio: str
    seed_range: tuple[int, int] = (0, 4_294_967_295)
    durations: tuple[int, ...] = (5, 10)
    min_reference_images: int = 0
    max_reference_images: int = 3
    last_image: bool = False


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


# Ratios that mean the same picture shape across the providers' vocabularies. A ratio that a
# model does not list is mapped to the member of its group that the model does list.
RATIO_GROUPS: tuple[frozenset[str], ...] = (
    frozenset({"16:9", "1280:720", "1920:1080", "1280:768", "1360:768"}),
    frozenset({"9:16", "720:1280", "1080:1920", "768:1280"}),
    frozenset({"1:1", "960:960", "1024:1024", "1080:1080", "720:720"}),
    frozenset({"4:3", "1104:832", "1168:880", "1440:1080", "960:720"}),
    frozenset({"3:4", "832:1104", "1080:1440", "720:960"}),
    frozenset({"21:9", "1584:672", "1808:768", "2112:912", "1680:720"}),
)


def map_ratio(ratio: str | None, spec: ModelSpec, provider: str) -> str:
    """Return ``ratio`` in the model's own vocabulary, or raise naming the allowed values."""
    if ratio is None:
        return spec.default_ratio
    if ratio in spec.ratios:
        return ratio
    for group in RATIO_GROUPS:
        if ratio in group:
            candidates = [r for r in spec.ratios if r in group]
            if candidates:
                return spec.default_ratio if spec.default_ratio in candidates else candidates[0]
    raise InvalidRequest(
        "ratio",
        f"{ratio!r} has no equivalent",
        allowed=spec.ratios,
        provider=provider,
        model=spec.model,
    )


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def redact_url(url: str) -> str:
    """The URL without its query string and fragment: safe to log (signatures live there)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def decode_data_uri(uri: str, field_name: str) -> tuple[str, bytes]:
    """(media type, bytes) of a base64 ``data:`` URI."""
    m = re.match(r"^data:([\w.+-]+/[\w.+-]+)?(;[^,]*)?,(.*)$", uri, re.S)
    if not m or not (m.group(2) or "").endswith("base64"):
        raise InvalidRequest(field_name, "is not a base64 data URI", allowed="data:image/png;base64,...")
    try:
        data = base64.b64decode(m.group(3), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(field_name, "data URI is not valid base64") from None
    return (m.group(1) or sniff_media_type(data) or "application/octet-stream"), data


def image_size(data: bytes) -> tuple[int, int] | None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Exception:
        return None


@dataclass(frozen=True)
class ResolvedImage:
    """An image input, with its bytes where they are at hand (data URI or local file)."""

    wire: str  # what goes in the body: the URL or a data URI
    identity: str  # what the fingerprint uses
    data: bytes | None = None


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
    models: ClassVar[dict[str, ModelSpec]]

    # ---- request side --------------------------------------------------------------------

    def spec_for(self, model: str) -> ModelSpec:
        try:
            return self.models[model]
        except KeyError:
            raise InvalidRequest(
                "model", f"{model!r} is not offered", allowed=sorted(self.models), provider=self.name
            ) from None

    def prepare(self, request: Request, base_url: str | None = None) -> PreparedRequest:
        """Check ``request`` against this provider's rules and build the body to send.

        Raises:
            InvalidRequest: naming the field and the allowed values.
        """
        spec = self.spec_for(request.model)
        if spec.kind != request.kind:
            raise InvalidRequest("model", f"{request.model!r} is not a {request.kind} model")
        ratio = map_ratio(request.ratio, spec, self.name)
        lo, hi = spec.seed_range
        if request.seed is not None and not lo <= request.seed <= hi:
            raise InvalidRequest(
                "seed", f"{request.seed} is out of range", allowed=f"{lo}-{hi}",
                provider=self.name, model=spec.model,
            )
        identities: dict[str, str] = {}
        if isinstance(request, VideoRequest):
            if request.duration not in spec.durations:
                raise InvalidRequest(
                    "duration", f"{request.duration} is not allowed", allowed=spec.durations,
                    provider=self.name, model=spec.model,
                )
            image = self.resolve_image(request.image, "image")
            if request.image_sha256:
                image = ResolvedImage(image.wire, f"sha256:{request.image_sha256}", image.data)
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
        else:
            assert isinstance(request, ImageRequest)
            n = len(request.reference_images)
            if not spec.min_reference_images <= n <= spec.max_reference_images:
                raise InvalidRequest(
                    "reference_images", f"{n} given",
                    allowed=f"{spec.min_reference_images}-{spec.max_reference_images} images",
                    provider=self.name, model=spec.model,
                )
            refs = []
            for ref in request.reference_images:
                img = self.resolve_image(ref.uri, "reference_images.uri")
                identities[img.wire] = img.identity
                refs.append({"uri": img.wire, "tag": ref.tag})
            body = self.image_body(spec, request, ratio, refs)
        return self._finish(spec, body, identities, base_url or self.default_base_url)

    def _finish(
        self, spec: ModelSpec, body: dict[str, Any], identities: dict[str, str], base_url: str
    ) -> PreparedRequest:
        identified = _replace_strings(body, identities)
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
            kind=spec.kind,
            body=body,
            fingerprint=fingerprint,
            summary=_redact_urls(identified),
            base_url=base_url.rstrip("/"),
            spec=spec,
        )

    def resolve_image(self, value: str, field_name: str) -> ResolvedImage:
        """Turn an image input into what this provider accepts on the wire."""
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


def error_detail(body: Any, limit: int = 300) -> str | None:
    """A short, human-readable error text from a provider body (JSON or not)."""
    if body is None:
        return None
    if isinstance(body, dict):
        for key in ("error", "message", "detail", "failure", "msg"):
            v = body.get(key)
            if isinstance(v, dict):
                v = v.get("message") or v.get("name") or json.dumps(v)[:limit]
            if isinstance(v, list):
                v = "; ".join(str(x) for x in v)
            if v:
                return str(v)[:limit]
        return json.dumps(body, sort_keys=True)[:limit]
    text = str(body)
    if "<" in text and ">" in text:  # an HTML error page: keep its words only
        text = re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", " ", text)
        text = html.unescape(re.sub(r"<[^>]+>", " ", text))
    text = " ".join(text.split())
    return text[:limit] or None


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


def json_or_text(content: bytes) -> Any:
    """Parse a response body as JSON; fall back to its text (HTML pages, plain errors)."""
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return content.decode("utf-8", errors="replace")
