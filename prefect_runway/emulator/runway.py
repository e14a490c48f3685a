"""Runway's own API (api.dev.runwayml.com, `runwayml` SDK 5.24.0).

Routes (auth: `Authorization: Bearer <key>` and `X-Runway-Version: 2024-11-06`):

    POST   /v1/image_to_video  {model, promptImage, promptText, ratio, duration, seed}
                               -> {id, estimatedCost: {credits}}
    POST   /v1/text_to_image   {model: gen4_image, promptText, ratio, referenceImages, seed}
                               -> {id, estimatedCost: {credits}}
    GET    /v1/tasks/{id}      -> {id, status, createdAt, estimatedCost | cost, progress?,
                                   output? (fresh signed URLs on every call), failure?,
                                   failureCode?}
    DELETE /v1/tasks/{id}      -> 204: cancels a PENDING/THROTTLED/RUNNING task (it then
                                   reads CANCELLED) or deletes a finished one (then 404)

Statuses PENDING, THROTTLED (more than `runway_concurrency` tasks of the key in flight),
RUNNING, SUCCEEDED, FAILED, CANCELLED. Errors are `{"error": "..."}` (validation errors add
`issues`): 400 bad body, missing/unknown `X-Runway-Version`, or not enough credits; 401
bad key; 404 unknown task. Output URLs are signed; once `output_url_ttl` has passed they
answer 403 - fetch the task again for fresh ones.

Validation tables follow the SDK's type hints (`types/image_to_video_create_params.py`,
`types/text_to_image_create_params.py`): gen4_turbo requires `ratio` (six literals) and takes
only `position: "first"` in a promptImage list; gen4_image requires `ratio` (16 literals).
SDK 5.24.0 no longer lists gen3a_turbo; its rules come from runwayml 4.18.0's `Gen3aTurbo`:
`promptText` required, ratio 1280:768 or 768:1280 (optional; default 1280:768 here), duration
5 or 10, promptImage positions first/last. Durations are 5 or 10 for both models (the
gen4_turbo type says only `int`; 5/10 is Runway's documented set), default 10.

Development exception: `https://` is required, but `http://` is accepted for loopback hosts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._common import (
    MAX_SEED,
    FieldError,
    base_url,
    bearer_token,
    check_image_ref,
    get_choice,
    get_int,
    get_string,
    read_json_object,
    size_of_ratio,
)
from .backend import Backend, InsufficientCredits, JobNotFound, JobSpec, JobView, Phase
from .inputs import InputError, decode_data_uri, is_data_uri

PROVIDER = "runway"
API_VERSION = "2024-11-06"

MAX_PROMPT = 1000
MAX_DATA_URI_BYTES = 5 * 1024 * 1024
MAX_URL_IMAGE_BYTES = 16 * 1024 * 1024
MAX_REFERENCE_IMAGES = 3
TAG = re.compile(r"^[A-Za-z][A-Za-z0-9_]{2,15}$")
DURATIONS = (5, 10)
DEFAULT_DURATION = 10


@dataclass(frozen=True)
class VideoModel:
    ratios: tuple[str, ...]
    ratio_required: bool
    default_ratio: str | None
    positions: tuple[str, ...]
    prompt_required: bool


VIDEO_MODELS: dict[str, VideoModel] = {
    "gen4_turbo": VideoModel(
        ratios=("1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672"),
        ratio_required=True,
        default_ratio=None,
        positions=("first",),
        prompt_required=False,
    ),
    "gen3a_turbo": VideoModel(
        ratios=("1280:768", "768:1280"),
        ratio_required=False,
        default_ratio="1280:768",
        positions=("first", "last"),
        prompt_required=True,
    ),
}

IMAGE_MODELS: dict[str, tuple[str, ...]] = {
    "gen4_image": (
        "1024:1024", "1080:1080", "1168:880", "1360:768", "1440:1080", "1080:1440",
        "1808:768", "1920:1080", "1080:1920", "2112:912", "1280:720", "720:1280",
        "720:720", "960:720", "720:960", "1680:720",
    ),
}

STATUS_NAMES = {
    Phase.WAITING: "THROTTLED",
    Phase.QUEUED: "PENDING",
    Phase.RUNNING: "RUNNING",
    Phase.SUCCEEDED: "SUCCEEDED",
    Phase.FAILED: "FAILED",
    Phase.CANCELLED: "CANCELLED",
}

#: (failure, failureCode) by the backend's failure code.
FAILURES = {
    "fail_marker": ("Your prompt did not pass content moderation.", "SAFETY.INPUT.TEXT"),
    "input": (None, "ASSET.INVALID"),
    "internal": (None, "INTERNAL"),
}


def error_response(
    status: int, message: str, *, path: str = "", headers: dict[str, str] | None = None
) -> Response:
    """Runway's error shape: `{"error": "..."}`."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _check_uri(name: str, value: Any) -> str:
    uri = check_image_ref(name, value, allow_data=True)
    if is_data_uri(uri):
        try:
            _, data = decode_data_uri(uri)
        except InputError as exc:
            raise FieldError(name, str(exc)) from exc
        if len(data) > MAX_DATA_URI_BYTES:
            raise FieldError(name, "data URIs are limited to 5 MB")
    return uri


def validate_image_to_video(body: dict[str, Any]) -> tuple[str, JobSpec]:
    """Check an image_to_video body; returns (model, spec).

    Raises:
        FieldError: naming the first bad field.
    """
    model = get_choice(body, "model", VIDEO_MODELS, required=True)
    rules = VIDEO_MODELS[model]
    prompt_image = body.get("promptImage")
    first: str | None = None
    last: str | None = None
    if prompt_image is None:
        raise FieldError("promptImage", "is required")
    if isinstance(prompt_image, str):
        first = _check_uri("promptImage", prompt_image)
    elif isinstance(prompt_image, list) and prompt_image:
        seen: set[str] = set()
        for index, item in enumerate(prompt_image):
            name = f"promptImage[{index}]"
            if not isinstance(item, dict):
                raise FieldError(name, "must be an object {uri, position}")
            position = item.get("position")
            if position not in rules.positions:
                raise FieldError(
                    f"{name}.position", f"must be one of {', '.join(rules.positions)}"
                )
            if position in seen:
                raise FieldError(f"{name}.position", f"{position!r} given twice")
            seen.add(position)
            uri = _check_uri(f"{name}.uri", item.get("uri"))
            if position == "first":
                first = uri
            else:
                last = uri
        if first is None:
            raise FieldError("promptImage", "needs an image with position 'first'")
    else:
        raise FieldError("promptImage", "must be a URI or a non-empty list of {uri, position}")
    prompt = get_string(
        body, "promptText", required=rules.prompt_required, max_utf16=MAX_PROMPT
    ) or ""
    ratio = get_choice(
        body, "ratio", rules.ratios, default=rules.default_ratio, required=rules.ratio_required
    )
    duration = get_choice(body, "duration", DURATIONS, default=DEFAULT_DURATION)
    seed = get_int(body, "seed", low=0, high=MAX_SEED)
    width, height = size_of_ratio(ratio)
    return model, JobSpec(
        kind="video",
        prompt=prompt,
        seed=seed or 0,
        width=width,
        height=height,
        duration=float(duration),
        image=first,
        last_image=last,
        max_image_bytes=MAX_URL_IMAGE_BYTES,
        signed_outputs=True,
    )


def validate_text_to_image(body: dict[str, Any]) -> tuple[str, JobSpec]:
    """Check a text_to_image body; returns (model, spec).

    Raises:
        FieldError: naming the first bad field.
    """
    model = get_choice(body, "model", IMAGE_MODELS, required=True)
    prompt = get_string(body, "promptText", required=True, max_utf16=MAX_PROMPT)
    ratio = get_choice(body, "ratio", IMAGE_MODELS[model], required=True)
    references = body.get("referenceImages")
    if references is not None:
        if not isinstance(references, list):
            raise FieldError("referenceImages", "must be a list of {uri, tag}")
        if len(references) > MAX_REFERENCE_IMAGES:
            raise FieldError("referenceImages", f"takes at most {MAX_REFERENCE_IMAGES} images")
        for index, item in enumerate(references):
            name = f"referenceImages[{index}]"
            if not isinstance(item, dict):
                raise FieldError(name, "must be an object {uri, tag}")
            _check_uri(f"{name}.uri", item.get("uri"))
            tag = item.get("tag")
            if tag is not None and (not isinstance(tag, str) or not TAG.match(tag)):
                raise FieldError(
                    f"{name}.tag",
                    "must be 3-16 characters: a letter, then letters, digits or underscores",
                )
    seed = get_int(body, "seed", low=0, high=MAX_SEED)
    width, height = size_of_ratio(ratio)
    return model, JobSpec(
        kind="still",
        prompt=prompt or "",
        seed=seed or 0,
        width=width,
        height=height,
        signed_outputs=True,
    )


class RunwayProtocol:
    """Parses Runway requests and shapes Runway answers over a `Backend`."""

    provider = PROVIDER

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def routes(self) -> list[Route]:
        return [
            Route("/v1/image_to_video", self.image_to_video, methods=["POST"],
                  name="runway.submit"),
            Route("/v1/text_to_image", self.text_to_image, methods=["POST"],
                  name="runway.submit"),
            Route("/v1/tasks/{task_id}", self.get_task, methods=["GET"], name="runway.status"),
            Route("/v1/tasks/{task_id}", self.delete_task, methods=["DELETE"],
                  name="runway.cancel"),
        ]

    def _error(self, status: int, message: str, **extra: Any) -> Response:
        self.backend.record_error(PROVIDER, status)
        return JSONResponse({"error": message, **extra}, status_code=status)

    def _authorize(self, request: Request) -> str | Response:
        key = bearer_token(request)
        if not key:
            return self._error(401, "Missing or malformed Authorization header")
        if not self.backend.key_allowed(key):
            return self._error(401, "Invalid API key")
        version = request.headers.get("x-runway-version")
        if not version:
            return self._error(400, "Missing X-Runway-Version header")
        if version != API_VERSION:
            return self._error(400, f"Unsupported X-Runway-Version {version!r}")
        return key

    async def _submit(self, request: Request, validate) -> Response:
        key = self._authorize(request)
        if isinstance(key, Response):
            return key
        try:
            body = await read_json_object(request)
            model, spec = validate(body)
        except FieldError as exc:
            field = exc.field or "body"
            return self._error(
                400,
                f"Validation of body failed: {exc}",
                issues=[{"path": field.replace("]", "").replace("[", ".").split("."),
                         "message": exc.message}],
            )
        try:
            job = self.backend.submit(PROVIDER, model, key, body, spec)
        except InsufficientCredits:
            return self._error(400, "You do not have enough credits to run this task.")
        return JSONResponse({"id": job.id, "estimatedCost": {"credits": spec.cost}})

    async def image_to_video(self, request: Request) -> Response:
        return await self._submit(request, validate_image_to_video)

    async def text_to_image(self, request: Request) -> Response:
        return await self._submit(request, validate_text_to_image)

    def _find(self, request: Request, count: str | None) -> JobView | Response:
        key = self._authorize(request)
        if isinstance(key, Response):
            return key
        task_id = request.path_params["task_id"]
        try:
            return self.backend.lookup(PROVIDER, task_id, count=count)
        except JobNotFound:
            return self._error(404, "Task not found")

    async def get_task(self, request: Request) -> Response:
        view = self._find(request, "status")
        if isinstance(view, Response):
            return view
        status = STATUS_NAMES[view.phase]
        body: dict[str, Any] = {"id": view.id, "status": status, "createdAt": view.created_iso}
        cost = view.job.spec.cost
        if not view.phase.terminal:
            body["estimatedCost"] = {"credits": cost}
        if view.phase is Phase.RUNNING:
            body["progress"] = view.progress
        if view.phase is Phase.SUCCEEDED:
            body["cost"] = {"credits": int(cost)}
            base = base_url(request)
            body["output"] = [
                self.backend.media_url(
                    base, media_id, signed=True, expired=view.job.expire_outputs
                )
                for media_id in view.job.media_ids
            ]
        elif view.phase is Phase.FAILED:
            assert view.failure is not None
            message, code = FAILURES.get(view.failure.code, (None, "INTERNAL"))
            body["cost"] = {"credits": 0}
            body["failure"] = message or view.failure.message
            body["failureCode"] = code
        elif view.phase is Phase.CANCELLED:
            body["cost"] = {"credits": 0}
        return JSONResponse(body)

    async def delete_task(self, request: Request) -> Response:
        key = self._authorize(request)
        if isinstance(key, Response):
            return key
        task_id = request.path_params["task_id"]
        try:
            self.backend.cancel(PROVIDER, task_id)
        except JobNotFound:
            return self._error(404, "Task not found")
        return Response(status_code=204)
