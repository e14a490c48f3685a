"""Run-time configuration of the emulator: one ``EmulatorConfig`` holds every knob."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PROVIDERS = ("segmind", "aimlapi", "runway")


class EmulatorConfig(BaseModel):
    """How the emulator behaves.

    Example:
        ```python
        from prefect_runway.emulator import Emulator, EmulatorConfig

        with Emulator(EmulatorConfig(latency=0.3, video_fps=4)) as emu:
            print(emu.url)
        ```
    """

    # No infinite or NaN seconds, credits or rates: a job that never ends hangs its caller.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    latency: float = Field(
        default=2.0,
        ge=0,
        description="Seconds from the start of a job to its completion.",
    )
    latency_range: tuple[float, float] | None = Field(
        default=None,
        description=(
            "When set, each job's latency is drawn uniformly from this range (seeded by "
            "`seed`) instead of using `latency`."
        ),
    )
    queued_fraction: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="Share of a job's latency it spends queued before it starts processing.",
    )
    seed: int = Field(
        default=0,
        description="Seed of the emulator's random choices (latencies, ids stay random).",
    )
    fail_marker: str | None = Field(
        default="[fail]",
        description="A prompt containing this text ends FAILED with a provider-shaped error.",
    )
    expire_marker: str | None = Field(
        default="[expire]",
        description=(
            "A prompt containing this text completes with outputs that have already expired "
            "(Segmind: the request itself answers 404 once complete; AIMLAPI and Runway: the "
            "signed output URLs answer 403)."
        ),
    )
    oversize_marker: str | None = Field(
        default="[oversize]",
        description=(
            "A prompt containing this text completes with an output of `oversize_bytes`: "
            "the real media (its magic bytes first), then padding, streamed without being "
            "held in memory; for download size limits."
        ),
    )
    oversize_bytes: int = Field(
        default=300 * 1024 * 1024, ge=1, description="The size of an oversized output, in bytes."
    )
    oversize_chunked: bool = Field(
        default=False,
        description=(
            "Serve oversized outputs without a Content-Length (chunked), as a server that "
            "does not say its size; otherwise the Content-Length says it."
        ),
    )
    expiry: float = Field(
        default=3600.0,
        gt=0,
        description=(
            "Segmind retention: a request older than this (since submission) answers 404 and "
            "its output is deleted."
        ),
    )
    output_url_ttl: float = Field(
        default=86400.0,
        gt=0,
        description="Lifetime of the signed output URLs that AIMLAPI and Runway hand out.",
    )
    api_keys: frozenset[str] | None = Field(
        default=None,
        description="Accepted API keys (all providers); None accepts any non-empty key.",
    )
    runway_concurrency: int | None = Field(
        default=2,
        ge=1,
        description=(
            "Tasks one Runway key may run at once; later tasks are THROTTLED until a slot "
            "frees. None disables the limit."
        ),
    )
    aimlapi_concurrency: int | None = Field(
        default=None,
        ge=1,
        description="Generations one AIMLAPI key may run at once; later ones are `waiting`.",
    )
    segmind_concurrency: int | None = Field(
        default=None,
        ge=1,
        description="Requests one Segmind key may run at once; later ones stay QUEUED.",
    )
    aimlapi_failure_status: Literal["error", "failed"] = Field(
        default="error",
        description="The status word AIMLAPI generations end with when they fail.",
    )
    video_fps: int = Field(
        default=24, ge=1, le=60, description="Frame rate of the videos the emulator makes."
    )
    credits: float | None = Field(
        default=None,
        ge=0,
        description=(
            "Starting balance of every API key on every provider, in that provider's unit "
            "(Runway and AIMLAPI credits, Segmind USD; see `prefect_runway.money.prices`). None: "
            "`balances` decides."
        ),
    )
    balances: dict[str, float] = Field(
        default_factory=lambda: {"runway": 1_000_000.0, "segmind": 100_000.0,
                                 "aimlapi": 1_000_000_000_000.0},
        description=(
            "Starting balance of each API key per provider (generous by default), used when "
            "`credits` is None. Each accepted job is charged its price; failed and cancelled "
            "jobs are refunded, except input-safety failures (Runway does not refund those)."
        ),
    )
    price_overrides: dict[str, dict[str, Any]] | None = Field(
        default=None,
        description=(
            "Overrides of the price table the emulator charges by "
            "(`PriceTable.with_overrides` shape: {provider: {model: {amount, unit, per}}})."
        ),
    )
    kept_charges: list[Literal["unsafe_output", "internal_marker"]] = Field(
        default_factory=list,
        description=(
            "Failure codes whose charge the provider keeps, besides input-safety failures "
            "(which Runway never refunds): e.g. ['unsafe_output'] for an account that pays "
            "for outputs rejected by moderation. A failed Runway task reports what it kept "
            "as its `cost`."
        ),
    )
    model_concurrency: dict[str, int] = Field(
        default_factory=dict,
        description=(
            "Per-model concurrency per key, by the provider's model id (e.g. {'gen4_turbo': "
            "1}); overrides `<provider>_concurrency` for that model (Runway's "
            "tier.models[m].maxConcurrentGenerations). Over it, Runway tasks are THROTTLED."
        ),
    )
    daily_limits: dict[str, int] = Field(
        default_factory=dict,
        description=(
            "Generations per model and key in a rolling 24 h (Runway's maxDailyGenerations); "
            "a submission over it answers 429."
        ),
    )
    runway_retired: frozenset[str] = Field(
        default=frozenset({"gen3a_turbo", "gen4_aleph"}),
        description=(
            "Models Runway's route refuses as retired (400). Empty it to emulate Runway "
            "before 2026-07-30, when gen3a_turbo was still served (its 4.18 rules)."
        ),
    )
    upload_ttl: float = Field(
        default=86_400.0, gt=0, description="Lifetime of a Runway ephemeral upload (runway://)."
    )
    runway_max_monthly_credit_spend: int = Field(
        default=1_000_000, ge=0, description="`tier.maxMonthlyCreditSpend` of GET /v1/organization."
    )
    media_cache: bool = Field(
        default=False,
        description="Reuse media already made for identical inputs (for benchmarks).",
    )
    stock_media: bool = Field(
        default=False,
        description=(
            "Serve one stock still and one stock video per size (and duration, frame rate) "
            "to every job instead of making each from its prompt and input images, which are "
            "then not fetched (for benchmarks: media making is then not what is measured)."
        ),
    )
    media_workers: int = Field(
        default=2,
        ge=1,
        le=32,
        description="Threads that fetch inputs and encode media (read when the first job starts).",
    )
    fetch_timeout: float = Field(
        default=10.0, gt=0, description="Timeout for fetching an input image over loopback."
    )

    @field_validator("latency_range")
    @classmethod
    def _check_range(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None:
            low, high = value
            if low < 0 or high < low:
                raise ValueError("latency_range must be (low, high) with 0 <= low <= high.")
        return value

    @model_validator(mode="after")
    def _check_keys(self) -> EmulatorConfig:
        if self.api_keys is not None and any(not key for key in self.api_keys):
            raise ValueError("api_keys must not contain an empty key.")
        return self

    def updated(self, **changes: object) -> EmulatorConfig:
        """Return a validated copy with `changes` applied."""
        unknown = set(changes) - set(type(self).model_fields)
        if unknown:
            raise ValueError(f"unknown config field(s): {', '.join(sorted(unknown))}")
        return type(self).model_validate({**self.model_dump(), **changes})

    def to_json(self) -> dict:
        """The configuration as plain JSON values."""
        data = self.model_dump(mode="json")
        if data.get("api_keys") is not None:
            data["api_keys"] = sorted(data["api_keys"])
        data["runway_retired"] = sorted(data["runway_retired"])
        return data
