"""AI/ML API's video protocol for the Runway models (legacy and universal routes)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._common import (
    MAX_SEED,
    FieldError,
    base_url,
    bearer_token,
    get_choice,
    get_image_ref,
    get_int,
    get_string,
    read_json_object,
)
from .backend import (
    Backend,
    InsufficientCredits,
    JobNotFound,
    JobSpec,
    JobView,
    Phase,
    QuotaExceeded,
)
from .inputs import InputError, decode_data_uri, decode_image, is_data_uri

PROVIDER = "aimlapi"

LEGACY_PATH = "/v2/generate/video/runway/generation"
UNIVERSAL_PATH = "/v2/video/generations"

MAX_PROMPT = 1000
ASPECT_RANGE = (0.5, 2.0)
MAX_IMAGE_BYTES = 20 * 1024 * 1024
DURATIONS = (5, 10)


@dataclass(frozen=True)
class ModelRules:
    ratios: dict[str, tuple[int, int]]
    last_frame: bool  # legacy `last_image_url` accepted


MODELS: dict[str, ModelRules] = {
    "runway/gen4_turbo": ModelRules(
        ratios={
            "16:9": (1280, 720),
            "9:16": (720, 1280),
            "1:1": (960, 960),
            "4:3": (1104, 832),
            "3:4": (832, 1104),
            "21:9": (1584, 672),
        },
        last_frame=False,
    ),
    "gen3a_turbo": ModelRules(
        ratios={"16:9": (1280, 768), "9:16": (768, 1280)},
        last_frame=True,
    ),
}
#: Plausible but wrong ids, rejected with a hint (AIMLAPI's schema enum is exact).
WRONG_IDS = {"runway/gen3a_turbo": "gen3a_turbo", "gen4_turbo": "runway/gen4_turbo"}

#: Fields that belong to the other route: sending them is a validation error, not ignored.
LEGACY_ONLY = ("ratio", "last_image_url")
UNIVERSAL_ONLY = ("aspect_ratio", "tail_image_url")

STATUS_NAMES = {
    Phase.WAITING: "waiting",
    Phase.QUEUED: "queued",
    Phase.RUNNING: "generating",
    Phase.SUCCEEDED: "completed",
    Phase.FAILED: "error",  # or config.aimlapi_failure_status
    Phase.CANCELLED: "error",
}

FAILURE_MESSAGES = {
    "fail_marker": "Your request was rejected by the provider's content moderation.",
    "unsafe_input": "Your request was rejected by the provider's content moderation.",
    "unsafe_output": "The generated video was rejected by the provider's content moderation.",
    "internal_marker": "The provider failed to generate the video (internal error).",
}
FAILURE_NAMES = {
    "fail_marker": "ContentModerationError",
    "unsafe_input": "ContentModerationError",
    "unsafe_output": "ContentModerationError",
    "internal_marker": "InternalError",
}
OUT_OF_CREDITS = (
    "You've run out of credits. Please top up your balance or update your payment method "
    "to continue."
)
LOW_BALANCE_THRESHOLD = 10_000


def error_body(status: int, message: str, path: str, **extra: Any) -> dict[str, Any]:
    return {
        "message": message,
        "path": path,
        "requestId": str(uuid.uuid4()),
        "statusCode": status,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace(
            "+00:00", "Z"
        ),
        **extra,
    }


def error_response(
    status: int, message: str, *, path: str = "", headers: dict[str, str] | None = None
) -> Response:
    """AIMLAPI's error shape."""
    return JSONResponse(error_body(status, message, path), status_code=status, headers=headers)


def validate(body: dict[str, Any], *, legacy: bool) -> tuple[str, JobSpec]:
    """Check a body for one of the two routes; returns (canonical model, spec).

    Raises:
        FieldError: naming the first bad field.
    """
    model = body.get("model")
    if model is None:
        raise FieldError("model", "is required")
    if isinstance(model, str) and model in WRONG_IDS:
        raise FieldError("model", f"unknown model {model!r}; AIMLAPI's id is {WRONG_IDS[model]!r}")
    if model not in MODELS:
        raise FieldError("model", f"must be one of {', '.join(MODELS)}; got {model!r}")
    rules = MODELS[model]
    for name in UNIVERSAL_ONLY if legacy else LEGACY_ONLY:
        if name in body:
            raise FieldError(name, "is not a field of this endpoint")
    prompt = get_string(body, "prompt", required=False, max_utf16=MAX_PROMPT) or ""
    image = get_image_ref(body, "image_url", required=True, allow_data=True)
    last_name = "last_image_url" if legacy else "tail_image_url"
    if legacy and not rules.last_frame and body.get(last_name) is not None:
        raise FieldError(last_name, f"is not supported by {model}")
    last = get_image_ref(body, last_name, required=False, allow_data=True)
    ratio_name = "ratio" if legacy else "aspect_ratio"
    ratio = get_choice(body, ratio_name, rules.ratios, default="16:9")
    duration = get_choice(body, "duration", DURATIONS, default=5)
    seed = get_int(body, "seed", low=0, high=MAX_SEED)
    for name, reference in ((("image_url", image), (last_name, last))):
        if reference is not None and is_data_uri(reference):
            _check_data_image(name, reference)
    width, height = rules.ratios[ratio]
    spec = JobSpec(
        kind="video",
        prompt=prompt,
        seed=seed or 0,
        width=width,
        height=height,
        duration=float(duration),
        image=image,
        last_image=last,
        max_image_bytes=MAX_IMAGE_BYTES,
        aspect_range=ASPECT_RANGE,
        signed_outputs=True,
    )
    return model, spec


def _check_data_image(name: str, reference: str) -> None:
    try:
        _, data = decode_data_uri(reference)
        loaded = decode_image(data, max_bytes=MAX_IMAGE_BYTES)
    except InputError as exc:
        raise FieldError(name, str(exc)) from exc
    low, high = ASPECT_RANGE
    if not low <= loaded.aspect <= high:
        raise FieldError(
            name, f"image width/height ratio {loaded.aspect:.3f} must be between {low} and {high}"
        )


class AimlapiProtocol:
    """Parses AIMLAPI requests and shapes AIMLAPI answers over a `Backend`."""

    provider = PROVIDER

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def routes(self) -> list[Route]:
        return [
            Route(LEGACY_PATH, self.submit_legacy, methods=["POST"], name="aimlapi.submit"),
            Route(LEGACY_PATH, self.status_legacy, methods=["GET"], name="aimlapi.status"),
            Route(UNIVERSAL_PATH, self.submit_universal, methods=["POST"], name="aimlapi.submit"),
            Route(UNIVERSAL_PATH, self.status_universal, methods=["GET"], name="aimlapi.status"),
            Route("/v2/billing", self.billing, methods=["GET"], name="aimlapi.billing"),
        ]

    async def billing(self, request: Request) -> Response:
        key = self._authorize(request)
        if isinstance(key, Response):
            return key
        balance = self.backend.balance(PROVIDER, key)
        return JSONResponse({
            "balance": int(balance),
            "lowBalance": balance < LOW_BALANCE_THRESHOLD,
            "lowBalanceThreshold": LOW_BALANCE_THRESHOLD,
            "lastUpdated": datetime.now(timezone.utc).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "autoDebitStatus": "disabled",
            "status": "current",
            "statusExplanation": "Balance is current and up to date",
        })

    def _error(self, request: Request, status: int, message: str, **extra: Any) -> Response:
        self.backend.record_error(PROVIDER, status)
        return JSONResponse(error_body(status, message, request.url.path, **extra),
                            status_code=status)

    def _authorize(self, request: Request) -> str | Response:
        key = bearer_token(request)
        if not key:
            return self._error(request, 401, "Unauthorized: missing Bearer token")
        if not self.backend.key_allowed(key):
            return self._error(request, 401, "Unauthorized: invalid API key")
        return key

    async def _submit(self, request: Request, *, legacy: bool) -> Response:
        key = self._authorize(request)
        if isinstance(key, Response):
            return key
        try:
            body = await read_json_object(request)
            # data URIs are decoded to check the image: off the event loop
            model, spec = await run_in_threadpool(validate, body, legacy=legacy)
        except FieldError as exc:
            field = exc.field or "body"
            return self._error(
                request,
                400,
                "Body validation error!",
                detail=str(exc),
                meta=[{"path": [field], "message": exc.message}],
            )
        try:
            job = self.backend.submit(
                PROVIDER, model, key, body, spec, route="legacy" if legacy else "universal"
            )
        except InsufficientCredits as exc:
            return self._error(request, 403, OUT_OF_CREDITS, detail=str(exc))
        except QuotaExceeded as exc:
            return self._error(request, 429, f"Too many requests: {exc}")
        return JSONResponse({"id": job.id, "status": "queued"})

    async def submit_legacy(self, request: Request) -> Response:
        return await self._submit(request, legacy=True)

    async def submit_universal(self, request: Request) -> Response:
        return await self._submit(request, legacy=False)

    def _lookup(self, request: Request) -> JobView | Response:
        key = self._authorize(request)
        if isinstance(key, Response):
            return key
        generation_id = request.query_params.get("generation_id")
        if not generation_id:
            return self._error(
                request, 400, "Query validation error!", detail="generation_id: is required"
            )
        try:
            return self.backend.lookup(PROVIDER, generation_id, count="status")
        except JobNotFound:
            return self._error(request, 404, f"Generation {generation_id} not found")

    def _status(self, view: JobView) -> str:
        if view.phase in (Phase.FAILED, Phase.CANCELLED):
            return self.backend.config.aimlapi_failure_status
        return STATUS_NAMES[view.phase]

    def _failure_message(self, view: JobView) -> str:
        if view.failure is None:
            return "Generation was cancelled."
        return FAILURE_MESSAGES.get(view.failure.code, view.failure.message)

    def _video_url(self, request: Request, view: JobView) -> str:
        return self.backend.media_url(
            base_url(request),
            view.job.media_ids[0],
            signed=True,
            expired=view.job.expire_outputs,
        )

    async def status_legacy(self, request: Request) -> Response:
        view = self._lookup(request)
        if isinstance(view, Response):
            return view
        body: dict[str, Any] = {"id": view.id, "status": self._status(view)}
        if view.phase is Phase.SUCCEEDED:
            body["video"] = [self._video_url(request, view)]
        elif view.phase.terminal:
            body["error"] = self._failure_message(view)
        return JSONResponse(body)

    async def status_universal(self, request: Request) -> Response:
        view = self._lookup(request)
        if isinstance(view, Response):
            return view
        body: dict[str, Any] = {"id": view.id, "status": self._status(view)}
        if view.phase is Phase.SUCCEEDED:
            body["video"] = {"url": self._video_url(request, view)}
            credits = int(self.backend.charged(view.job))
            body["meta"] = {"usage": {"credits_used": credits}}
        elif view.phase.terminal:
            name = FAILURE_NAMES.get(view.failure.code if view.failure else "", "GenerationError")
            body["error"] = {"name": name, "message": self._failure_message(view)}
            body["meta"] = {"usage": {"credits_used": int(self.backend.charged(view.job))}}
        return JSONResponse(body)
