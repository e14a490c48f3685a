"""The result models: a submitted job, a status answer, a finished job, a stored output, and
an account's balance. None holds an API key."""

from __future__ import annotations

import mimetypes
from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, Field

from prefect_runway.models.base import utc_now
from prefect_runway.models.requests import Kind

__all__ = [
    "Balance", "Generation", "GenerationResult", "JobState", "ModelLimits", "StatusUpdate",
    "StoredOutput",
]


class JobState(str, Enum):
    """A provider-neutral job state."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class Generation(BaseModel):
    """A job the provider accepted: enough to poll it, resume it, or cancel it later.

    Holds no secret: the API key stays in the credentials block.
    """

    provider: str = Field(description="Provider name: segmind, aimlapi or runway.")
    model: str = Field(description="Runway model name, e.g. gen4_turbo.")
    kind: Kind = Field(description="image or video.")
    job_id: str = Field(description="The provider's id for the job.")
    fingerprint: str = Field(description="sha256 of (provider, model, canonical request).")
    base_url: str = Field(description="The API base URL the job was submitted to.")
    status_url: str | None = Field(default=None, description="Where to poll, if given.")
    result_url: str | None = Field(default=None, description="Where the result is, if given.")
    submitted_at: datetime = Field(default_factory=utc_now, description="When it was submitted.")
    request: dict[str, Any] = Field(
        default_factory=dict,
        description="The request as sent, with data URIs shortened to their sha256.",
    )
    charged: float | None = Field(
        default=None,
        description=(
            "What the account was charged for this submit, where provable from the submit "
            "answer (Segmind: the balance before it minus x-remaining-credits, see "
            "prefect_runway.engine.credits); None: not known."
        ),
    )


class StatusUpdate(BaseModel):
    """What one status answer says, in provider-neutral terms (the output of a parser).

    ``throttled`` marks a pending job the provider is holding back (Runway ``THROTTLED``: the
    account is at its concurrency limit for the model); the engine keeps that time off the
    wait deadline and logs ``throttle_reason``.
    """

    state: JobState
    throttled: bool = False
    throttle_reason: str | None = None
    raw_status: str | None = None
    outputs: list[str] = Field(default_factory=list)
    error: str | None = None
    failure_code: str | None = None
    progress: float | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    cost: float | None = None
    needs_result_call: bool = False


class GenerationResult(BaseModel):
    """A finished job: its output URLs, the provider's metrics and the cost where reported."""

    generation: Generation
    state: JobState
    outputs: list[str] = Field(description="Output media URLs (may be signed and short-lived).")
    metrics: dict[str, Any] = Field(default_factory=dict)
    cost: float | None = Field(default=None, description="Credits used, where reported.")
    completed_at: datetime = Field(default_factory=utc_now)

    @property
    def seconds(self) -> float:
        return (self.completed_at - self.generation.submitted_at).total_seconds()


class StoredOutput(BaseModel):
    """A generated file that was downloaded, verified and stored; also the sidecar's schema."""

    location: str = Field(description="Where it is: a local path or a storage URI (s3://...).")
    key: str = Field(description="Its key (relative path) inside the storage.")
    size: int = Field(description="Size in bytes.")
    sha256: str = Field(description="sha256 of the bytes, hex.")
    media_type: str = Field(description="image/png, video/mp4, ...")
    provider: str
    model: str
    kind: Kind
    job_id: str
    fingerprint: str
    source_url: str = Field(description="The provider URL it came from, without query string.")
    request: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    cost: float | None = Field(
        default=None, description="What the job cost: charged where reported, else estimated."
    )
    cost_unit: str | None = Field(
        default=None, description="The cost's unit: 'credits' (the provider's own) or 'USD'."
    )
    cost_estimated: bool | None = Field(
        default=None,
        description="True: the provider did not report it; the price table's estimate.",
    )
    submitted_at: datetime | None = None
    completed_at: datetime | None = None
    stored_at: datetime = Field(default_factory=utc_now)
    flow_run_id: str | None = None
    sidecar: str | None = Field(default=None, description="Location of the sidecar JSON.")
    preview_key: str | None = Field(
        default=None,
        description=(
            "For a video: the key of its small preview (an animated GIF or a contact-sheet "
            "PNG) stored beside it, e.g. '<video key>.preview.gif'."
        ),
    )
    first_frame: dict[str, str] | None = Field(
        default=None,
        description=(
            "For a video that starts on another video's last frame (a storyboard with "
            "continuity): {video, video_sha256, frame, frame_sha256}, the stored video's key "
            "and the key of that frame stored beside it as a PNG. None: it did not."
        ),
    )
    fallback: list[dict[str, str]] | None = Field(
        default=None,
        description=(
            "The providers this step did not run on, in order, each {provider, reason, error, "
            "stage}: the step fell back (see prefect_runway.flows.fallback). None: it did not."
        ),
    )
    lineage: dict[str, str] | None = Field(
        default=None,
        description=(
            "The stored output this one was made from (a finishing step's video): {key, "
            "location, sha256}. None: it was made from requests alone."
        ),
    )

    @property
    def extension(self) -> str:
        return (mimetypes.guess_extension(self.media_type) or ".bin").lstrip(".")


class ModelLimits(BaseModel):
    """An account's limits and usage for one model (Runway ``GET /v1/organization``)."""

    max_concurrent_generations: int | None = Field(
        default=None, description="Jobs that may run at once; None: no limit."
    )
    max_daily_generations: int | None = Field(
        default=None, description="Jobs that may be created in a rolling day; None: no limit."
    )
    daily_generations: int | None = Field(
        default=None, description="Jobs created in the past day, where reported."
    )

    @property
    def daily_remaining(self) -> int | None:
        """Jobs left in the rolling day, where both the limit and the usage are known."""
        if self.max_daily_generations is None or self.daily_generations is None:
            return None
        return max(0, self.max_daily_generations - self.daily_generations)


class Balance(BaseModel):
    """What an account has left to spend, from a provider's balance endpoint.

    ``credits`` is in the provider's own unit (``unit``): Runway credits, Segmind's
    USD-denominated credits, AIMLAPI credits ($1 = 2,000,000). Holds no secret.
    """

    provider: str
    credits: float | None = Field(default=None, description="The spendable balance.")
    unit: str = Field(description="What one unit of `credits` is.")
    free_credits: float | None = Field(default=None, description="Promotional credits (Segmind).")
    max_monthly_credit_spend: int | None = Field(
        default=None, description="Runway tier: credits that may be bought in a month."
    )
    low_balance: bool | None = Field(default=None, description="AIMLAPI: below its threshold.")
    models: dict[str, ModelLimits] = Field(
        default_factory=dict, description="Per-model limits and usage (Runway)."
    )
    checked_at: datetime = Field(default_factory=utc_now)

    def limits(self, model: str) -> ModelLimits | None:
        """The limits of ``model``, if the provider reports any."""
        return self.models.get(model)
