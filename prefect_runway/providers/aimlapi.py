"""AI/ML API ("AIMLAPI") for the Runway video models, on either of its two routes.

* universal (default): ``POST /v2/video/generations``
  ``{model, prompt, image_url, tail_image_url, aspect_ratio, duration, seed}``;
  ``GET /v2/video/generations?generation_id=ID``
* legacy: ``POST /v2/generate/video/runway/generation``
  ``{model, prompt, image_url, last_image_url, ratio, duration, seed}``;
  ``GET /v2/generate/video/runway/generation?generation_id=ID``

Both answer a submit with ``{id, status: "queued"}`` and a poll with ``{id, status, video, ...}``,
where ``video`` is a list of URLs (legacy) or ``{url}`` (universal), ``error`` is
``{name, message}`` (or a string) and ``meta.usage.credits_used`` is the cost. Statuses:
``queued | waiting | generating`` (pending), ``completed``, ``error | failed``.

The route a job was submitted on is recorded in its ``Generation.status_url``, so a job is
always polled on the route it was created on, whatever route the provider is set to now.

HTTP errors carry ``{message, path, requestId, statusCode, timestamp}``; a 403 is either an
empty balance ("You've run out of credits...") or a key that is not allowed. Output URLs are
signed CDN links that expire after about 24-48 hours. AIMLAPI offers no cancel.

Sources: AIMLAPI's OpenAPI files for the two models (``aimlapi/api-docs``,
``docs/api-references/video-models/runway/gen4_turbo.json`` and ``gen3a_turbo.json``,
``universal-video-fetch.json``) and its error pages (``docs/errors-and-messages/``).
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlencode

from prefect_runway.errors import (
    AuthenticationError,
    InsufficientCredits,
    InvalidRequest,
    ProviderError,
)
from prefect_runway.models import (
    Balance,
    Generation,
    ImageRequest,
    JobState,
    StatusUpdate,
    VideoRequest,
    catalogue,
)
from prefect_runway.providers.base import ModelSpec, PreparedRequest, Provider
from prefect_runway.providers.wire import HttpCall, error_detail, number

Route = Literal["universal", "legacy"]
ROUTES: tuple[str, ...] = ("universal", "legacy")

#: Submit (and poll) path of each route; the poll adds ``?generation_id=ID``.
ROUTE_PATHS: dict[str, str] = {
    "universal": "/v2/video/generations",
    "legacy": "/v2/generate/video/runway/generation",
}

#: The ratio key and last-frame key of each route.
_RATIO_KEY = {"universal": "aspect_ratio", "legacy": "ratio"}
_LAST_IMAGE_KEY = {"universal": "tail_image_url", "legacy": "last_image_url"}

# AIMLAPI's model ids. gen4_turbo carries the vendor prefix; gen3a_turbo does not: every
# version of AIMLAPI's gen3a_turbo schema (Feb 2025 - Jan 2026) has `model: enum ["gen3a_turbo"]`.
WIRE_NAMES = {model: spec.wire_name for model, spec in catalogue.specs("aimlapi").items()}

_STATES = {
    "queued": JobState.PENDING,
    "waiting": JobState.PENDING,
    "generating": JobState.RUNNING,
    "completed": JobState.SUCCEEDED,
    "error": JobState.FAILED,
    "failed": JobState.FAILED,
}

# A 403 whose message says this is an empty balance, not a bad key.
_CREDITS_WORDS = re.compile(
    r"credit|balance|quota|top[ -]?up|billing|payment|insufficient|funds", re.IGNORECASE
)


class AimlapiProvider(Provider):
    """AI/ML API: ``runway/gen4_turbo`` and ``gen3a_turbo`` image-to-video (no stills).

    Args:
        route: ``universal`` (``/v2/video/generations``, the default) or ``legacy``
            (``/v2/generate/video/runway/generation``).
    """

    name = "aimlapi"
    default_base_url = "https://api.aimlapi.com"
    retention_seconds = 24 * 3600.0
    accepts_data_uri = True
    checks_aspect = True
    can_cancel = False
    limits = catalogue.LIMITS["aimlapi"]
    models = catalogue.specs("aimlapi")

    def __init__(self, route: Route = "universal") -> None:
        if route not in ROUTES:
            raise InvalidRequest("route", f"{route!r} is not an AIMLAPI route", allowed=ROUTES, provider=self.name)
        self.route: Route = route

    def __repr__(self) -> str:
        return f"AimlapiProvider(route={self.route!r})"

    # ---- request side --------------------------------------------------------------------

    def image_body(
        self, spec: ModelSpec, request: ImageRequest, ratio: str, refs: list[dict[str, str]]
    ) -> dict[str, Any]:
        # Unreachable through `prepare` (no image model is listed), kept for the contract.
        raise InvalidRequest(
            "model", f"{request.model!r} is not offered", allowed=sorted(self.models), provider=self.name
        )

    def video_body(
        self, spec: ModelSpec, request: VideoRequest, ratio: str, image: str, last_image: str | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": spec.wire_name}
        if request.prompt.strip():  # optional on AIMLAPI; an empty one is left out
            body["prompt"] = request.prompt
        body["image_url"] = image
        if last_image is not None:
            body[_LAST_IMAGE_KEY[self.route]] = last_image
        body[_RATIO_KEY[self.route]] = ratio
        body["duration"] = request.duration
        if request.seed is not None:
            body["seed"] = request.seed
        return body

    # ---- HTTP side -----------------------------------------------------------------------

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"}

    def submit_call(self, prepared: PreparedRequest) -> HttpCall:
        return HttpCall("POST", f"{prepared.base_url}{ROUTE_PATHS[self.route]}", json=prepared.body)

    def parse_submit(self, prepared: PreparedRequest, body: Any) -> Generation:
        job_id = (body.get("id") or body.get("generation_id")) if isinstance(body, dict) else None
        if not isinstance(job_id, str) or not job_id:
            raise self.bad_response("submit", body)
        return Generation(
            provider=self.name,
            model=prepared.model,
            kind=prepared.kind,
            job_id=job_id,
            fingerprint=prepared.fingerprint,
            base_url=prepared.base_url,
            status_url=poll_url(prepared.base_url, self.route, job_id),
            request=prepared.summary,
        )

    def status_call(self, generation: Generation) -> HttpCall:
        # The recorded URL keeps the route the job was submitted on.
        url = generation.status_url or poll_url(generation.base_url, self.route, generation.job_id)
        return HttpCall("GET", url)

    def result_call(self, generation: Generation) -> HttpCall:
        """The same GET again: asked only when a `completed` answer named no video yet."""
        return self.status_call(generation)

    def parse_status(self, generation: Generation, status_code: int, body: Any) -> StatusUpdate:
        job_id = generation.job_id
        if not 200 <= status_code < 300:
            raise self.error_for(status_code, body, job_id=job_id, on_job=True)
        if not isinstance(body, dict) or not isinstance(body.get("status"), str):
            raise self.bad_response("status", body, job_id)
        raw = body["status"].strip().lower()
        # An unknown status is treated as still pending; the wait's deadline bounds it.
        state = _STATES.get(raw, JobState.PENDING)
        update = StatusUpdate(state=state, raw_status=raw, cost=_credits_used(body))
        if state is JobState.FAILED:
            update.error = _error_text(body)
        elif state is JobState.SUCCEEDED:
            update.outputs = _outputs(body.get("video"))
            update.needs_result_call = not update.outputs
        return update

    def error_for(
        self, status_code: int, body: Any, *, job_id: str | None = None, on_job: bool = False
    ) -> ProviderError:
        """AIMLAPI's errors: a 403 is an empty balance or a forbidden key, told apart by text."""
        if status_code in (402, 403):
            detail = error_detail(body)
            kw: dict[str, Any] = {
                "provider": self.name, "status_code": status_code, "job_id": job_id, "detail": detail,
            }
            if status_code == 402 or _CREDITS_WORDS.search(detail or ""):
                return InsufficientCredits("the AIMLAPI account is out of credits", **kw)
            return AuthenticationError("the API key is not allowed to do this", **kw)
        return super().error_for(status_code, body, job_id=job_id, on_job=on_job)


    def balance_call(self, base_url: str | None = None) -> HttpCall:
        """``GET /v2/billing`` (docs.aimlapi.com, Account Balance)."""
        return HttpCall("GET", f"{(base_url or self.default_base_url).rstrip('/')}/v2/billing")

    def parse_balance(self, status_code: int, body: Any) -> Balance:
        """``{balance, lowBalance, ...}`` (also under ``data``) -> Balance in AIMLAPI credits."""
        if not 200 <= status_code < 300:
            raise self.error_for(status_code, body)
        found = body.get("data") if isinstance(body, dict) and isinstance(body.get("data"), dict) else body
        if not isinstance(found, dict):
            raise self.bad_response("billing", body)
        credits = number(found.get("balance", found.get("credits")))
        if credits is None:
            raise self.bad_response("billing", body)
        low = found.get("lowBalance")
        return Balance(
            provider=self.name, credits=credits, unit="aimlapi credits ($1 = 2,000,000)",
            low_balance=low if isinstance(low, bool) else None,
        )


def poll_url(base_url: str, route: str, job_id: str) -> str:
    """The absolute GET URL that polls ``job_id`` on ``route``."""
    return f"{base_url.rstrip('/')}{ROUTE_PATHS[route]}?{urlencode({'generation_id': job_id})}"


def _outputs(value: Any) -> list[str]:
    """Video URLs from either shape: ``[url, ...]`` (legacy) or ``{url}`` (universal)."""
    if isinstance(value, str) and value:
        return [value]
    if isinstance(value, list):
        return [url for item in value for url in _outputs(item)]
    if isinstance(value, dict):
        return _outputs(value.get("url"))
    return []


def _credits_used(body: dict[str, Any]) -> float | None:
    meta = body.get("meta")
    usage = meta.get("usage") if isinstance(meta, dict) else None
    used = usage.get("credits_used") if isinstance(usage, dict) else None
    if isinstance(used, bool) or not isinstance(used, (int, float)):
        return None
    return float(used)


def _error_text(body: dict[str, Any]) -> str:
    err = body.get("error") or body.get("message")
    if isinstance(err, dict):
        name, message = err.get("name"), err.get("message")
        err = f"{name}: {message}" if name and message else (message or name or str(err))
    return str(err) if err else f"AIMLAPI reported the generation as {body.get('status')}"
