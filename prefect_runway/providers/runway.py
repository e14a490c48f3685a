"""Runway's own API (``api.dev.runwayml.com``, version ``2024-11-06``).

* ``POST /v1/text_to_image`` ``{model: gen4_image, promptText, ratio, referenceImages, seed}``
* ``POST /v1/image_to_video`` ``{model, promptImage, promptText, ratio, duration, seed}``;
  ``promptImage`` is a URI, or ``[{uri, position: "first"}, {uri, position: "last"}]`` for
  gen3a_turbo with a last frame
* both answer ``{id}``; ``GET /v1/tasks/{id}`` ->
  ``{id, status, createdAt, output?, failure?, failureCode?, progress?, cost?, estimatedCost?}``
  with status ``PENDING | THROTTLED | RUNNING | SUCCEEDED | FAILED | CANCELLED``
* ``DELETE /v1/tasks/{id}`` cancels a pending or running task.
* Errors are ``{error: "..."}``; an empty balance is a plain 400 "You do not have enough
  credits to run this task."; an unknown task id is 404.

The ``output`` URLs are signed and expire within 24-48 hours; fetching the task again gives
fresh ones, so every status answer's URLs replace the previous ones.

Sources: the ``runwayml`` SDK 5.24.0 (``types/text_to_image_create_params.py`` class
``Gen4Image``, ``types/image_to_video_create_params.py`` class ``Gen4Turbo``,
``types/task_retrieve_response.py``, ``resources/tasks.py``). gen3a_turbo left the SDK's
``image_to_video`` types in 5.0.0; its shape here is the one of SDK 4.18.0 (class
``Gen3aTurbo``: ratios ``1280:768 | 768:1280``, duration 5 or 10, ``promptText`` required,
``promptImage`` positions ``first | last``).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from prefect_runway.errors import InsufficientCredits, InvalidRequest, ProviderError
from prefect_runway.models import (
    Generation,
    ImageRequest,
    JobState,
    StatusUpdate,
    VideoRequest,
)
from prefect_runway.providers.base import (
    HttpCall,
    ModelSpec,
    PreparedRequest,
    Provider,
    error_detail,
)

API_VERSION = "2024-11-06"
MAX_DATA_URI_BYTES = 5 * 1024 * 1024

# gen4_image: the 16 resolutions of runwayml 5.24.0 `Gen4Image.ratio`. Ordered 720p tier first,
# so that a generic ratio ("16:9", "4:3", "1:1", ...) maps to the cheaper 720p resolution of
# its shape, like the default; 1080p-class resolutions are used when asked for by name.
GEN4_IMAGE_RATIOS = (
    "1280:720", "720:1280", "720:720", "960:720", "720:960", "1680:720",
    "1920:1080", "1080:1920", "1080:1080", "1024:1024", "1360:768",
    "1440:1080", "1080:1440", "1168:880", "1808:768", "2112:912",
)
# gen4_turbo: runwayml 5.24.0 `Gen4Turbo.ratio`.
GEN4_TURBO_RATIOS = ("1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672")
# gen3a_turbo: runwayml 4.18.0 `Gen3aTurbo.ratio`.
GEN3A_TURBO_RATIOS = ("1280:768", "768:1280")

_STATES = {
    "PENDING": JobState.PENDING,
    "THROTTLED": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "SUCCEEDED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "CANCELLED": JobState.CANCELLED,
}

_CREDITS_WORDS = re.compile(r"enough credits|out of credits|insufficient credits", re.IGNORECASE)


class RunwayProvider(Provider):
    """Runway's API: ``gen4_image`` stills, ``gen4_turbo`` and ``gen3a_turbo`` videos."""

    name = "runway"
    default_base_url = "https://api.dev.runwayml.com"
    retention_seconds = 24 * 3600.0
    accepts_data_uri = True
    max_data_uri_bytes = MAX_DATA_URI_BYTES
    checks_aspect = True
    can_cancel = True
    models = {
        "gen4_image": ModelSpec(
            "gen4_image", "gen4_image", "image",
            ratios=GEN4_IMAGE_RATIOS, default_ratio="1280:720",
            min_reference_images=0, max_reference_images=3,
        ),
        "gen4_turbo": ModelSpec(
            "gen4_turbo", "gen4_turbo", "video",
            ratios=GEN4_TURBO_RATIOS, default_ratio="1280:720",
        ),
        "gen3a_turbo": ModelSpec(
            "gen3a_turbo", "gen3a_turbo", "video",
            ratios=GEN3A_TURBO_RATIOS, default_ratio="1280:768", last_image=True,
        ),
    }

    # ---- request side --------------------------------------------------------------------

    def image_body(
        self, spec: ModelSpec, request: ImageRequest, ratio: str, refs: list[dict[str, str]]
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": spec.wire_name, "promptText": request.prompt, "ratio": ratio}
        if refs:
            body["referenceImages"] = refs
        if request.seed is not None:
            body["seed"] = request.seed
        return body

    def video_body(
        self, spec: ModelSpec, request: VideoRequest, ratio: str, image: str, last_image: str | None
    ) -> dict[str, Any]:
        has_prompt = bool(request.prompt.strip())
        if spec.model == "gen3a_turbo" and not has_prompt:
            raise InvalidRequest(
                "prompt", "is required", allowed="a non-empty motion prompt",
                provider=self.name, model=spec.model,
            )
        prompt_image: str | list[dict[str, str]] = image
        if last_image is not None:
            prompt_image = [
                {"uri": image, "position": "first"},
                {"uri": last_image, "position": "last"},
            ]
        body: dict[str, Any] = {"model": spec.wire_name, "promptImage": prompt_image}
        if has_prompt:  # optional for gen4_turbo; an empty one is left out
            body["promptText"] = request.prompt
        body["ratio"] = ratio
        body["duration"] = request.duration
        if request.seed is not None:
            body["seed"] = request.seed
        return body

    # ---- HTTP side -----------------------------------------------------------------------

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}", "X-Runway-Version": API_VERSION}

    def submit_call(self, prepared: PreparedRequest) -> HttpCall:
        path = "/v1/text_to_image" if prepared.kind == "image" else "/v1/image_to_video"
        return HttpCall("POST", f"{prepared.base_url}{path}", json=prepared.body)

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

    def error_for(
        self, status_code: int, body: Any, *, job_id: str | None = None, on_job: bool = False
    ) -> ProviderError:
        """Runway's errors: an empty balance is a 400 that says so."""
        detail = error_detail(body)
        if status_code == 402 or (status_code == 400 and _CREDITS_WORDS.search(detail or "")):
            return InsufficientCredits(
                "the Runway account does not have enough credits for this task",
                provider=self.name, status_code=status_code, job_id=job_id, detail=detail,
            )
        return super().error_for(status_code, body, job_id=job_id, on_job=on_job)


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
