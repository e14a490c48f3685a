"""Runway's own API (``api.dev.runwayml.com``, version ``2024-11-06``)."""

from __future__ import annotations

import hashlib
import mimetypes
import re
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from prefect_runway.errors import (
    ContentRejected,
    DailyQuotaExceeded,
    GenerationFailed,
    GenerationInternalError,
    InsufficientCredits,
    InvalidAsset,
    InvalidRequest,
    OutputRejected,
    ProviderError,
    UploadRequired,
)
from prefect_runway.models import (
    Balance,
    FinishRequest,
    Generation,
    ImageRequest,
    JobState,
    ModelLimits,
    Request,
    StatusUpdate,
    TextToVideoRequest,
    VideoRequest,
    catalogue,
    runway_api,
    sniff_media_type,
)
from prefect_runway.providers.base import (
    IMAGE_MEDIA_TYPES,
    ModelSpec,
    PreparedRequest,
    Provider,
    ResolvedImage,
)
from prefect_runway.providers.hub import (
    add_content_moderation,
    endpoint_of,
    finish_body,
    priced_on,
    text_to_video_body,
)
from prefect_runway.providers.wire import (
    HttpCall,
    PendingUpload,
    UploadForm,
    decode_data_uri,
    error_detail,
    inline_length,
    number,
    whole,
)

API_VERSION = "2024-11-06"
LIMITS = catalogue.LIMITS["runway"]
#: Longest data URI Runway takes, in characters of the encoded URI (5 MiB).
MAX_DATA_URI_BYTES: int = LIMITS.data_uri  # type: ignore[assignment]
#: Largest image behind an https URL (16 MiB).
MAX_URL_IMAGE_BYTES = LIMITS.url
#: Largest image through ``POST /v1/uploads`` (200 MiB).
MAX_UPLOAD_BYTES: int = LIMITS.upload  # type: ignore[assignment]
#: How long a ``runway://`` upload URI stays valid.
UPLOAD_TTL_SECONDS = 24 * 3600.0

_STATES = {
    "PENDING": JobState.PENDING,
    "THROTTLED": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "SUCCEEDED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "CANCELLED": JobState.CANCELLED,
}

_CREDITS_WORDS = re.compile(r"enough credits|out of credits|insufficient credits", re.IGNORECASE)
_DAILY_WORDS = re.compile(r"daily|per day|24 ?h|quota", re.IGNORECASE)

#: What a THROTTLED task is waiting for (Runway's task answer carries no reason of its own).
THROTTLE_REASON = (
    "Runway is holding the task until the organization is below its concurrency limit for "
    "this model (tier.models[model].maxConcurrentGenerations)"
)


class FailureKind(str, Enum):
    """What a Runway ``failureCode`` means for what to do next."""

    INPUT_REJECTED = "input_rejected"  # SAFETY.INPUT.*, INPUT_PREPROCESSING.SAFETY.*: final
    OUTPUT_REJECTED = "output_rejected"  # SAFETY.OUTPUT.*: a new seed may pass
    INTERNAL = "internal"  # INTERNAL, INTERNAL.*, INPUT_PREPROCESSING.INTERNAL: resubmit once
    ASSET_INVALID = "asset_invalid"  # ASSET.INVALID*: fix the input
    UNKNOWN = "unknown"


def classify_failure(code: str | None) -> FailureKind:
    """The kind of a Runway ``failureCode`` (https://docs.dev.runwayml.com/api-details/task-failures)."""
    c = (code or "").strip().upper()
    if c.startswith("SAFETY.INPUT") or c.startswith("INPUT_PREPROCESSING.SAFETY"):
        return FailureKind.INPUT_REJECTED
    if c.startswith("SAFETY.OUTPUT"):
        return FailureKind.OUTPUT_REJECTED
    if c == "INTERNAL" or c.startswith("INTERNAL.") or c == "INPUT_PREPROCESSING.INTERNAL":
        return FailureKind.INTERNAL
    if c.startswith("ASSET.INVALID"):
        return FailureKind.ASSET_INVALID
    return FailureKind.UNKNOWN


_FAILURE_ERRORS: dict[FailureKind, tuple[type[GenerationFailed], str]] = {
    FailureKind.INPUT_REJECTED: (ContentRejected, "content moderation rejected an input; not retried"),
    FailureKind.OUTPUT_REJECTED: (
        OutputRejected, "content moderation rejected the output; a new seed may pass",
    ),
    FailureKind.INTERNAL: (GenerationInternalError, "Runway failed internally; it may be resubmitted"),
    FailureKind.ASSET_INVALID: (InvalidAsset, "Runway could not use an input asset; fix the input"),
}


class RunwayProvider(Provider):
    """Runway's API: stills, videos and their finishing, for every model of its hub."""

    name = "runway"
    default_base_url = "https://api.dev.runwayml.com"
    retention_seconds = 24 * 3600.0
    accepts_data_uri = True
    max_data_uri_bytes = MAX_DATA_URI_BYTES
    checks_aspect = True
    can_cancel = True
    can_upload = True
    takes_options = True
    limits = LIMITS
    models = catalogue.specs("runway")

    # ---- request side --------------------------------------------------------------------

    def prepare(self, request: Request | FinishRequest, base_url: str | None = None) -> PreparedRequest:
        """As the base, then the body checked against the model's rules in Runway's spec
        (``runway_api.check_body``): a field it does not take is refused before sending."""
        prepared = super().prepare(request, base_url)
        runway_api.check_body(endpoint_of(prepared), prepared.body)
        return prepared

    def prepare_text_to_video(self, request: TextToVideoRequest, base_url: str) -> PreparedRequest:
        """``POST /v1/text_to_video``: the body by the model's rules (:mod:`.hub`)."""
        spec, body = text_to_video_body(request, self.name)
        return self._finish(spec, body, {}, base_url, request.options)

    def prepare_finish(self, request: FinishRequest, base_url: str) -> PreparedRequest:
        """``POST /v1/video_upscale``: the source video and the model's options (:mod:`.hub`)."""
        spec, body, identities = finish_body(request, MAX_DATA_URI_BYTES)
        return priced_on(self._finish(spec, body, identities, base_url, request.options), request.duration)

    def image_body(
        self, spec: ModelSpec, request: ImageRequest, ratio: str, refs: list[dict[str, str]]
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": spec.wire_name, "promptText": request.prompt}
        if ratio:  # a hub model whose ratio is optional: sent only when the request names one
            body["ratio"] = ratio
        if refs:
            body["referenceImages"] = refs if spec.reference_tags else [{"uri": r["uri"]} for r in refs]
        if request.seed is not None:
            body["seed"] = request.seed
        add_content_moderation(body, request)
        body.update(runway_api.check_options("image", spec.model, request.options))
        return body

    def video_body(
        self, spec: ModelSpec, request: VideoRequest, ratio: str, image: str, last_image: str | None
    ) -> dict[str, Any]:
        has_prompt = bool(request.prompt.strip())
        prompt_image: str | list[dict[str, str]] = image
        if last_image is not None:
            prompt_image = [
                {"uri": image, "position": "first"},
                {"uri": last_image, "position": "last"},
            ]
        body: dict[str, Any] = {"model": spec.wire_name, "promptImage": prompt_image}
        if has_prompt:  # optional for gen4_turbo; an empty one is left out
            body["promptText"] = request.prompt
        if ratio:
            body["ratio"] = ratio
        if not spec.fields or "duration" in spec.fields:
            body["duration"] = request.duration
        if request.seed is not None:
            body["seed"] = request.seed
        add_content_moderation(body, request)
        body.update(runway_api.check_options("video", spec.model, request.options))
        return body

    def resolve_image(self, value: str, field_name: str) -> ResolvedImage:
        """As the base, but a local image too long for a data URI raises UploadRequired."""
        local = _local_image(value, field_name)
        if local is not None:
            data, media_type = local
            self._check_upload_size(data, media_type, field_name)
            encoded = inline_length(value, data, media_type)
            if encoded > MAX_DATA_URI_BYTES:
                raise UploadRequired(
                    field_name,
                    f"image is {len(data)} bytes, {encoded} characters as a data URI: too long to "
                    f"send inline; upload it first (POST /v1/uploads, up to {MAX_UPLOAD_BYTES} bytes)",
                    size=len(data), limit=MAX_DATA_URI_BYTES,
                    allowed=f"at most {MAX_DATA_URI_BYTES} bytes", provider=self.name,
                )
        return super().resolve_image(value, field_name)

    def _check_upload_size(self, data: bytes, media_type: str, field_name: str) -> None:
        if sniff_media_type(data) not in IMAGE_MEDIA_TYPES:
            raise InvalidRequest(
                field_name, f"is not a PNG, JPEG or WebP image (got {media_type})",
                allowed=IMAGE_MEDIA_TYPES,
            )
        if len(data) > MAX_UPLOAD_BYTES:
            raise InvalidRequest(
                field_name, f"image is {len(data)} bytes",
                allowed=f"at most {MAX_UPLOAD_BYTES} bytes (Runway's upload limit)",
                provider=self.name,
            )

    def _check_image_bytes(self, data: bytes, media_type: str, field_name: str) -> None:
        # Reached only for images that fit a data URI (resolve_image checked the rest).
        self._check_upload_size(data, media_type, field_name)

    # ---- uploads ---------------------------------------------------------------------------

    def uploads_needed(self, request: Request, *, force: bool = False) -> list[PendingUpload]:
        """The local images of ``request`` to upload first: those too long for a data URI,
        or every local image when ``force``. URLs and ``runway://`` URIs are never uploaded.

        Raises:
            InvalidRequest: an image is not a PNG/JPEG/WebP, or is over 200 MB.
        """
        spots: list[tuple[str, str]] = []
        if isinstance(request, VideoRequest):
            spots.append(("image", request.image))  # no Runway model served takes a last frame
        elif isinstance(request, ImageRequest):  # a text_to_video request has no image
            spots += [(f"reference_images[{i}].uri", r.uri) for i, r in enumerate(request.reference_images)]
        pending = []
        for where, value in spots:
            field_name = where.split("[")[0] + (".uri" if "[" in where else "")
            local = _local_image(value, field_name)
            if local is None:
                continue
            data, media_type = local
            self._check_upload_size(data, media_type, field_name)
            if force or inline_length(value, data, media_type) > MAX_DATA_URI_BYTES:
                digest = hashlib.sha256(data).hexdigest()
                pending.append(PendingUpload(
                    field=where, data=data, media_type=media_type, sha256=digest,
                    filename=_filename(value, media_type, digest),
                ))
        return pending

    def apply_uploads(
        self, request: Request, uploaded: Mapping[str, str], pending: list[PendingUpload]
    ) -> Request:
        """``request`` with the uploaded images as ``runway://`` URIs (see :func:`apply_uploads`)."""
        return apply_uploads(request, uploaded, pending)

    def upload_call(self, filename: str, base_url: str | None = None) -> HttpCall:
        """``POST /v1/uploads {filename, type: "ephemeral"}`` (runwayml 5.24 ``uploads.create_ephemeral``)."""
        base = (base_url or self.default_base_url).rstrip("/")
        return HttpCall("POST", f"{base}/v1/uploads", json={"filename": filename, "type": "ephemeral"})

    def parse_upload(self, status_code: int, body: Any) -> UploadForm:
        """``{uploadUrl, fields, runwayUri}`` -> UploadForm; raises the typed error otherwise."""
        if not 200 <= status_code < 300:
            raise self.error_for(status_code, body)
        if not isinstance(body, dict):
            raise self.bad_response("upload", body)
        url, fields, uri = body.get("uploadUrl"), body.get("fields"), body.get("runwayUri")
        if (
            not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https")
            or not isinstance(uri, str) or not uri.startswith("runway://")
            or not isinstance(fields, dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())
        ):
            raise self.bad_response("upload", body)
        return UploadForm(url=url, fields=dict(fields), uri=uri)

    # ---- HTTP side -----------------------------------------------------------------------

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}", "X-Runway-Version": API_VERSION}

    def submit_call(self, prepared: PreparedRequest) -> HttpCall:
        url = f"{prepared.base_url}/v1/{endpoint_of(prepared)}"
        return HttpCall("POST", url, json=prepared.body)

    def parse_submit(self, prepared: PreparedRequest, body: Any) -> Generation:
        job_id = body.get("id") if isinstance(body, dict) else None
        if not isinstance(job_id, str) or not job_id:
            raise self.bad_response("submit", body)
        return Generation(
            provider=self.name,
            model=prepared.model,
            kind=prepared.kind,
            job_id=job_id,
            fingerprint=prepared.fingerprint,
            base_url=prepared.base_url,
            status_url=task_url(prepared.base_url, job_id),
            request=prepared.summary,
        )

    def status_call(self, generation: Generation) -> HttpCall:
        return HttpCall("GET", generation.status_url or task_url(generation.base_url, generation.job_id))

    def result_call(self, generation: Generation) -> HttpCall:
        """The task again: asked only when a SUCCEEDED answer named no output."""
        return self.status_call(generation)

    def cancel_call(self, generation: Generation) -> HttpCall:
        return HttpCall("DELETE", task_url(generation.base_url, generation.job_id))

    def parse_status(self, generation: Generation, status_code: int, body: Any) -> StatusUpdate:
        job_id = generation.job_id
        if not 200 <= status_code < 300:
            raise self.error_for(status_code, body, job_id=job_id, on_job=True)
        if not isinstance(body, dict) or not isinstance(body.get("status"), str):
            raise self.bad_response("status", body, job_id)
        raw = body["status"].strip().upper()
        # An unknown status is treated as still pending; the wait's deadline bounds it.
        state = _STATES.get(raw, JobState.PENDING)
        update = StatusUpdate(
            state=state, raw_status=raw, metrics=_metrics(body), cost=_credits(body.get("cost")),
        )
        if raw == "THROTTLED":
            update.throttled = True
            update.throttle_reason = THROTTLE_REASON
        if state is JobState.RUNNING:
            progress = body.get("progress")
            if isinstance(progress, (int, float)) and not isinstance(progress, bool):
                update.progress = float(progress)
        elif state is JobState.FAILED:
            failure = body.get("failure")
            update.error = str(failure) if failure else "Runway reported the task as FAILED"
            code = body.get("failureCode")
            update.failure_code = str(code) if code else None
        elif state is JobState.SUCCEEDED:
            # Always this answer's URLs: they are freshly signed on every fetch of the task.
            output = body.get("output")
            if isinstance(output, str):
                output = [output]
            update.outputs = [u for u in output or () if isinstance(u, str) and u]
            update.needs_result_call = not update.outputs
        return update

    def failure_error(self, generation: Generation, update: StatusUpdate) -> GenerationFailed:
        """The typed error of a FAILED task, by its ``failureCode``.

        ``ContentRejected`` (input moderation: final), ``OutputRejected`` (output moderation:
        ``retryable_with_new_seed``), ``GenerationInternalError`` (``resubmittable`` once, not
        when ``charged``), ``InvalidAsset`` (fix the input); other codes: ``GenerationFailed``.
        """
        cls, message = _FAILURE_ERRORS.get(
            classify_failure(update.failure_code), (GenerationFailed, "the generation failed")
        )
        kw: dict[str, Any] = {
            "provider": generation.provider, "job_id": generation.job_id,
            "detail": update.error, "failure_code": update.failure_code,
        }
        if cls is GenerationFailed:
            return GenerationFailed(message, **kw)
        charged = None if update.cost is None else update.cost > 0
        return cls(message, charged=charged, **kw)  # type: ignore[call-arg]

    def error_for(
        self, status_code: int, body: Any, *, job_id: str | None = None, on_job: bool = False
    ) -> ProviderError:
        """Runway's errors: an empty balance is a 400 that says so; a spent daily quota is a
        429 on task creation that says so."""
        detail = error_detail(body)
        kw: dict[str, Any] = {
            "provider": self.name, "status_code": status_code, "job_id": job_id, "detail": detail,
        }
        if status_code == 402 or (status_code == 400 and _CREDITS_WORDS.search(detail or "")):
            return InsufficientCredits("the Runway account does not have enough credits for this task", **kw)
        if status_code == 429 and not on_job and _DAILY_WORDS.search(detail or ""):
            return DailyQuotaExceeded("the Runway organization's daily generation quota is spent", **kw)
        return super().error_for(status_code, body, job_id=job_id, on_job=on_job)

    # ---- balance ---------------------------------------------------------------------------

    def balance_call(self, base_url: str | None = None) -> HttpCall:
        """``GET /v1/organization`` (runwayml 5.24 ``organization.retrieve``)."""
        return HttpCall("GET", f"{(base_url or self.default_base_url).rstrip('/')}/v1/organization")

    def parse_balance(self, status_code: int, body: Any) -> Balance:
        """``{creditBalance, tier: {maxMonthlyCreditSpend, models}, usage: {models}}`` -> Balance."""
        if not 200 <= status_code < 300:
            raise self.error_for(status_code, body)
        if not isinstance(body, dict) or number(body.get("creditBalance")) is None:
            raise self.bad_response("organization", body)
        tier = _mapping(body.get("tier"))
        usage = _mapping(body.get("usage"))
        limits = _mapping(tier.get("models"))
        used = _mapping(usage.get("models"))
        models: dict[str, ModelLimits] = {}
        for name in sorted(set(limits) | set(used)):
            lim = _mapping(limits.get(name))
            use = _mapping(used.get(name))
            models[name] = ModelLimits(
                max_concurrent_generations=whole(lim.get("maxConcurrentGenerations")),
                max_daily_generations=whole(lim.get("maxDailyGenerations")),
                daily_generations=whole(use.get("dailyGenerations")),
            )
        return Balance(
            provider=self.name, credits=number(body["creditBalance"]), unit="runway credits",
            max_monthly_credit_spend=whole(tier.get("maxMonthlyCreditSpend")), models=models,
        )


def _local_image(value: str, field_name: str) -> tuple[bytes, str] | None:
    """(bytes, media type) of a data URI or a local file; None for URLs and upload URIs."""
    if value.startswith("data:"):
        return decode_data_uri(value, field_name)[::-1]
    scheme = urlsplit(value).scheme
    if scheme and len(scheme) > 1:  # a URL, an upload URI, or an unsupported scheme
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        return None  # the base reports it
    data = path.read_bytes()
    return data, sniff_media_type(data) or "application/octet-stream"


def _filename(value: str, media_type: str, digest: str) -> str:
    """The name announced to the upload route: the file's own, or one from the digest."""
    if not value.startswith("data:"):
        name = Path(value).name
        if name:
            return name
    return f"{digest[:16]}{mimetypes.guess_extension(media_type) or '.bin'}"


def apply_uploads(request: Request, uploaded: Mapping[str, str], pending: list[PendingUpload]) -> Request:
    """``request`` with each uploaded image replaced by its ``runway://`` URI and sha256.

    Args:
        request: The request ``uploads_needed`` was asked about.
        uploaded: The ``runway://`` URI of each ``PendingUpload.field``.
        pending: What ``uploads_needed`` returned.
    """
    by_field = {p.field: p for p in pending}
    if not uploaded:  # nothing uploaded (a text_to_video request has no image)
        return request
    if isinstance(request, VideoRequest):
        return request.model_copy(
            update={"image": uploaded["image"], "image_sha256": by_field["image"].sha256}
        )
    assert isinstance(request, ImageRequest)
    refs = []
    for i, ref in enumerate(request.reference_images):
        key = f"reference_images[{i}].uri"
        if key in uploaded:
            ref = ref.model_copy(update={"uri": uploaded[key], "sha256": by_field[key].sha256})
        refs.append(ref)
    return request.model_copy(update={"reference_images": refs})


def task_url(base_url: str, job_id: str) -> str:
    """The absolute URL of task ``job_id`` (GET polls it, DELETE cancels it)."""
    return f"{base_url.rstrip('/')}/v1/tasks/{quote(job_id, safe='')}"


def _credits(value: Any) -> float | None:
    """``credits`` of a ``cost`` / ``estimatedCost`` object, if it is a number."""
    credits = value.get("credits") if isinstance(value, dict) else None
    if isinstance(credits, bool) or not isinstance(credits, (int, float)):
        return None
    return float(credits)


def _metrics(body: dict[str, Any]) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    if isinstance(body.get("createdAt"), str):
        metrics["created_at"] = body["createdAt"]
    estimated = _credits(body.get("estimatedCost"))
    if estimated is not None:
        metrics["estimated_credits"] = estimated
    return metrics


def _mapping(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}

