"""The facade of the engine: submit, status, result, refresh_outputs, cancel, wait, download.

:class:`GenerationClient` puts together the pieces of :mod:`prefect_runway.engine`: a
:class:`~prefect_runway.engine.transport.Transport` (one httpx client, the key's origin
check, scrubbing, TLS), the one retry loop with its submit and read classifiers
(:mod:`prefect_runway.engine.retry`), the downloader (:mod:`prefect_runway.engine.download`)
and the latency-aware poll schedule (:mod:`prefect_runway.engine.polling`). Everything
provider-specific comes from a :class:`~prefect_runway.providers.base.Provider` (pure
translation); everything Prefect-specific lives in ``tasks/`` and ``flows/``. This module
knows neither Prefect nor any provider's field names.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

import httpx
from pydantic import SecretStr

from prefect_runway.engine.config import EngineConfig, RetryPolicy, Timeouts
from prefect_runway.engine.credits import CreditBook, credit_book_for
from prefect_runway.engine.download import DownloadedFile, Downloader, OnWritten, max_downloads
from prefect_runway.engine.events import EngineLogger
from prefect_runway.engine.polling import (
    LATENCY,
    LatencyBook,
    LatencyTrack,
    PollSchedule,
    latency_key,
)
from prefect_runway.engine.progress import ProgressLine, watch_poll
from prefect_runway.engine.retry import (
    RETRY_STATUS,
    Retry,
    read_classifier,
    submit_classifier,
    with_retries,
)
from prefect_runway.engine.transport import Transport
from prefect_runway.errors import (
    BadResponse,
    GenerationCancelled,
    GenerationExpired,
    GenerationFailed,
    GenerationTimedOut,
    PrefectRunwayError,
    ProviderRejected,
    ProviderUnavailable,
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
from prefect_runway.providers.base import PreparedRequest, Provider
from prefect_runway.providers.wire import HttpCall, PendingUpload, redact_url

#: How long a job may sit THROTTLED (held back by the provider's concurrency limit) by default,
#: in seconds; this time does not count against the wait's deadline.
DEFAULT_QUEUE_TIMEOUT = 3600.0

__all__ = ["DownloadedFile", "GenerationClient", "PollSchedule", "RetryPolicy"]

logger = EngineLogger("prefect_runway.engine.client")

P = ParamSpec("P")
R = TypeVar("R")


def _scrubbed(
    method: Callable[Concatenate[GenerationClient, P], Awaitable[R]],
) -> Callable[Concatenate[GenerationClient, P], Awaitable[R]]:
    """A public step whose errors leave with our key scrubbed from their text (the answers
    they were made from are parsed as they came: see ``Transport.scrub``)."""

    @functools.wraps(method)
    async def step(self: GenerationClient, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(self, *args, **kwargs)
        except PrefectRunwayError as exc:
            self.transport.scrub_error(exc)
            raise

    return step


#: A wait that starts later than this after the job's submission is a resumed one (a job
#: found in the submit cache, or waited for again after a crash or a timeout).
RESUMED_WAIT_SECONDS = 10.0


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
            rate budget (see :mod:`prefect_runway.engine.ratelimit`), or None.
        http: An AsyncClient to use instead of making one (not closed here).
        latency: Where :meth:`wait` learns and reads each model's latency (see
            :mod:`prefect_runway.engine.polling`); default the book shared by the whole process.
        config: Retries, timeouts, connection limits and user agent, as one value.
        queue_timeout: How long :meth:`wait` lets a job sit THROTTLED, in seconds (that time
            does not count against the wait's deadline).

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
        queue_timeout: float | None = None,
    ) -> None:
        config = config or EngineConfig()
        max_downloads()  # a bad PREFECT_RUNWAY_MAX_DOWNLOADS fails here, before any request
        self.queue_timeout = DEFAULT_QUEUE_TIMEOUT if queue_timeout is None else queue_timeout
        if retry is not None:
            config = dataclasses.replace(config, retry=retry)
        if isinstance(timeout, Timeouts):
            config = dataclasses.replace(config, timeouts=timeout)
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
        # Where submit answers report the balance after them (Segmind), what each was charged.
        self.credits: CreditBook | None = None
        if type(provider).remaining_credits is not Provider.remaining_credits:
            self.credits = credit_book_for(provider.name, self.base_url, self._api_key)

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

    @_scrubbed
    async def submit(self, request: Request | PreparedRequest) -> Generation:
        """Submit one job. Retried only where the provider provably did not take it.

        Raises:
            InvalidRequest: before anything is sent, if the request breaks a rule.
            SubmissionUncertain: if the outcome is unknown (it is not resent).
            ProviderError: the typed error for the provider's refusal.
        """
        prepared = request if isinstance(request, PreparedRequest) else self.prepare(request)
        call = self.provider.submit_call(prepared)
        ticket = self.credits.begin() if self.credits is not None else None
        try:
            response = await with_retries(
                self.retry, lambda: self.transport.send(call),
                submit_classifier(self.transport, prepared.fingerprint),
                what=f"{self.provider.name} submit of {prepared.model} (fingerprint {prepared.fingerprint[:12]})",
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
        except BaseException:
            if self.credits is not None and ticket is not None:
                self.credits.failed(ticket)  # a job may exist: the balance is unknown
            raise
        if self.credits is not None and ticket is not None:
            generation.charged = self.credits.answered(
                ticket, generation.job_id, self.provider.remaining_credits(response.headers),
            )
        logger.info(
            "Submitted %s %s job %s (fingerprint %s)",
            generation.provider, generation.model, generation.job_id, generation.fingerprint[:12],
        )
        return generation

    @_scrubbed
    async def status(self, generation: Generation) -> StatusUpdate:
        """Poll a job once (with read retries) and return what the provider says."""
        response, body = await self._read(self.provider.status_call(generation), generation.job_id)
        return self._shown(self.provider.parse_status(generation, response.status_code, body))

    @_scrubbed
    async def refresh_outputs(self, generation: Generation) -> StatusUpdate:
        """The job's current status with its outputs (fresh signed URLs), fetching the result
        body where the status answer does not carry them."""
        update = await self.status(generation)
        if update.needs_result_call:
            update = await self.result(generation, update)
        return update

    @_scrubbed
    async def wait(
        self,
        generation: Generation,
        *,
        timeout: float | None = None,
        on_update: Callable[[StatusUpdate], Awaitable[None] | None] | None = None,
        queue_timeout: float | None = None,
    ) -> GenerationResult:
        """Poll until the job is terminal, within a deadline.

        Polls follow :attr:`poll`: with ``adaptive`` on, spaced by what is known of the
        model's latency at this API (a first poll near the expected minimum, then tighter
        intervals as completion nears), and what each poll sees teaches the latency book.

        Args:
            generation: The submitted job.
            timeout: Overall deadline in seconds (None: the poll schedule's).
            on_update: Called with each status whose state differs from the last one.
            queue_timeout: How long the job may sit THROTTLED, in seconds (None: the
                client's :attr:`queue_timeout`). Time spent THROTTLED (held back by the
                provider's concurrency limit) does not count against ``timeout``.

        Returns:
            The finished job's outputs, metrics and cost.

        Raises:
            GenerationFailed: the job ended FAILED (with the provider's message); the
                provider's typed subclass where its failure code says more
                (``Provider.failure_error``: ContentRejected, OutputRejected,
                GenerationInternalError, InvalidAsset).
            GenerationCancelled: the job was cancelled.
            GenerationExpired: the provider no longer holds the job.
            GenerationTimedOut: the deadline passed, or the job sat THROTTLED longer than
                ``queue_timeout``; carries the job id to resume later.
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
            # A wait on an older job (found in the cache, resumed after a crash) polls late
            # not by choice: a job it never sees running tells nothing of its latency.
            track.resumed = submitted_age > RESUMED_WAIT_SECONDS
        try:
            result = await self._poll_until_done(
                generation, deadline, timeout, on_update, track,
                lambda: submitted_age + time.monotonic() - started,
                self.queue_timeout if queue_timeout is None else queue_timeout,
            )
        except (GenerationFailed, GenerationCancelled, GenerationExpired):
            if self.credits is not None:  # it may be refunded: the balance moves
                self.credits.finished(generation.job_id, succeeded=False)
            raise
        else:
            if self.credits is not None:
                self.credits.finished(generation.job_id, succeeded=True)
            return result
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
        queue_timeout: float,
    ) -> GenerationResult:
        last_state: JobState | None = None
        last_raw: str | None = None
        classic = self.poll.delays()
        first = True
        progress = ProgressLine(generation)
        queue = _QueueClock(queue_timeout, time.monotonic())
        while True:
            window = track.window() if track is not None else None
            if window is None or (first and self.poll.first_delay is not None):
                delay = next(classic)
            else:
                delay = self.poll.next_delay(age(), window)
            first = False
            now = time.monotonic()
            if queue.over(now):
                raise GenerationTimedOut(
                    f"the job sat THROTTLED (held back by {generation.provider}'s concurrency "
                    f"limit) for more than queue_timeout ({queue_timeout:g} s); it may still run "
                    "remotely — wait again with this job id",
                    timeout=queue_timeout,
                    last_status=last_raw,
                    provider=generation.provider,
                    job_id=generation.job_id,
                )
            # Time spent THROTTLED moves the deadline out; ``queue_timeout`` bounds it instead.
            remaining = min(deadline + queue.spent(now) - now, queue.remaining(now))
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
            progress.seen(update, age(), window)
            watch_poll(generation, update, age(), window)
            self._note_throttle(generation, update, queue, time.monotonic())
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
                raise self.provider.failure_error(generation, update)
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

    def _note_throttle(
        self, generation: Generation, update: StatusUpdate, queue: _QueueClock, now: float
    ) -> None:
        """Count THROTTLED time and log once when the job enters and leaves that state."""
        if update.throttled and queue.since is None:
            queue.enter(now)
            logger.warning(
                "%s job %s is THROTTLED: %s; queued time does not count against the wait's "
                "deadline (queue_timeout %g s)",
                generation.provider, generation.job_id,
                update.throttle_reason or "the provider is holding it back", queue.limit,
            )
        elif not update.throttled and queue.since is not None:
            queue.leave(now)
            logger.info(
                "%s job %s left THROTTLED after %.1f s queued; it is %s",
                generation.provider, generation.job_id, queue.total,
                update.raw_status or update.state.value,
            )
        queue.seen(now)

    # ---- uploads -----------------------------------------------------------------------

    @_scrubbed
    async def upload(self, pending: PendingUpload) -> str:
        """Upload one local image (Runway: an ephemeral upload) and return its URI.

        Two steps: open the upload at the API (``provider.upload_call``, authenticated),
        then POST the file as ``multipart/form-data`` with the presigned form's fields to
        the form's URL, without the API key.

        Returns:
            The uploaded image's URI (``runway://...``).

        Raises:
            InvalidRequest: the provider has no upload route.
            ProviderError: the upload was refused or the form could not be posted.
        """
        call = self.provider.upload_call(pending.filename, self.base_url)
        response, body = await self._read(call, None)
        form = self.provider.parse_upload(response.status_code, body)
        name = self.provider.name

        async def post() -> httpx.Response:
            files = {form.file_field: (pending.filename, pending.data, pending.media_type)}
            async with self.transport.limit():
                # A fresh request: no default auth, no provider headers (the form is presigned).
                return await self.http.post(form.url, data=form.fields, files=files)

        def classify(outcome: Any, may_retry: bool) -> Any:
            if isinstance(outcome, httpx.TransportError) or (
                isinstance(outcome, httpx.Response) and outcome.status_code in RETRY_STATUS
            ):
                if may_retry:
                    return Retry()
                raise ProviderUnavailable(
                    f"the upload of {pending.filename} kept failing", provider=name,
                ) from None
            if isinstance(outcome, BaseException):
                raise outcome
            if not 200 <= outcome.status_code < 300:
                raise ProviderRejected(
                    f"the upload form refused {pending.filename}", provider=name,
                    status_code=outcome.status_code, detail=outcome.text[:500],
                )
            return outcome

        await with_retries(self.retry, post, classify)
        logger.info(
            "Uploaded %s (%d bytes, sha256 %s) to %s as %s",
            pending.filename, pending.size, pending.sha256[:12], name, form.uri,
        )
        return form.uri

    @_scrubbed
    async def upload_images(self, request: Request, *, force: bool = False) -> Request:
        """``request`` with its local images uploaded where the provider needs it.

        Uploads each image ``provider.uploads_needed`` names (those too long for a data URI,
        or every local image when ``force``) and returns the request with their URIs (and
        sha256, which stays what the fingerprint knows them by). Unchanged where nothing
        needs uploading.
        """
        pending = self.provider.uploads_needed(request, force=force)
        if not pending:
            return request
        uploaded = {p.field: await self.upload(p) for p in pending}
        return self.provider.apply_uploads(request, uploaded, pending)  # type: ignore[attr-defined]

    @_scrubbed
    async def result(self, generation: Generation, status: StatusUpdate | None = None) -> StatusUpdate:
        """Fetch the final result body, where the status answer does not carry the outputs."""
        call = self.provider.result_call(generation)
        if call is None:
            return status or await self.status(generation)
        response, body = await self._read(call, generation.job_id)
        update = self._shown(self.provider.parse_status(generation, response.status_code, body))
        if status is not None and not update.metrics:
            update.metrics = status.metrics
        return update

    @_scrubbed
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

    @_scrubbed
    async def download(
        self,
        url: str,
        directory: str | os.PathLike[str],
        *,
        expected_media: tuple[str, ...] = ("image/", "video/"),
        job_id: str | None = None,
        partial_name: str | None = None,
        on_written: OnWritten | None = None,
    ) -> DownloadedFile:
        """Stream ``url`` to a temporary file in ``directory``, hashed, resumed and verified
        (see :meth:`prefect_runway.engine.download.Downloader.download`)."""
        return await self.downloader.download(
            url, directory, expected_media=expected_media, job_id=job_id, partial_name=partial_name,
            on_written=on_written,
        )

    @_scrubbed
    async def balance(self) -> Balance:
        """Read the account's balance (and, on Runway, its per-model limits).

        Raises:
            AuthenticationError: the key is not allowed to read it.
        """
        call = self.provider.balance_call(self.base_url)
        response, body = await self._read(call, None)
        balance = self.provider.parse_balance(response.status_code, body)
        if self.credits is not None:
            self.credits.reading(balance.credits)
        return balance

    def _shown(self, update: StatusUpdate) -> StatusUpdate:
        """``update`` with its text for people (the raw status, the error, why it is
        throttled: logged, shown to watchers, put in errors) scrubbed of our key."""
        text = {name: getattr(update, name) for name in ("raw_status", "error", "throttle_reason")}
        shown = {name: self.transport.scrub(value) for name, value in text.items()}
        return update if shown == text else update.model_copy(update=shown)

    async def _read(
        self, call: HttpCall, job_id: str | None, ok: tuple[int, ...] = ()
    ) -> tuple[httpx.Response, Any]:
        """Send an idempotent call through the retry loop with the read classifier."""
        return await with_retries(
            self.retry, lambda: self.transport.send(call),
            read_classifier(self.transport, call, job_id, ok),
            what=f"{self.provider.name} {call.method} {redact_url(call.url)}",
        )


class _QueueClock:
    """Time a job spent THROTTLED during one wait, against its ``queue_timeout``."""

    def __init__(self, limit: float, now: float) -> None:
        self.limit = limit
        self.total = 0.0
        self.since: float | None = None
        self._last_seen = now

    def seen(self, now: float) -> None:
        self._last_seen = now

    def enter(self, now: float) -> None:
        # Counted from the previous observation: a task over the limit is THROTTLED from
        # its creation, not from the poll that first saw it.
        self.since = self._last_seen

    def leave(self, now: float) -> None:
        if self.since is not None:
            self.total += now - self.since
        self.since = None

    def spent(self, now: float) -> float:
        return self.total + (now - self.since if self.since is not None else 0.0)

    def over(self, now: float) -> bool:
        return self.since is not None and self.spent(now) > self.limit

    def remaining(self, now: float) -> float:
        if self.since is None:
            return float("inf")
        return self.limit - self.spent(now)
