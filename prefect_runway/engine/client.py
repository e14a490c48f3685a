"""The facade of the engine: submit, status, result, refresh_outputs, cancel, wait, download.

:class:`GenerationClient` puts together the pieces of :mod:`prefect_runway.engine`: a
:class:`~prefect_runway.engine.transport.Transport` (one httpx client, the key's origin
check, scrubbing, TLS), the one retry loop with its submit and read classifiers
(:mod:`prefect_runway.engine.retry`), the downloader (:mod:`prefect_runway.engine.download`)
and the latency-aware poll schedule (:mod:`prefect_runway.polling`). Everything
provider-specific comes from a :class:`~prefect_runway.providers.base.Provider` (pure
translation); everything Prefect-specific lives in ``tasks/`` and ``flows/``. This module
knows neither Prefect nor any provider's field names.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from pydantic import SecretStr

from prefect_runway.engine.config import EngineConfig, RetryPolicy, Timeouts
from prefect_runway.engine.download import DownloadedFile, Downloader
from prefect_runway.engine.retry import read_classifier, submit_classifier, with_retries
from prefect_runway.engine.transport import Transport
from prefect_runway.errors import (
    BadResponse,
    GenerationCancelled,
    GenerationFailed,
    GenerationTimedOut,
    SubmissionUncertain,
)
from prefect_runway.models import (
    Balance,
    Generation,
    GenerationResult,
    JobState,
    Request,
    StatusUpdate,
    utc_now,
)
from prefect_runway.polling import (
    LATENCY,
    LatencyBook,
    LatencyTrack,
    PollSchedule,
    latency_key,
)
from prefect_runway.providers.base import HttpCall, PreparedRequest, Provider

__all__ = ["DownloadedFile", "GenerationClient", "PollSchedule", "RetryPolicy"]

logger = logging.getLogger("prefect_runway.engine.client")


class GenerationClient:
    """Submit, wait for, download and cancel generations on one provider with one key.

    Args:
        provider: The provider translation.
        api_key: The API key; read only where a request is authenticated.
        base_url: The API base URL (None: the provider's).
        retry: The retry policy for every call (overrides ``config.retry``).
        poll: The poll schedule of :meth:`wait`.
        timeout: httpx timeouts for one request (overrides ``config.timeouts``).
        limiter: An async context manager factory entered around every request, to share a
            rate budget (see :mod:`prefect_runway.ratelimit`), or None.
        http: An AsyncClient to use instead of making one (not closed here).
        latency: Where :meth:`wait` learns and reads each model's latency (see
            :mod:`prefect_runway.polling`); default the book shared by the whole process.
        config: Retries, timeouts, connection limits and user agent, as one value.

    Example:
        ```python
        from pydantic import SecretStr
        from prefect_runway.engine import GenerationClient
        from prefect_runway.models import ImageRequest
        from prefect_runway.providers import get_provider

        async with GenerationClient(get_provider("segmind"), SecretStr("KEY")) as client:
            generation = await client.submit(ImageRequest(prompt="...", reference_images=[...]))
            result = await client.wait(generation)
        ```
    """

    def __init__(
        self,
        provider: Provider,
        api_key: SecretStr,
        base_url: str | None = None,
        *,
        retry: RetryPolicy | None = None,
        poll: PollSchedule | None = None,
        timeout: httpx.Timeout | Timeouts | None = None,
        limiter: Callable[[], Any] | None = None,
        http: httpx.AsyncClient | None = None,
        latency: LatencyBook | None = None,
        config: EngineConfig | None = None,
    ) -> None:
        config = config or EngineConfig()
        if retry is not None:
            config = EngineConfig(retry, config.timeouts, config.limits, config.user_agent)
        if isinstance(timeout, Timeouts):
            config = EngineConfig(config.retry, timeout, config.limits, config.user_agent)
        self.config = config
        self.provider = provider
        self._api_key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        self.base_url = (base_url or provider.default_base_url).rstrip("/")
        self.retry = config.retry
        self.poll = poll or PollSchedule()
        self.latency = latency if latency is not None else LATENCY
        self.transport = Transport(provider, self._api_key, self.base_url, config,
                                   limiter=limiter, http=http)
        if isinstance(timeout, httpx.Timeout):
            self.transport.httpx_timeout = timeout
        self.downloader = Downloader(self.transport, self.retry)

    def __repr__(self) -> str:
        return f"GenerationClient(provider={self.provider.name!r}, base_url={self.base_url!r})"

    async def __aenter__(self) -> GenerationClient:
        await self.transport.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.transport.close()

    @property
    def http(self) -> httpx.AsyncClient:
        return self.transport.http

    # ---- the public steps ----------------------------------------------------------------

    def prepare(self, request: Request) -> PreparedRequest:
        """Validate ``request`` for this provider and build its body; sends nothing.

        Flows prepare once in :mod:`prefect_runway.plan` and submit the prepared request.
        """
        return self.provider.prepare(request, self.base_url)

    async def submit(self, request: Request | PreparedRequest) -> Generation:
        """Submit one job. Retried only where the provider provably did not take it.

        Raises:
            InvalidRequest: before anything is sent, if the request breaks a rule.
            SubmissionUncertain: if the outcome is unknown (it is not resent).
            ProviderError: the typed error for the provider's refusal.
        """
        prepared = request if isinstance(request, PreparedRequest) else self.prepare(request)
        call = self.provider.submit_call(prepared)
        response = await with_retries(
            self.retry, lambda: self.transport.send(call),
            submit_classifier(self.transport, prepared.fingerprint),
        )
        try:
            generation = self.provider.parse_submit(prepared, self.transport.body(response))
        except BadResponse as exc:
            # 2xx but unreadable: the job was most likely created.
            raise SubmissionUncertain(
                "the submit was accepted but its answer could not be read",
                fingerprint=prepared.fingerprint,
                provider=self.provider.name,
                status_code=response.status_code,
                detail=exc.detail,
            ) from None
        logger.info(
            "Submitted %s %s job %s (fingerprint %s)",
            generation.provider, generation.model, generation.job_id, generation.fingerprint[:12],
        )
        return generation

    async def status(self, generation: Generation) -> StatusUpdate:
        """Poll a job once (with read retries) and return what the provider says."""
        response, body = await self._read(self.provider.status_call(generation), generation.job_id)
        return self.provider.parse_status(generation, response.status_code, body)

    async def refresh_outputs(self, generation: Generation) -> StatusUpdate:
        """The job's current status with its outputs (fresh signed URLs), fetching the result
        body where the status answer does not carry them."""
        update = await self.status(generation)
        if update.needs_result_call:
            update = await self.result(generation, update)
        return update

    async def wait(
        self,
        generation: Generation,
        *,
        timeout: float | None = None,
        on_update: Callable[[StatusUpdate], Awaitable[None] | None] | None = None,
    ) -> GenerationResult:
        """Poll until the job is terminal, within a deadline.

        Polls follow :attr:`poll`: with ``adaptive`` on, spaced by what is known of the
        model's latency at this API (a first poll near the expected minimum, then tighter
        intervals as completion nears), and what each poll sees teaches the latency book.

        Args:
            generation: The submitted job.
            timeout: Overall deadline in seconds (None: the poll schedule's).
            on_update: Called with each status whose state differs from the last one.

        Returns:
            The finished job's outputs, metrics and cost.

        Raises:
            GenerationFailed: the job ended FAILED (with the provider's message).
            GenerationCancelled: the job was cancelled.
            GenerationExpired: the provider no longer holds the job.
            GenerationTimedOut: the deadline passed; carries the job id to resume later.
        """
        started = time.monotonic()
        deadline = started + (timeout if timeout is not None else self.poll.timeout)
        # The job's age: from its submission (which may be long ago, for a resumed wait).
        try:
            submitted_age = max(0.0, (utc_now() - generation.submitted_at).total_seconds())
        except TypeError:  # a naive timestamp from elsewhere: count from now
            submitted_age = 0.0
        track = None
        if self.poll.adaptive:
            track = self.latency.track(
                latency_key(generation.provider, generation.base_url, generation.model,
                            generation.request),
                public=generation.base_url.rstrip("/") == self.provider.default_base_url.rstrip("/"),
            )
        try:
            return await self._poll_until_done(
                generation, deadline, timeout, on_update, track,
                lambda: submitted_age + time.monotonic() - started,
            )
        finally:
            if track is not None:
                track.close()

    async def _poll_until_done(
        self,
        generation: Generation,
        deadline: float,
        timeout: float | None,
        on_update: Callable[[StatusUpdate], Awaitable[None] | None] | None,
        track: LatencyTrack | None,
        age: Callable[[], float],
    ) -> GenerationResult:
        last_state: JobState | None = None
        last_raw: str | None = None
        classic = self.poll.delays()
        first = True
        while True:
            window = track.window() if track is not None else None
            if window is None or (first and self.poll.first_delay is not None):
                delay = next(classic)
            else:
                delay = self.poll.next_delay(age(), window)
            first = False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise GenerationTimedOut(
                    "the job did not finish before the deadline; it may still finish remotely — "
                    "wait again with this job id",
                    timeout=timeout if timeout is not None else self.poll.timeout,
                    last_status=last_raw,
                    provider=generation.provider,
                    job_id=generation.job_id,
                )
            await asyncio.sleep(min(delay, remaining))
            update = await self.status(generation)
            if track is not None:
                if update.state.terminal:
                    if update.state is JobState.SUCCEEDED:
                        track.finished(age())
                else:
                    track.pending(age())
            if update.state is not last_state:
                logger.info(
                    "%s job %s is %s", generation.provider, generation.job_id,
                    update.raw_status or update.state.value,
                )
                last_state = update.state
                if on_update is not None:
                    maybe = on_update(update)
                    if asyncio.iscoroutine(maybe):
                        await maybe
            last_raw = update.raw_status
            if not update.state.terminal:
                continue
            if update.state is JobState.FAILED:
                raise GenerationFailed(
                    "the generation failed",
                    provider=generation.provider,
                    job_id=generation.job_id,
                    detail=update.error,
                    failure_code=update.failure_code,
                )
            if update.state is JobState.CANCELLED:
                raise GenerationCancelled(
                    "the generation was cancelled", provider=generation.provider, job_id=generation.job_id,
                )
            if update.needs_result_call:
                update = await self.result(generation, update)
            if not update.outputs:
                raise BadResponse(
                    "the job succeeded but named no output", provider=generation.provider,
                    job_id=generation.job_id,
                )
            return GenerationResult(
                generation=generation,
                state=update.state,
                outputs=update.outputs,
                metrics=update.metrics,
                cost=update.cost,
            )

    async def result(self, generation: Generation, status: StatusUpdate | None = None) -> StatusUpdate:
        """Fetch the final result body, where the status answer does not carry the outputs."""
        call = self.provider.result_call(generation)
        if call is None:
            return status or await self.status(generation)
        response, body = await self._read(call, generation.job_id)
        update = self.provider.parse_status(generation, response.status_code, body)
        if status is not None and not update.metrics:
            update.metrics = status.metrics
        return update

    async def cancel(self, generation: Generation) -> bool:
        """Cancel a pending or running job. Returns False where the provider cannot cancel."""
        call = self.provider.cancel_call(generation)
        if call is None:
            return False
        response, _ = await self._read(call, generation.job_id, ok=(200, 202, 204, 404))
        logger.info(
            "Cancelled %s job %s (http %s)", generation.provider, generation.job_id, response.status_code,
        )
        return True

    async def download(
        self,
        url: str,
        directory: str | os.PathLike[str],
        *,
        expected_media: tuple[str, ...] = ("image/", "video/"),
        job_id: str | None = None,
        partial_name: str | None = None,
    ) -> DownloadedFile:
        """Stream ``url`` to a temporary file in ``directory``, hashed, resumed and verified
        (see :meth:`prefect_runway.engine.download.Downloader.download`)."""
        return await self.downloader.download(
            url, directory, expected_media=expected_media, job_id=job_id, partial_name=partial_name,
        )

    async def balance(self) -> Balance:
        """Read the account's balance (and, on Runway, its per-model limits).

        Raises:
            AuthenticationError: the key is not allowed to read it.
        """
        call = self.provider.balance_call(self.base_url)
        response, body = await self._read(call, None)
        return self.provider.parse_balance(response.status_code, body)

    async def _read(
        self, call: HttpCall, job_id: str | None, ok: tuple[int, ...] = ()
    ) -> tuple[httpx.Response, Any]:
        """Send an idempotent call through the retry loop with the read classifier."""
        return await with_retries(
            self.retry, lambda: self.transport.send(call),
            read_classifier(self.transport, call, job_id, ok),
        )
