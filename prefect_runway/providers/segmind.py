"""Segmind's serverless v2 (async) protocol for the Runway models.

* ``POST /v2/{slug}`` -> ``{request_id, status: "QUEUED", poll_url, status_url, response_url}``
* ``GET /v2/requests/{id}/status`` -> ``{status, request_id, metrics, ...}``
* ``GET /v2/requests/{id}`` -> the result body ``{status, metrics, output}``
* ``QUEUED | PROCESSING | COMPLETED | FAILED``; FAILED is served as HTTP 422 with the body
  still carrying ``status`` and ``error``; an unknown or expired id is 404 (results are kept
  for one hour).
* Auth: ``x-api-key``. 406 means insufficient credits. The submit answer's
  ``x-remaining-credits`` header is the account's balance after the submit (USD).

What is retried on submit: only answers that prove Segmind did not take the job (429, 503,
and connection failures before the request was sent). Segmind offers no way to look a job up
by its inputs, so a submit whose outcome is unknown raises ``SubmissionUncertain``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from prefect_runway.errors import GenerationExpired
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
from prefect_runway.providers.wire import HttpCall, number

SLUGS = {model: spec.wire_name for model, spec in catalogue.specs("segmind").items()}

_STATES = {
    "QUEUED": JobState.PENDING,
    "PROCESSING": JobState.RUNNING,
    "COMPLETED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
}


class SegmindProvider(Provider):
    """Segmind: ``runway-gen4-image``, ``runway-gen4-turbo``, ``runway-gen3-alphaturbo``."""

    name = "segmind"
    default_base_url = "https://api.segmind.com"
    retention_seconds = 3600.0
    accepts_data_uri = False
    limits = catalogue.LIMITS["segmind"]
    models = catalogue.specs("segmind")

    def image_body(
        self, spec: ModelSpec, request: ImageRequest, ratio: str, refs: list[dict[str, str]]
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"promptText": request.prompt, "referenceImages": refs, "ratio": ratio}
        if request.seed is not None:
            body["seed"] = request.seed
        return body

    def video_body(
        self, spec: ModelSpec, request: VideoRequest, ratio: str, image: str, last_image: str | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "promptImage": image,
            "promptText": request.prompt,
            "duration": request.duration,
            "ratio": ratio,
        }
        if request.seed is not None:
            body["seed"] = request.seed
        return body

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"x-api-key": api_key}

    def submit_call(self, prepared: PreparedRequest) -> HttpCall:
        return HttpCall("POST", f"{prepared.base_url}/v2/{prepared.spec.wire_name}", json=prepared.body)

    def parse_submit(self, prepared: PreparedRequest, body: Any) -> Generation:
        if not isinstance(body, dict) or not isinstance(body.get("request_id"), str):
            raise self.bad_response("submit", body)
        job_id = body["request_id"]
        return Generation(
            provider=self.name,
            model=prepared.model,
            kind=prepared.kind,
            job_id=job_id,
            fingerprint=prepared.fingerprint,
            base_url=prepared.base_url,
            status_url=body.get("status_url") or body.get("poll_url"),
            result_url=body.get("response_url"),
            request=prepared.summary,
        )

    def status_call(self, generation: Generation) -> HttpCall:
        url = generation.status_url or f"{generation.base_url}/v2/requests/{generation.job_id}/status"
        return HttpCall("GET", url)

    def result_call(self, generation: Generation) -> HttpCall:
        url = generation.result_url or f"{generation.base_url}/v2/requests/{generation.job_id}"
        return HttpCall("GET", url)

    def parse_status(self, generation: Generation, status_code: int, body: Any) -> StatusUpdate:
        job_id = generation.job_id
        if status_code == 404:
            raise GenerationExpired(
                "Segmind no longer holds this request (results are kept for 1 hour)",
                provider=self.name, status_code=404, job_id=job_id,
            )
        if status_code not in (200, 422):
            raise self.error_for(status_code, body, job_id=job_id, on_job=True)
        if not isinstance(body, dict) or not isinstance(body.get("status"), str):
            if status_code == 422:  # a 422 without a readable status: still a failure answer
                raise self.error_for(status_code, body, job_id=job_id, on_job=True)
            raise self.bad_response("status", body, job_id)
        raw = body["status"].upper()
        state = _STATES.get(raw)
        if state is None:
            # An unknown status is treated as still pending; the wait's deadline bounds it.
            state = JobState.PENDING
        metrics = body.get("metrics") if isinstance(body.get("metrics"), dict) else {}
        update = StatusUpdate(state=state, raw_status=raw, metrics=metrics or {})
        if state is JobState.FAILED:
            update.error = _error_text(body)
        elif state is JobState.SUCCEEDED:
            update.outputs = _outputs(body.get("output"))
            update.needs_result_call = not update.outputs
        return update


    def remaining_credits(self, headers: Mapping[str, str]) -> float | None:
        """``x-remaining-credits`` of a submit answer: the balance after the submit (USD)."""
        text = headers.get("x-remaining-credits")
        try:
            value = float(text) if text is not None else None
        except ValueError:
            return None
        return value if value is not None and math.isfinite(value) and value >= 0 else None

    def balance_call(self, base_url: str | None = None) -> HttpCall:
        """``GET /v1/get-user-credits`` (docs.segmind.com, Account and Billing APIs)."""
        return HttpCall("GET", f"{(base_url or self.default_base_url).rstrip('/')}/v1/get-user-credits")

    def parse_balance(self, status_code: int, body: Any) -> Balance:
        """``{credits, "free-credits"}`` (both USD-denominated) -> Balance."""
        if not 200 <= status_code < 300:
            raise self.error_for(status_code, body)
        if not isinstance(body, dict) or number(body.get("credits")) is None:
            raise self.bad_response("credits", body)
        free = body.get("free-credits", body.get("free_credits"))
        return Balance(
            provider=self.name, credits=number(body["credits"]), unit="USD",
            free_credits=number(free),
        )


def _outputs(value: Any) -> list[str]:
    if isinstance(value, str) and value:
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str) and v]
    if isinstance(value, dict):
        return _outputs(value.get("url") or value.get("urls"))
    return []


def _error_text(body: dict[str, Any]) -> str:
    err = body.get("error") or body.get("detail") or body.get("message")
    if isinstance(err, dict):
        err = err.get("message") or err.get("detail") or str(err)
    return str(err) if err else "Segmind reported the request as FAILED"
