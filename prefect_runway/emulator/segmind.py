"""Segmind's serverless protocol (v2 async and v1 sync routes, credits)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._common import (
    MAX_SEED,
    FieldError,
    base_url,
    check_image_ref,
    get_choice,
    get_image_ref,
    get_int,
    get_string,
    read_json_object,
    size_of_ratio,
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

PROVIDER = "segmind"

#: Input images: JPEG, PNG or WebP, at most 16 MB.
MAX_IMAGE_BYTES = 16 * 1024 * 1024

GEN4_TURBO_RATIOS = ("1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672")


@dataclass(frozen=True)
class SlugRules:
    """What one slug accepts."""

    kind: str  # "still" or "video"
    ratios: dict[str, tuple[int, int]]
    default_ratio: str
    seed_range: tuple[int, int]


def _exact(ratios: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    return {ratio: size_of_ratio(ratio) for ratio in ratios}


SLUGS: dict[str, SlugRules] = {
    "runway-gen4-turbo": SlugRules(
        kind="video",
        ratios=_exact(GEN4_TURBO_RATIOS),
        default_ratio="1280:720",
        seed_range=(1, 99999),
    ),
    "runway-gen3-alphaturbo": SlugRules(
        kind="video",
        ratios={"16:9": (1280, 768), "9:16": (768, 1280)},
        default_ratio="16:9",
        seed_range=(1, 99999),
    ),
    "runway-gen4-image": SlugRules(
        kind="still",
        ratios=_exact(GEN4_TURBO_RATIOS + ("1920:1080", "1080:1920")),
        default_ratio="1280:720",
        seed_range=(0, MAX_SEED),  # not documented for this slug; Runway's range
    ),
}

DURATIONS = (5, 10)
MAX_REFERENCE_IMAGES = 3

STATUS_NAMES = {
    Phase.WAITING: "QUEUED",
    Phase.QUEUED: "QUEUED",
    Phase.RUNNING: "PROCESSING",
    Phase.SUCCEEDED: "COMPLETED",
    Phase.FAILED: "FAILED",
    Phase.CANCELLED: "FAILED",
}

FAILURE_MESSAGES = {
    "fail_marker": "Request blocked by content moderation (RAI): the prompt was flagged.",
    "unsafe_input": "Request blocked by content moderation (RAI): the prompt was flagged.",
    "unsafe_output": "Output blocked by content moderation (RAI): the result was flagged.",
    "internal_marker": "Internal server error while generating the output.",
}


def error_response(
    status: int, message: str, *, path: str = "", headers: dict[str, str] | None = None
) -> Response:
    """Segmind's error shape: `{"error": "..."}`."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def validate(slug: str, body: dict[str, Any]) -> JobSpec:
    """Check a body against the slug's documented parameters.

    Raises:
        FieldError: naming the first bad field.
    """
    rules = SLUGS[slug]
    prompt = get_string(body, "promptText", required=True)
    ratio = get_choice(body, "ratio", rules.ratios, default=rules.default_ratio)
    low, high = rules.seed_range
    seed = get_int(body, "seed", low=low, high=high, allow_numeric_string=True)
    if seed is None:
        seed = 0
    width, height = rules.ratios[ratio]
    if rules.kind == "video":
        image = get_image_ref(body, "promptImage", required=True, allow_data=False)
        duration = get_choice(body, "duration", DURATIONS, default=5, allow_numeric_string=True)
        return JobSpec(
            kind="video",
            prompt=prompt or "",
            seed=seed,
            width=width,
            height=height,
            duration=float(duration),
            image=image,
            max_image_bytes=MAX_IMAGE_BYTES,
        )
    references = body.get("referenceImages")
    if references is None:
        raise FieldError("referenceImages", "is required")
    if not isinstance(references, list) or not references:
        raise FieldError("referenceImages", "must be a non-empty list of {uri, tag}")
    if len(references) > MAX_REFERENCE_IMAGES:
        raise FieldError("referenceImages", f"takes at most {MAX_REFERENCE_IMAGES} images")
    for index, item in enumerate(references):
        name = f"referenceImages[{index}]"
        if not isinstance(item, dict):
            raise FieldError(name, "must be an object {uri, tag}")
        tag = item.get("tag")
        if not isinstance(tag, str) or not tag:
            raise FieldError(f"{name}.tag", "is required")
        if item.get("uri") is not None:
            check_image_ref(f"{name}.uri", item["uri"], allow_data=False)
    return JobSpec(kind="still", prompt=prompt or "", seed=seed, width=width, height=height)


class SegmindProtocol:
    """Parses Segmind requests and shapes Segmind answers over a `Backend`."""

    provider = PROVIDER

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def routes(self) -> list[Route]:
        return [
            Route("/v2/requests/{request_id}/status", self.status, methods=["GET"],
                  name="segmind.status"),
            Route("/v2/requests/{request_id}", self.result, methods=["GET"],
                  name="segmind.result"),
            Route("/v2/{slug}", self.submit, methods=["POST"], name="segmind.submit"),
            Route("/v1/get-user-credits", self.user_credits, methods=["GET"],
                  name="segmind.credits"),
            Route("/v1/{slug}", self.run_sync, methods=["POST"], name="segmind.sync"),
        ]

    # -- helpers -----------------------------------------------------------------------

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        self.backend.record_error(PROVIDER, status)
        return error_response(status, message, headers=headers)

    def _authorize(self, request: Request) -> str | Response:
        key = request.headers.get("x-api-key")
        if not key:
            return self._error(401, "Unauthorized: missing x-api-key header")
        if not self.backend.key_allowed(key):
            return self._error(401, "Unauthorized: invalid API key")
        return key

    async def _accept(self, request: Request) -> tuple[str, Any] | Response:
        """Authorise, parse and validate a submission; returns (slug, job) or an error."""
        key = self._authorize(request)
        if isinstance(key, Response):
            return key
        slug = request.path_params["slug"]
        if slug not in SLUGS:
            return self._error(404, f"Model not found: {slug}")
        try:
            body = await read_json_object(request)
            spec = validate(slug, body)
        except FieldError as exc:
            return self._error(400, f"Invalid parameter {exc.field}: {exc.message}"
                               if exc.field else exc.message)
        try:
            job = self.backend.submit(PROVIDER, slug, key, body, spec)
        except InsufficientCredits as exc:
            return self._error(
                406, f"Insufficient credits: Not enough credits to process request ({exc})"
            )
        except QuotaExceeded as exc:
            return self._error(429, f"Too many requests: {exc}", headers={"Retry-After": "60"})
        return slug, job

    def _urls(self, request: Request, request_id: str) -> dict[str, str]:
        base = base_url(request)
        status_url = f"{base}/v2/requests/{request_id}/status"
        return {"status_url": status_url, "response_url": f"{base}/v2/requests/{request_id}"}

    def _failure_message(self, view: JobView) -> str:
        if view.phase is Phase.CANCELLED:
            return "Request was cancelled."
        assert view.failure is not None
        return FAILURE_MESSAGES.get(view.failure.code, view.failure.message)

    def _lookup(self, request: Request, count: str) -> JobView | Response:
        key = self._authorize(request)
        if isinstance(key, Response):
            return key
        request_id = request.path_params["request_id"]
        try:
            return self.backend.lookup(PROVIDER, request_id, count=count)
        except JobNotFound:
            return self._error(404, f"Request {request_id} not found or expired")

    # -- routes ------------------------------------------------------------------------

    async def submit(self, request: Request) -> Response:
        accepted = await self._accept(request)
        if isinstance(accepted, Response):
            return accepted
        _, job = accepted
        urls = self._urls(request, job.id)
        return JSONResponse(
            {
                "request_id": job.id,
                "status": "QUEUED",
                "poll_url": urls["status_url"],
                **urls,
            },
            headers={"x-remaining-credits": self._remaining(job.api_key)},
        )

    def _remaining(self, api_key: str) -> str:
        return repr(round(self.backend.balance(PROVIDER, api_key), 6))  # not %g: 6 digits only

    async def user_credits(self, request: Request) -> Response:
        key = self._authorize(request)
        if isinstance(key, Response):
            return key
        balance = self.backend.balance(PROVIDER, key)
        spent = max(0.0, self.backend.initial_balance(PROVIDER) - balance)
        return JSONResponse(
            {"credits": round(balance, 6), "free-credits": 0.0,
             "credits_used": round(spent, 6), "currency": "USD"}
        )

    async def status(self, request: Request) -> Response:
        view = self._lookup(request, "status")
        if isinstance(view, Response):
            return view
        status = STATUS_NAMES[view.phase]
        body: dict[str, Any] = {
            "status": status,
            "request_id": view.id,
            **self._urls(request, view.id),
            "metrics": self._metrics(view),
        }
        if status == "FAILED":
            body["error"] = self._failure_message(view)
            return self._error_body(body)
        return JSONResponse(body)

    async def result(self, request: Request) -> Response:
        view = self._lookup(request, "result")
        if isinstance(view, Response):
            return view
        status = STATUS_NAMES[view.phase]
        body: dict[str, Any] = {
            "status": status,
            "request_id": view.id,
            "metrics": self._metrics(view),
        }
        if status == "FAILED":
            body["error"] = self._failure_message(view)
            return self._error_body(body)
        if status != "COMPLETED":
            return JSONResponse(body, status_code=202)
        body["output"] = self._output_url(request, view)
        return JSONResponse(body)

    async def run_sync(self, request: Request) -> Response:
        accepted = await self._accept(request)
        if isinstance(accepted, Response):
            return accepted
        _, job = accepted
        deadline = job.latency + 120.0
        waited = 0.0
        while True:
            view = self.backend.lookup(PROVIDER, job.id)
            if view.phase.terminal:
                break
            if waited > deadline:
                return self._error(504, "Request timed out")
            await asyncio.sleep(0.02)
            waited += 0.02
        if view.phase is not Phase.SUCCEEDED:
            return self._error(422, self._failure_message(view))
        entry = self.backend.media_for_download(job.media_ids[0], "")
        assert entry.data is not None
        self.backend.record(PROVIDER, "downloads")
        self.backend.record(PROVIDER, "download_bytes", len(entry.data))
        return Response(
            entry.data,
            media_type=entry.content_type,
            headers={
                "x-remaining-credits": self._remaining(job.api_key),
                "x-request-id": job.id,
            },
        )

    def _metrics(self, view: JobView) -> dict[str, Any]:
        if view.phase in (Phase.WAITING, Phase.QUEUED):
            return {}
        return {"inference_time": view.inference_time}

    def _error_body(self, body: dict[str, Any]) -> Response:
        self.backend.record_error(PROVIDER, 422)
        return JSONResponse(body, status_code=422)

    def _output_url(self, request: Request, view: JobView) -> str:
        return self.backend.media_url(base_url(request), view.job.media_ids[0], signed=False)
