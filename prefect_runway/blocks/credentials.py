"""Credentials blocks, one per provider. The block you pass picks the provider.

Each block holds the API key as a ``SecretStr`` (read with ``get_secret_value()`` only where
a request is authenticated), the API's base URL, and how to poll and pace calls. Its
:meth:`get_client` returns a ready :class:`~prefect_runway.engine.GenerationClient`.
"""

from __future__ import annotations

import dataclasses
from abc import ABC
from typing import Any, ClassVar, Literal

from prefect.blocks.abstract import CredentialsBlock
from pydantic import Field, HttpUrl, SecretStr, field_validator, model_validator

from prefect_runway.blocks.rate_limits import PREFECT_GLOBAL_SLOTS
from prefect_runway.engine import EngineConfig, GenerationClient, PollSchedule, RetryPolicy
from prefect_runway.engine.config import DownloadLimits
from prefect_runway.engine.ratelimit import limiter_for
from prefect_runway.providers import Provider, get_provider
from prefect_runway.providers.wire import check_base_url

_DOCS = HttpUrl("https://github.com/prefect-runway/prefect-runway#readme")
_LOGO = HttpUrl("https://avatars.githubusercontent.com/u/30443925?s=200")


class ProviderCredentials(CredentialsBlock, ABC):
    """What every provider's credentials block has (an interface: not registered itself).

    Generic over the three providers; :class:`RunwayCredentials` is Runway's own API.
    """

    provider_name: ClassVar[str]

    api_key: SecretStr = Field(description="The provider's API key.")
    base_url: str | None = Field(
        default=None,
        description=(
            "The API base URL; leave empty for the provider's public API. https only (the "
            "key is sent there); plain http only on loopback (127.0.0.1, ::1, localhost)."
        ),
    )
    poll_interval_seconds: float = Field(
        default=0.5,
        gt=0,
        description=(
            "The shortest interval between two status polls of one job, in seconds: the "
            "interval as completion nears, and the first one while nothing is known of the "
            "model's latency."
        ),
    )
    max_poll_interval_seconds: float = Field(
        default=15.0,
        gt=0,
        description="The longest interval between two status polls of one job (the first included).",
    )
    adaptive_polling: bool = Field(
        default=True,
        description=(
            "Space status polls by what is known of each model's latency (learned in this "
            "process; priors for the public APIs): the first poll near the expected minimum, "
            "tighter as completion nears. Off: intervals grow from the shortest to the longest."
        ),
    )
    wait_timeout_seconds: float = Field(
        default=1800.0, gt=0, description="How long to wait for one job before giving up."
    )
    queue_timeout_seconds: float = Field(
        default=3600.0,
        gt=0,
        description=(
            "How long one job may sit THROTTLED (held back by the provider's concurrency "
            "limit, Runway) before giving up; that time does not count against "
            "wait_timeout_seconds."
        ),
    )
    max_requests_per_second: float | None = Field(
        default=10.0,
        gt=0,
        description=(
            "Cap on requests per second with this key (status polls included), shared by all "
            "tasks in a process; empty for no cap."
        ),
    )
    global_rate_limit: str | None = Field(
        default=None,
        description=(
            "Name of a Prefect global concurrency limit (with slot decay) that every request "
            "with this key also takes a slot of, so that many workers share one budget."
        ),
    )
    max_still_bytes: int = Field(
        default=DownloadLimits.max_image_bytes,
        gt=0,
        description=(
            "The largest still downloaded, in bytes (default 64 MiB): a larger one, by its "
            "Content-Length or by what arrives, fails with DownloadTooLarge and nothing of "
            "it is kept."
        ),
    )
    max_video_bytes: int = Field(
        default=DownloadLimits.max_video_bytes,
        gt=0,
        description=(
            "The largest video downloaded, in bytes (default 2 GiB): a larger one, by its "
            "Content-Length or by what arrives, fails with DownloadTooLarge and nothing of "
            "it is kept."
        ),
    )
    daily_budget: float | str | None = Field(
        default=None,
        description=(
            "What all flow runs may spend with this block in one day (the UTC calendar day): "
            "a number in the provider's unit (Runway credits, AIMLAPI credits, Segmind USD) "
            "or a currency like 'USD 50'. A storyboard or image_to_video whose plan would "
            "pass it with today's spend is refused before anything is sent; during a "
            "storyboard no new job starts past it. Spend is recorded beside the submission "
            "ledger in the run's storage (prefect_runway.spend). Empty: no daily cap."
        ),
    )

    prices: dict[str, float | dict[str, Any]] | None = Field(
        default=None,
        description=(
            "Prices of models on this provider where they differ from the built-in table "
            "(prefect_runway.pricing) or it has none: {model: amount} or {model: {amount or "
            "tiers, unit, per}}; a model the table lacks is priced in the provider's unit, "
            "per job, unless per: second is given. Used by plans, budgets and the cost "
            "ledger's estimates. A run with a budget refuses a model with no known price."
        ),
    )

    @field_validator("daily_budget")
    @classmethod
    def _check_daily_budget(cls, value: float | str | None) -> float | str | None:
        from prefect_runway.money.budget import Budget

        Budget.parse(value, field="daily_budget")  # InvalidRequest (a ValueError) if not
        return value

    @model_validator(mode="after")
    def _check_prices(self) -> ProviderCredentials:
        if self.prices:
            from prefect_runway.money.prices import prices_of

            try:
                prices_of(self)
            except ValueError as exc:  # naming the model and the fields allowed
                raise ValueError(f"prices: {exc}") from None
        return self

    def block_initialization(self) -> None:
        """Refuse a base URL the key must not be sent to, when the block is built or loaded.

        Raises:
            InvalidRequest: ``base_url`` is not https (plain http only on loopback), or not
                a URL (a pydantic validator would wrap it in a ValidationError).
        """
        if self.base_url:
            check_base_url(self.base_url)

    def provider(self) -> Provider:
        """The provider translation these credentials are for."""
        return get_provider(self.provider_name)

    def saved_name(self) -> str | None:
        """``block-type/name`` of this block where it was saved or loaded by name (what the
        CLI's ``--credentials`` takes), else None."""
        name = self._block_document_name
        return f"{self.get_block_type_slug()}/{name}" if name else None

    def resolved_base_url(self) -> str:
        """The base URL in use: the block's, or the provider's public API.

        Raises:
            InvalidRequest: the block's ``base_url`` (set after the block was built) is not
                one the key may be sent to.
        """
        if self.base_url:
            return check_base_url(self.base_url).rstrip("/")
        return self.provider().default_base_url.rstrip("/")

    def poll_schedule(self) -> PollSchedule:
        """The poll schedule from this block's settings.

        Whatever the schedule learns of a model's latency, every interval between two polls
        of a job stays within [``poll_interval_seconds``, ``max_poll_interval_seconds``] and
        the wait within ``wait_timeout_seconds`` (see :mod:`prefect_runway.engine.polling`).
        """
        return PollSchedule(
            interval=self.poll_interval_seconds,
            max_interval=max(self.max_poll_interval_seconds, self.poll_interval_seconds),
            timeout=self.wait_timeout_seconds,
            adaptive=self.adaptive_polling,
        )

    def get_client(
        self, retry: RetryPolicy | None = None, config: EngineConfig | None = None
    ) -> GenerationClient:
        """A client for this provider and key; use it as ``async with``.

        Args:
            retry: The retry policy (default: ``config``'s).
            config: Retries, timeouts, connection limits (default: :class:`EngineConfig`);
                its download limits are this block's ``max_still_bytes`` and
                ``max_video_bytes``.

        Returns:
            A :class:`~prefect_runway.engine.GenerationClient`.
        """
        config = dataclasses.replace(config or EngineConfig(), downloads=DownloadLimits(
            max_image_bytes=self.max_still_bytes, max_video_bytes=self.max_video_bytes,
        ))
        return GenerationClient(
            self.provider(),
            self.api_key,
            self.resolved_base_url(),
            retry=retry,
            config=config,
            poll=self.poll_schedule(),
            queue_timeout=self.queue_timeout_seconds,
            limiter=limiter_for(
                self.provider_name, self.resolved_base_url(), self.api_key,
                self.max_requests_per_second, self.global_rate_limit, PREFECT_GLOBAL_SLOTS,
            ),
        )


class SegmindCredentials(ProviderCredentials):
    """Credentials for Runway's models on Segmind's serverless API.

    Attributes:
        api_key: The Segmind API key (sent as ``x-api-key``).
        base_url: Segmind's API base URL; empty for ``https://api.segmind.com``.

    Example:
        Load stored Segmind credentials and generate a still:
        ```python
        from prefect import flow
        from prefect_runway import SegmindCredentials, generate_image

        @flow
        def nightly_still():
            credentials = SegmindCredentials.load("BLOCK_NAME")
            return generate_image(
                prompt="a lighthouse at dusk",
                reference_images=[{"uri": "https://example.com/ref.png", "tag": "ref"}],
                credentials=credentials,
            )
        ```
    """

    _block_type_name = "Segmind Credentials"
    _block_type_slug = "segmind-credentials"
    _logo_url = _LOGO
    _documentation_url = _DOCS
    provider_name: ClassVar[str] = "segmind"


class AimlapiCredentials(ProviderCredentials):
    """Credentials for Runway's video models on AI/ML API (AIMLAPI).

    Attributes:
        api_key: The AIMLAPI key (sent as ``Authorization: Bearer``).
        base_url: AIMLAPI's base URL; empty for ``https://api.aimlapi.com``.
        route: ``universal`` (``/v2/video/generations``) or ``legacy``
            (``/v2/generate/video/runway/generation``).

    Example:
        Load stored AIMLAPI credentials and animate a still:
        ```python
        from prefect import flow
        from prefect_runway import AimlapiCredentials, animate_image

        @flow
        def animate():
            credentials = AimlapiCredentials.load("BLOCK_NAME")
            return animate_image(
                image="https://example.com/still.png",
                prompt="slow dolly in",
                credentials=credentials,
            )
        ```
    """

    _block_type_name = "AIMLAPI Credentials"
    _block_type_slug = "aimlapi-credentials"
    _logo_url = _LOGO
    _documentation_url = _DOCS
    provider_name: ClassVar[str] = "aimlapi"

    route: Literal["universal", "legacy"] = Field(
        default="universal",
        description="Which AIMLAPI route to use: universal (default) or legacy.",
    )

    def provider(self) -> Provider:
        """The AIMLAPI translation on this block's route."""
        return get_provider(self.provider_name, route=self.route)


class RunwayCredentials(ProviderCredentials):
    """Credentials for Runway's own API (``api.dev.runwayml.com``).

    Attributes:
        api_key: The Runway API secret (sent as ``Authorization: Bearer``).
        base_url: Runway's base URL; empty for ``https://api.dev.runwayml.com``.

    Example:
        Load stored Runway credentials and run the still-to-video chain:
        ```python
        from prefect import flow
        from prefect_runway import RunwayCredentials, image_to_video

        @flow
        def chain():
            credentials = RunwayCredentials.load("BLOCK_NAME")
            return image_to_video(
                still_prompt="a lighthouse at dusk",
                motion_prompt="waves roll in, slow dolly",
                credentials=credentials,
            )
        ```
    """

    _block_type_name = "Runway Credentials"
    _block_type_slug = "runway-credentials"
    _logo_url = _LOGO
    _documentation_url = _DOCS
    provider_name: ClassVar[str] = "runway"
