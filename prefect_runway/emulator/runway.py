"""Runway's own API (``api.dev.runwayml.com``, as the ``runwayml`` SDK speaks it)."""

from __future__ import annotations

import base64
import email.parser
import email.policy
import inspect
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import media, sdk_spec
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
from .backend import (
    MAX_UPLOAD_BYTES,
    Backend,
    InsufficientCredits,
    JobNotFound,
    JobSpec,
    JobView,
    Phase,
    QuotaExceeded,
    UploadError,
)
from .inputs import InputError, decode_data_uri, is_data_uri

PROVIDER = "runway"
API_VERSION = "2024-11-06"

MAX_PROMPT = 1000
MAX_DATA_URI_BYTES = 5 * 1024 * 1024
MAX_URL_IMAGE_BYTES = 16 * 1024 * 1024
MAX_REFERENCE_IMAGES = 3
TAG = re.compile(r"^[A-Za-z][A-Za-z0-9_]{2,15}$")
DURATIONS = tuple(range(2, 11))
DEFAULT_DURATION = 10
UPLOAD_SCHEME = "runway://"
MODERATION_THRESHOLDS = ("auto", "low")

#: Models Runway no longer serves: model -> (retired on, replacements).
RETIRED = {
    "gen3a_turbo": ("2026-07-30", ("gen4_turbo", "gen4.5")),
    "gen4_aleph": ("2026-07-30", ("gen4.5",)),
}


@dataclass(frozen=True)
class VideoModel:
    ratios: tuple[str, ...]
    ratio_required: bool
    default_ratio: str | None
    positions: tuple[str, ...]
    prompt_required: bool
    duration_required: bool = False
    durations: tuple[int, ...] = DURATIONS


VIDEO_MODELS: dict[str, VideoModel] = {
    "gen4_turbo": VideoModel(
        ratios=("1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672"),
        ratio_required=True,
        default_ratio=None,
        positions=("first",),
        prompt_required=False,
    ),
    "gen3a_turbo": VideoModel(  # retired; served only when `runway_retired` omits it
        ratios=("1280:768", "768:1280"),
        ratio_required=False,
        default_ratio="1280:768",
        positions=("first", "last"),
        prompt_required=True,
        duration_required=False,
        durations=(5, 10),
    ),
    "gen4.5": VideoModel(
        ratios=("1280:720", "720:1280", "1104:832", "960:960", "832:1104", "1584:672"),
        ratio_required=True,
        default_ratio=None,
        positions=("first",),
        prompt_required=True,
        duration_required=True,
    ),
}

GEN4_IMAGE_RATIOS = (
    "1024:1024", "1080:1080", "1168:880", "1360:768", "1440:1080", "1080:1440",
    "1808:768", "1920:1080", "1080:1920", "2112:912", "1280:720", "720:1280",
    "720:720", "960:720", "720:960", "1680:720",
)
IMAGE_MODELS: dict[str, tuple[str, ...]] = {
    "gen4_image": GEN4_IMAGE_RATIOS,
    "gen4_image_turbo": GEN4_IMAGE_RATIOS,
}
#: Image models whose referenceImages are required (1-3).
REFERENCES_REQUIRED = frozenset({"gen4_image_turbo"})

STATUS_NAMES = {
    Phase.WAITING: "THROTTLED",
    Phase.QUEUED: "PENDING",
    Phase.RUNNING: "RUNNING",
    Phase.SUCCEEDED: "SUCCEEDED",
    Phase.FAILED: "FAILED",
    Phase.CANCELLED: "CANCELLED",
}

#: (failure, failureCode) by the backend's failure code ("{kind}": IMAGE or VIDEO).
FAILURES = {
    "fail_marker": ("Your prompt did not pass content moderation.", "SAFETY.INPUT.TEXT"),
    "unsafe_input": ("Your prompt did not pass content moderation.", "SAFETY.INPUT.TEXT"),
    "unsafe_output": (
        "The generated output did not pass content moderation.", "SAFETY.OUTPUT.{kind}"
    ),
    "internal_marker": ("An internal error occurred while generating the output.",
                        "INTERNAL.BAD_OUTPUT"),
    "input": (None, "ASSET.INVALID"),
    "internal": (None, "INTERNAL"),
}


class RetiredModel(FieldError):
    """A model Runway no longer serves (answered 400 with the message alone)."""


def retired_message(model: str) -> str:
    """Runway's answer to a retired model."""
    date, replacements = RETIRED.get(model, ("an earlier date", ("gen4_turbo",)))
    return (
        f"Model {model} has been retired and is no longer available (since {date}). "
        f"Use {' or '.join(replacements)} instead."
    )


def error_response(
    status: int, message: str, *, path: str = "", headers: dict[str, str] | None = None
) -> Response:
    """Runway's error shape: `{"error": "..."}`."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _check_uri(name: str, value: Any) -> str:
    if isinstance(value, str) and value.startswith(UPLOAD_SCHEME):
        if len(value) <= len(UPLOAD_SCHEME):
            raise FieldError(name, "is not a valid Runway upload URI")
        return value
    uri = check_image_ref(name, value, allow_data=True)
    if is_data_uri(uri):
        try:
            _, data = decode_data_uri(uri)
        except InputError as exc:
            raise FieldError(name, str(exc)) from exc
        if len(data) > MAX_DATA_URI_BYTES:
            raise FieldError(name, "data URIs are limited to 5 MB")
    return uri


def _check_model(body: dict[str, Any], models, retired) -> str:
    model = body.get("model")
    if isinstance(model, str) and model in retired:
        raise RetiredModel("model", retired_message(model))
    return get_choice(body, "model", [m for m in models if m not in retired], required=True)


def _check_moderation(body: dict[str, Any]) -> None:
    moderation = body.get("contentModeration")
    if moderation is None:
        return
    if not isinstance(moderation, dict):
        raise FieldError("contentModeration", "must be an object {publicFigureThreshold}")
    unknown = set(moderation) - {"publicFigureThreshold"}
    if unknown:
        raise FieldError(f"contentModeration.{sorted(unknown)[0]}", "is not a known field")
    try:
        get_choice(moderation, "publicFigureThreshold", MODERATION_THRESHOLDS)
    except FieldError as exc:
        raise FieldError(f"contentModeration.{exc.field}", exc.message) from exc


def upload_uris(body: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, runway:// URI) pairs of a body's image fields."""
    found: list[tuple[str, Any]] = []
    prompt_image = body.get("promptImage")
    if isinstance(prompt_image, str):
        found.append(("promptImage", prompt_image))
    elif isinstance(prompt_image, list):
        found += [(f"promptImage[{i}].uri", item.get("uri")) for i, item in
                  enumerate(prompt_image) if isinstance(item, dict)]
    if isinstance(body.get("videoUri"), str):
        found.append(("videoUri", body["videoUri"]))
    references = body.get("referenceImages")
    if isinstance(references, list):
        found += [(f"referenceImages[{i}].uri", item.get("uri")) for i, item in
                  enumerate(references) if isinstance(item, dict)]
    return [(name, uri) for name, uri in found
            if isinstance(uri, str) and uri.startswith(UPLOAD_SCHEME)]


def validate_image_to_video(
    body: dict[str, Any], retired: frozenset[str] = frozenset(RETIRED)
) -> tuple[str, JobSpec]:
    """Check an image_to_video body; returns (model, spec).

    Raises:
        FieldError: naming the first bad field.
    """
    model = _check_model(body, VIDEO_MODELS, retired)
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
    duration = get_choice(body, "duration", rules.durations, default=DEFAULT_DURATION,
                          required=rules.duration_required)
    _check_moderation(body)
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


def validate_text_to_image(
    body: dict[str, Any], retired: frozenset[str] = frozenset(RETIRED)
) -> tuple[str, JobSpec]:
    """Check a text_to_image body; returns (model, spec).

    Raises:
        FieldError: naming the first bad field.
    """
    model = _check_model(body, IMAGE_MODELS, retired)
    prompt = get_string(body, "promptText", required=True, max_utf16=MAX_PROMPT)
    ratio = get_choice(body, "ratio", IMAGE_MODELS[model], required=True)
    references = body.get("referenceImages")
    if references is None and model in REFERENCES_REQUIRED:
        raise FieldError("referenceImages", f"is required for {model} (1 to 3 images)")
    if references is not None:
        if not isinstance(references, list):
            raise FieldError("referenceImages", "must be a list of {uri, tag}")
        if not references and model in REFERENCES_REQUIRED:
            raise FieldError("referenceImages", f"needs 1 to 3 images for {model}")
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
    _check_moderation(body)
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


#: The longest video the emulator makes for a hub model whose length Runway does not bound
#: in its spec (every size bounded).
MAX_HUB_DURATION = 30
#: A hub model's length when the body gives none (or "auto").
HUB_DEFAULT_DURATION = 5
#: Output formats the emulator can really make: everything else is refused.
MADE_FORMATS = {"video": ("mp4",), "still": ("png",)}
#: Height of a video or still whose ratio is a shape (16:9) or a word (adaptive, auto_720p).
HUB_HEIGHT = 720


def hub_size(ratio: Any) -> tuple[int, int]:
    """(width, height) of a hub model's ratio: ``1280:720`` as it says; a shape (``16:9``)
    at 720 lines; a word (``adaptive``, ``auto_1080p``) or none: 1280x720."""
    if not isinstance(ratio, str) or ":" not in ratio:
        return 1280, HUB_HEIGHT
    width, height = size_of_ratio(ratio)
    if height >= 360:
        return width - width % 2, height - height % 2
    scaled = round(HUB_HEIGHT * width / height)
    return scaled - scaled % 2, HUB_HEIGHT


def validate_hub(endpoint: str, body: dict[str, Any]) -> tuple[str, JobSpec]:
    """Check a body for a model of Runway's API hub by the emulator's own table (the SDK's
    types, :mod:`.sdk_spec`); returns (model, spec).

    Raises:
        FieldError: naming the first bad field; an output format the emulator cannot make.
    """
    models = sdk_spec.table()[endpoint]
    model = get_choice(body, "model", list(models), required=True)
    kind = "still" if endpoint == "text_to_image" else "video"
    _check_spec(endpoint, kind, body)
    prompt = get_string(body, "promptText", required=False, max_utf16=MAX_PROMPT) or ""
    width, height = hub_size(body.get("ratio"))
    seed = get_int(body, "seed", low=0, high=MAX_SEED) or 0
    for index, item in enumerate(body.get("referenceImages") or ()):
        _check_uri(f"referenceImages[{index}].uri", item.get("uri"))
    if kind == "still":
        return model, JobSpec(kind="still", prompt=prompt, seed=seed, width=width,
                              height=height, signed_outputs=True)
    if endpoint == "text_to_video":  # no image: the video starts on a still of the prompt
        still = media.make_still(prompt, seed, width, height)
        first, last = "data:image/png;base64," + base64.b64encode(still).decode(), None
    else:
        first, last = _frames(body.get("promptImage"))
    duration = body.get("duration")
    if not isinstance(duration, int) or isinstance(duration, bool):  # absent, or "auto"
        duration = HUB_DEFAULT_DURATION
    if not 1 <= duration <= MAX_HUB_DURATION:
        raise FieldError("duration", f"must be between 1 and {MAX_HUB_DURATION}")
    return model, JobSpec(kind="video", prompt=prompt, seed=seed, width=width, height=height,
                          duration=float(duration), image=first, last_image=last,
                          max_image_bytes=MAX_URL_IMAGE_BYTES, signed_outputs=True)


def _check_spec(endpoint: str, kind: str, body: dict[str, Any]) -> None:
    """The body against the SDK's types for its model, and an output format the emulator
    can make."""
    sdk_spec.check(sdk_spec.table()[endpoint][body["model"]], body)
    made = MADE_FORMATS[kind]
    output_format = body.get("outputFormat")
    if output_format is not None and output_format not in made:
        raise FieldError("outputFormat", f"{output_format!r} is not available here; "
                         f"use {' or '.join(made)}")


def _frames(prompt_image: Any) -> tuple[str, str | None]:
    """The first and last frame of a (spec-checked) ``promptImage``: a URI, or a list of
    ``{uri, position}`` (entries without a position are references, not frames)."""
    if isinstance(prompt_image, str):
        return _check_uri("promptImage", prompt_image), None
    frames: dict[str, str] = {}
    for index, item in enumerate(prompt_image):
        uri = item.get("uri") if isinstance(item, dict) else item
        uri = _check_uri(f"promptImage[{index}].uri", uri)
        position = item.get("position", "reference") if isinstance(item, dict) else "reference"
        if position in frames:
            raise FieldError(f"promptImage[{index}].position", f"{position!r} given twice")
        frames[position] = uri
    if "first" not in frames:
        if "last" in frames:
            raise FieldError("promptImage", "a last frame needs a first frame")
        if "reference" not in frames:
            raise FieldError("promptImage", "needs at least one image")
        return frames["reference"], None
    return frames["first"], frames.get("last")


def _today_or_hub(endpoint: str, kind: str, today: Any, validate: Any) -> Any:
    """A route's validator: today's models by their own tables above (and the SDK's types,
    where the SDK still lists them); every other model of the SDK by its types."""

    def check(body: dict[str, Any], retired: frozenset[str] = frozenset(RETIRED)
              ) -> tuple[str, JobSpec]:
        if body.get("model") not in today and body.get("model") not in retired:
            return validate_hub(endpoint, body)
        model, spec = validate(body, retired)
        if model in sdk_spec.table()[endpoint]:
            _check_spec(endpoint, kind, body)
        return model, spec

    return check


validate_image_to_video_any = _today_or_hub(
    "image_to_video", "video", VIDEO_MODELS, validate_image_to_video)
validate_text_to_image_any = _today_or_hub(
    "text_to_image", "still", IMAGE_MODELS, validate_text_to_image)


def validate_text_to_video(
    body: dict[str, Any], retired: frozenset[str] = frozenset(RETIRED)
) -> tuple[str, JobSpec]:
    """Every text_to_video model of the SDK, by its types."""
    return validate_hub("text_to_video", body)


#: Lines (the shorter side) of an upscale by its ``resolution`` (``2k`` when none is asked).
UPSCALE_LINES = {"720p": 720, "1k": 1080, "2k": 1440, "4k": 2160}
DEFAULT_UPSCALE = "2k"
#: The NTSC rates of ``targetFramerate``; the others are whole numbers.
NTSC_RATES = {"23_98": Fraction(24000, 1001), "29_97": Fraction(30000, 1001),
              "59_94": Fraction(60000, 1001)}
#: The most a finishing step's output may hold (frames x width x height): what the emulator
#: makes in a few seconds; more is refused as an output it cannot make.
MAX_FINISH_PIXELS = 2_000_000_000


def validate_video_upscale(body: dict[str, Any]) -> tuple[str, str]:
    """Check a ``video_upscale`` body by the SDK's types and Runway's stated ranges; returns
    (model, the source video's URI)."""
    models = sdk_spec.table()["video_upscale"]
    model = get_choice(body, "model", list(models), required=True)
    sdk_spec.check(models[model], body)
    for name in ("creativity", "sharpen", "smartGrain"):  # 0-100, as Runway's docs say
        get_int(body, name, low=0, high=100)
    return model, _check_uri("videoUri", body["videoUri"])


def finish_spec(backend: Backend, model: str, body: dict[str, Any], uri: str) -> JobSpec:
    """The finishing step's job: its source video read and decoded, the output's size and
    frame rate (an upscale keeps the rate; ``enhance_frame_rate`` keeps the size)."""
    try:
        data = backend.read_input(uri, MAX_UPLOAD_BYTES)
        info = media.probe_video(data)
    except InputError as exc:
        raise FieldError("videoUri", str(exc)) from exc
    except (ValueError, OSError) as exc:  # PyAV's errors are OSErrors
        raise FieldError("videoUri", "is not a readable video") from exc
    width, height = info.width, info.height
    if model == "enhance_frame_rate":
        rate = body["targetFramerate"]
        fps = NTSC_RATES.get(rate) or Fraction(int(rate))
    else:
        scale = UPSCALE_LINES[body.get("resolution") or DEFAULT_UPSCALE] / min(width, height)
        width, height = (round(side * scale / 2) * 2 for side in (width, height))
        fps = Fraction(info.fps).limit_denominator(1001) if info.fps else Fraction(24)
    if info.duration * fps * width * height > MAX_FINISH_PIXELS:
        raise FieldError("videoUri", f"a {info.duration:g} s video at {width}x{height} and "
                         f"{float(fps):g} fps is more than the emulator makes; use a shorter "
                         "video or a lower resolution")
    return JobSpec(kind="video", prompt="", seed=0, width=width, height=height,
                   duration=info.duration, source=data, fps=fps, signed_outputs=True)


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
            Route("/v1/text_to_video", self.text_to_video, methods=["POST"],
                  name="runway.submit"),
            Route("/v1/video_upscale", self.video_upscale, methods=["POST"],
                  name="runway.submit"),
            Route("/v1/tasks/{task_id}", self.get_task, methods=["GET"], name="runway.status"),
            Route("/v1/tasks/{task_id}", self.delete_task, methods=["DELETE"],
                  name="runway.cancel"),
            Route("/v1/uploads", self.create_upload, methods=["POST"], name="runway.uploads"),
            Route("/_emulator/uploads/{upload_id}", self.receive_upload, methods=["POST"],
                  name="runway.upload"),
            Route("/v1/organization", self.organization, methods=["GET"],
                  name="runway.organization"),
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
            checked = validate(body, self.backend.config.runway_retired)
            model, spec = await checked if inspect.isawaitable(checked) else checked
            for name, uri in upload_uris(body):
                try:
                    self.backend.upload_bytes(uri, key)
                except UploadError as exc:
                    raise FieldError(name, str(exc)) from exc
        except FieldError as exc:
            field = exc.field or "body"
            return self._error(
                400,
                exc.message if isinstance(exc, RetiredModel)
                else f"Validation of body failed: {exc}",
                issues=[{"path": field.replace("]", "").replace("[", ".").split("."),
                         "message": exc.message}],
            )
        try:
            job = self.backend.submit(PROVIDER, model, key, body, spec)
        except InsufficientCredits:
            return self._error(400, "You do not have enough credits to run this task.")
        except QuotaExceeded as exc:
            return self._error(
                429, f"You have exceeded the daily generation limit for {model}: {exc}."
            )
        return JSONResponse({"id": job.id, "estimatedCost": {"credits": job.cost}})

    async def image_to_video(self, request: Request) -> Response:
        return await self._submit(request, validate_image_to_video_any)

    async def text_to_image(self, request: Request) -> Response:
        return await self._submit(request, validate_text_to_image_any)

    async def text_to_video(self, request: Request) -> Response:
        return await self._submit(request, validate_text_to_video)

    async def video_upscale(self, request: Request) -> Response:
        return await self._submit(request, self._validate_finish)

    async def _validate_finish(self, body: dict[str, Any], retired: Any) -> tuple[str, JobSpec]:
        model, uri = validate_video_upscale(body)
        return model, await run_in_threadpool(finish_spec, self.backend, model, body, uri)

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
        cost = view.job.cost
        charged = int(self.backend.charged(view.job))
        if not view.phase.terminal:
            body["estimatedCost"] = {"credits": cost}
        if view.phase is Phase.RUNNING:
            body["progress"] = view.progress
        if view.phase is Phase.SUCCEEDED:
            body["cost"] = {"credits": charged}
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
            body["cost"] = {"credits": charged}
            body["failure"] = message or view.failure.message
            body["failureCode"] = code.format(kind=view.job.spec.kind == "still" and "IMAGE"
                                              or "VIDEO")
        elif view.phase is Phase.CANCELLED:
            body["cost"] = {"credits": charged}
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

    # -- uploads and the organization --------------------------------------------------

    async def create_upload(self, request: Request) -> Response:
        key = self._authorize(request)
        if isinstance(key, Response):
            return key
        try:
            body = await read_json_object(request)
            filename = get_string(body, "filename", required=True)
            get_choice(body, "type", ("ephemeral",), required=True)
        except FieldError as exc:
            field = exc.field or "body"
            return self._error(400, f"Validation of body failed: {exc}",
                               issues=[{"path": [field], "message": exc.message}])
        upload = self.backend.create_upload(key, filename or "")
        return JSONResponse({
            "runwayUri": f"{UPLOAD_SCHEME}uploads/{upload.id}",
            "uploadUrl": f"{base_url(request)}/_emulator/uploads/{upload.id}",
            "fields": {"key": f"uploads/{upload.id}/{filename}", "token": upload.token,
                       "Content-Type": "application/octet-stream"},
        })

    async def receive_upload(self, request: Request) -> Response:
        """The presigned form's target: a multipart POST with `token` and `file`."""
        content_type = request.headers.get("content-type", "")
        length = int(request.headers.get("content-length") or 0)
        if length > MAX_UPLOAD_BYTES + 1024 * 1024:
            return Response("EntityTooLarge", status_code=400, media_type="text/plain")
        if not content_type.startswith("multipart/form-data"):
            return Response("expected multipart/form-data", status_code=400,
                            media_type="text/plain")
        raw = await request.body()
        fields, file_data = await run_in_threadpool(parse_form, content_type, raw)
        if file_data is None:
            return Response("missing form field 'file'", status_code=400,
                            media_type="text/plain")
        try:
            self.backend.complete_upload(
                request.path_params["upload_id"], fields.get("token", ""), file_data
            )
        except UploadError as exc:
            return Response(f"Forbidden: {exc}", status_code=403, media_type="text/plain")
        return Response(status_code=204)

    async def organization(self, request: Request) -> Response:
        key = self._authorize(request)
        if isinstance(key, Response):
            return key
        config = self.backend.config
        retired = config.runway_retired
        models = [m for m in list(VIDEO_MODELS) + list(IMAGE_MODELS) if m not in retired]
        usage = self.backend.daily_generations(PROVIDER, key)
        return JSONResponse({
            "creditBalance": int(self.backend.balance(PROVIDER, key)),
            "tier": {
                "maxMonthlyCreditSpend": config.runway_max_monthly_credit_spend,
                "models": {
                    model: {
                        "maxConcurrentGenerations":
                            self.backend.concurrency_limit(PROVIDER, model),
                        "maxDailyGenerations": config.daily_limits.get(model),
                    }
                    for model in models
                },
            },
            "usage": {"models": {model: {"dailyGenerations": usage.get(model, 0)}
                                 for model in models}},
        })


def parse_form(content_type: str, raw: bytes) -> tuple[dict[str, str], bytes | None]:
    """A multipart/form-data body as (text fields, the `file` field's bytes)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw
    )
    fields: dict[str, str] = {}
    data: bytes | None = None
    if not message.is_multipart():
        return fields, None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        raw_payload = part.get_payload(decode=True)  # decode=True: bytes or None
        payload = raw_payload if isinstance(raw_payload, bytes) else b""
        if name == "file":
            data = payload
        elif name:
            fields[str(name)] = payload.decode("utf-8", "replace")
    return fields, data
