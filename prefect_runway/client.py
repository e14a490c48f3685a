"""The one place that does HTTP: submit, poll, download, cancel, and the retry policy.

Everything provider-specific comes from a :class:`~prefect_runway.providers.base.Provider`
(pure translation); everything Prefect-specific lives in ``tasks/`` and ``flows/``. This
module knows neither Prefect nor any provider's field names.

Retry rules, in one place:

* **Reads** (status, result, download, cancel) retry on transport errors, 429 (honouring
  ``Retry-After``) and 5xx, with capped exponential backoff and full jitter, within an
  overall deadline (:class:`RetryPolicy`).
* **Submits** (POST) are retried only where the provider provably did not take the job: the
  connection could not be made (nothing was sent), or the answer was 429 or 503 (refused).
  A read timeout, a dropped connection after sending, or a 500/502/504 leave the outcome
  unknown: that raises :class:`~prefect_runway.errors.SubmissionUncertain`, never a resend.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import ssl
import tempfile
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr

from prefect_runway.errors import (
    BadResponse,
    DownloadError,
    GenerationCancelled,
    GenerationFailed,
    GenerationTimedOut,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    SubmissionUncertain,
)
from prefect_runway.models import (
    Generation,
    GenerationResult,
    JobState,
    Request,
    StatusUpdate,
    sniff_media_type,
    utc_now,
)
from prefect_runway.polling import (
    LATENCY,
    LatencyBook,
    LatencyTrack,
    PollSchedule,
    latency_key,
)
from prefect_runway.providers.base import (
    HttpCall,
    PreparedRequest,
    Provider,
    json_or_text,
    redact_url,
)

__all__ = ["DownloadedFile", "PollSchedule", "RetryPolicy", "RunwayClient"]

logger = logging.getLogger("prefect_runway.client")


class _RedactQueryStrings(logging.Filter):
    """Strips query strings from the URLs in httpx's request log lines: output URLs are
    signed, and a signature in a log is a credential in a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                redact_url(str(a)) if isinstance(a, httpx.URL) or (isinstance(a, str) and "://" in a)
                else a
                for a in record.args
            )
        return True


_httpx_logger = logging.getLogger("httpx")
if not any(isinstance(f, _RedactQueryStrings) for f in _httpx_logger.filters):
    _httpx_logger.addFilter(_RedactQueryStrings())

USER_AGENT = "prefect-runway/0.1"
_SUBMIT_SAFE_STATUS = (429, 503)
#: The largest API answer (JSON) read; media downloads stream to disk and have no bound.
MAX_API_BODY = 4 * 1024 * 1024
_RETRY_STATUS = (408, 425, 429, 500, 502, 503, 504)


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter, bounded in attempts and in time.

    Attributes:
        max_attempts: Attempts per call, the first included.
        base_delay: The first backoff's upper bound, in seconds.
        max_delay: The cap on one backoff, in seconds.
        deadline: The overall bound on one call with all its retries, in seconds.
    """

    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 20.0
    deadline: float = 120.0

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay * 3)
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


@dataclass
class DownloadedFile:
    """A verified download in a temporary file, ready to be moved into storage."""

    path: Path
    size: int
    sha256: str
    media_type: str
    source_url: str = field(repr=False)


class RunwayClient:
    """Submit, wait for, download and cancel generations on one provider with one key.

    Args:
        provider: The provider translation.
        api_key: The API key; read only where a request is authenticated.
        base_url: The API base URL (None: the provider's).
        retry: The retry policy for every call.
        poll: The poll schedule of :meth:`wait`.
        timeout: httpx timeouts for one request.
        limiter: An async context manager factory entered around every request, to share a
            rate budget (see :mod:`prefect_runway.ratelimit`), or None.
        latency: Where :meth:`wait` learns and reads each model's latency (see
            :mod:`prefect_runway.polling`); default the book shared by the whole process.

    Example:
        ```python
        from pydantic import SecretStr
        from prefect_runway.client import RunwayClient
        from prefect_runway.models import ImageRequest
        from prefect_runway.providers import get_provider

        async with RunwayClient(get_provider("segmind"), SecretStr("KEY")) as client:
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
        timeout: httpx.Timeout | None = None,
        limiter: Callable[[], Any] | None = None,
        http: httpx.AsyncClient | None = None,
        latency: LatencyBook | None = None,
    ) -> None:
        self.provider = provider
        self._api_key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        self.base_url = (base_url or provider.default_base_url).rstrip("/")
        self.retry = retry or RetryPolicy()
        self.poll = poll or PollSchedule()
        self._timeout = timeout or httpx.Timeout(60.0, connect=10.0)
        self._limiter = limiter
        self._http = http
        self._owns_http = http is None
        self.latency = latency if latency is not None else LATENCY

    def __repr__(self) -> str:
        return f"RunwayClient(provider={self.provider.name!r}, base_url={self.base_url!r})"

    async def __aenter__(self) -> RunwayClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                verify=shared_ssl_context(),
                timeout=self._timeout,
                headers={"user-agent": USER_AGENT},
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
                follow_redirects=False,
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            raise RuntimeError("use `async with RunwayClient(...)` before making calls")
        return self._http

    # ---- the public steps ----------------------------------------------------------------

    def prepare(self, request: Request) -> PreparedRequest:
        """Validate ``request`` for this provider and build its body; sends nothing."""
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
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._send(call)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                # Nothing reached the provider: safe to try again.
                if not self._may_retry(attempt, started):
                    raise ProviderUnavailable(
                        f"could not connect to submit ({type(exc).__name__})",
                        provider=self.provider.name,
                    ) from None
                await asyncio.sleep(self.retry.backoff(attempt))
                continue
            except (httpx.TransportError, BadResponse) as exc:
                raise SubmissionUncertain(
                    f"the submit was sent but its answer was lost or unreadable "
                    f"({type(exc).__name__}); the job may exist and be billed, so it was not resent",
                    fingerprint=prepared.fingerprint,
                    provider=self.provider.name,
                ) from None
            body = self._body(response)
            if response.status_code in _SUBMIT_SAFE_STATUS and self._may_retry(attempt, started):
                await asyncio.sleep(self.retry.backoff(attempt, _retry_after(response)))
                continue
            if response.status_code in (500, 502, 504):
                raise SubmissionUncertain(
                    "the provider answered the submit with a server error after receiving it; "
                    "the job may exist and be billed, so it was not resent",
                    fingerprint=prepared.fingerprint,
                    provider=self.provider.name,
                    status_code=response.status_code,
                )
            if response.status_code >= 400:
                raise self._error(response, body)
            try:
                generation = self.provider.parse_submit(prepared, body)
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
        """Stream ``url`` to a temporary file in ``directory`` while hashing it, and verify it.

        The transfer resumes with an HTTP Range request after a broken connection where the
        server allows it, and starts over where it does not. What arrives is checked against
        Content-Length, the expected media type and the file's magic bytes; a truncated or
        mismatched body is never returned.

        Args:
            partial_name: A stable name for the partial file (e.g. from the storage key and
                the URL without its signature). A partial left by a killed process under that
                name is resumed from where it stopped, instead of being left behind.

        Returns:
            The temporary file, its size, sha256 and media type. The caller moves it into
            place (atomically) or deletes it.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if partial_name:
            tmp = directory / partial_name
            tmp.touch()
        else:
            fd, tmp_name = tempfile.mkstemp(prefix=".part-", dir=directory)
            os.fchmod(fd, 0o644)
            os.close(fd)
            tmp = Path(tmp_name)
        try:
            return await self._download_into(url, tmp, expected_media, job_id)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    async def _download_into(
        self, url: str, tmp: Path, expected_media: tuple[str, ...], job_id: str | None
    ) -> DownloadedFile:
        safe_url = redact_url(url)
        started = time.monotonic()
        attempt = 0
        digest = hashlib.sha256()
        received = 0
        with tmp.open("rb") as f:  # a partial left by an earlier, killed attempt
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
                received += len(block)
        if received:
            logger.info("Resuming the download of %s from byte %d", safe_url, received)
        total: int | None = None
        media_type = ""
        while True:
            attempt += 1
            headers = {"range": f"bytes={received}-"} if received else {}
            try:
                async with self._limit():
                    async with self.http.stream(
                        "GET", url, headers=headers, follow_redirects=True
                    ) as response:
                        if response.status_code == 416 and received and attempt < 3:
                            # The partial is longer than the file (a stale one): start over.
                            await response.aread()
                            received, digest = 0, hashlib.sha256()
                            continue
                        if response.status_code >= 400:
                            await response.aread()
                            if response.status_code in _RETRY_STATUS and self._may_retry(attempt, started):
                                await asyncio.sleep(self.retry.backoff(attempt, _retry_after(response)))
                                continue
                            raise DownloadError(
                                f"could not download {safe_url}", provider=self.provider.name,
                                status_code=response.status_code, job_id=job_id,
                            )
                        if received and response.status_code != 206:
                            # The server ignored our Range: start over.
                            received, digest = 0, hashlib.sha256()
                        if response.status_code == 206:
                            total = _content_range_total(response) or total
                        else:
                            length = response.headers.get("content-length")
                            encoded = response.headers.get("content-encoding", "identity") != "identity"
                            total = int(length) if length and length.isdigit() and not encoded else None
                        media_type = response.headers.get("content-type", media_type).split(";")[0].strip()
                        with tmp.open("r+b") as out:
                            # Never open with O_TRUNC ("wb"): ext4 then flushes the whole
                            # file to disk on close (auto_da_alloc), ~0.15 s per 500 MB. The
                            # file holds exactly the ``received`` bytes, unless the server
                            # ignored our Range and we start over.
                            if out.seek(0, os.SEEK_END) != received:
                                out.truncate(received)
                                out.seek(received)
                            sink = _Sink(out, digest)
                            try:
                                async for chunk in response.aiter_bytes():
                                    await sink.add(chunk)
                                    received += len(chunk)
                            finally:
                                # Every byte counted is written and hashed before a retry
                                # resumes from ``received`` (or an error propagates).
                                await sink.finish()
            except httpx.TransportError as exc:
                if self._may_retry(attempt, started):
                    logger.warning(
                        "Download of %s broke after %d bytes (%s); resuming",
                        safe_url, received, type(exc).__name__,
                    )
                    await asyncio.sleep(self.retry.backoff(attempt))
                    continue
                raise DownloadError(
                    f"download of {safe_url} kept failing ({type(exc).__name__})",
                    provider=self.provider.name, job_id=job_id,
                ) from None
            if total is not None and received != total:
                if self._may_retry(attempt, started):
                    logger.warning("Download of %s is short (%d of %d bytes); resuming", safe_url, received, total)
                    await asyncio.sleep(self.retry.backoff(attempt))
                    continue
                raise DownloadError(
                    f"download of {safe_url} is truncated ({received} of {total} bytes)",
                    provider=self.provider.name, job_id=job_id,
                )
            break
        with tmp.open("rb") as f:
            head = f.read(64)
        sniffed = sniff_media_type(head)
        if sniffed is None or not sniffed.startswith(expected_media):
            raise DownloadError(
                f"{safe_url} is not the expected media (content-type {media_type or 'none'}, "
                f"magic bytes say {sniffed or 'unknown'})",
                provider=self.provider.name, job_id=job_id,
            )
        if received == 0:
            raise DownloadError(f"{safe_url} is empty", provider=self.provider.name, job_id=job_id)
        return DownloadedFile(tmp, received, digest.hexdigest(), sniffed, url)

    # ---- plumbing --------------------------------------------------------------------------

    def _body(self, response: httpx.Response) -> Any:
        """The answer's body (JSON or text) with our own key scrubbed from it, should a
        provider ever echo it back: nothing derived from a body can then leak the key."""
        return _scrub(json_or_text(response.content), self._api_key.get_secret_value())

    def _limit(self) -> Any:
        if self._limiter is None:
            return _NullContext()
        return self._limiter()

    async def _send(self, call: HttpCall) -> httpx.Response:
        # The key goes only to the API it belongs to: a status or result URL named by a
        # response that points elsewhere gets no credentials.
        headers = (
            self.provider.auth_headers(self._api_key.get_secret_value())
            if _origin(call.url) == _origin(self.base_url)
            else {}
        )
        async with self._limit():
            async with self.http.stream(
                call.method, call.url, json=call.json, params=call.params, headers=headers,
            ) as response:
                # An API answer is a small JSON document; a body past the bound is refused
                # rather than read into memory.
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > MAX_API_BODY:
                    raise self._oversized(call)
                content = bytearray()
                async for chunk in response.aiter_bytes():
                    content += chunk
                    if len(content) > MAX_API_BODY:
                        raise self._oversized(call)
        return httpx.Response(
            response.status_code, headers=response.headers, content=bytes(content),
            request=response.request,
        )

    def _oversized(self, call: HttpCall) -> BadResponse:
        return BadResponse(
            f"the answer to {call.method} {redact_url(call.url)} is larger than {MAX_API_BODY} bytes",
            provider=self.provider.name,
        )

    async def _read(
        self, call: HttpCall, job_id: str | None, ok: tuple[int, ...] = ()
    ) -> tuple[httpx.Response, Any]:
        """Send an idempotent call, retrying transport errors, 429 and 5xx.

        Non-retryable answers (2xx, 4xx) are returned for the provider to interpret.
        """
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._send(call)
            except BadResponse as exc:
                if self._may_retry(attempt, started):
                    await asyncio.sleep(self.retry.backoff(attempt))
                    continue
                exc.job_id = job_id
                raise
            except httpx.TransportError as exc:
                if self._may_retry(attempt, started):
                    await asyncio.sleep(self.retry.backoff(attempt))
                    continue
                raise ProviderUnavailable(
                    f"{call.method} {redact_url(call.url)} kept failing ({type(exc).__name__})",
                    provider=self.provider.name, job_id=job_id,
                ) from None
            if response.status_code in ok:
                return response, self._body(response)
            if response.status_code in _RETRY_STATUS:
                if self._may_retry(attempt, started):
                    await asyncio.sleep(self.retry.backoff(attempt, _retry_after(response)))
                    continue
                raise self._error(response, self._body(response), job_id)
            if response.status_code >= 400 and response.status_code not in (404, 422):
                raise self._error(response, self._body(response), job_id, on_job=True)
            return response, self._body(response)

    def _error(
        self, response: httpx.Response, body: Any, job_id: str | None = None, on_job: bool = False
    ) -> ProviderError:
        err = self.provider.error_for(response.status_code, body, job_id=job_id, on_job=on_job)
        if isinstance(err, RateLimited):
            err.retry_after = _retry_after(response)
        return err

    def _may_retry(self, attempt: int, started: float) -> bool:
        return attempt < self.retry.max_attempts and time.monotonic() - started < self.retry.deadline


class _Sink:
    """Writes and hashes a download's chunks on a worker thread, in order, while the event
    loop receives the next ones, so that receiving, hashing and writing overlap.

    The first ``INLINE`` bytes are written and hashed as they come, on the event loop: most
    outputs (stills, short clips) end there, holding no more than one chunk in memory
    however many download at once. Past that, the event loop only collects chunks; per batch
    of ``BATCH`` bytes the worker writes them with one ``os.writev`` and hashes them as one
    block: both run without the GIL, which a call per small chunk would have to take back
    each time. At most ``BACKLOG`` batches wait, so a large download holds at most
    ``(BACKLOG + 1) * BATCH`` bytes. Writes go to the file's descriptor (opened for
    appending or truncated).
    """

    INLINE = 8 << 20
    BATCH = 2 << 20
    BACKLOG = 4

    def __init__(self, out: Any, digest: Any) -> None:
        self._fd = out.fileno()
        self._digest = digest
        self._inline = 0
        self._batch: list[bytes] = []
        self._size = 0
        self._pending: deque[asyncio.Future[None]] = deque()
        self._executor: ThreadPoolExecutor | None = None

    def _write(self, chunks: list[bytes]) -> None:
        views = [memoryview(chunk) for chunk in chunks]
        while views:
            written = os.writev(self._fd, views[:1024])  # IOV_MAX
            while views and written >= len(views[0]):
                written -= len(views.pop(0))
            if views and written:
                views[0] = views[0][written:]
        self._digest.update(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    async def add(self, chunk: bytes) -> None:
        if self._executor is None and self._inline < self.INLINE:
            self._inline += len(chunk)
            self._write([chunk])
            return
        self._batch.append(chunk)
        self._size += len(chunk)
        if self._size >= self.BATCH:
            await self._submit()

    async def _submit(self) -> None:
        chunks, self._batch, self._size = self._batch, [], 0
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="prefect-runway-download")
        loop = asyncio.get_running_loop()
        self._pending.append(loop.run_in_executor(self._executor, self._write, chunks))
        while len(self._pending) > self.BACKLOG:
            await self._pending.popleft()

    async def finish(self) -> None:
        """Write and hash what is left, and wait until every batch is done (also when the
        download broke off: the caller resumes from the bytes it counted)."""
        try:
            if self._batch:
                if self._executor is None:
                    chunks, self._batch, self._size = self._batch, [], 0
                    self._write(chunks)
                else:
                    await self._submit()
            while self._pending:
                await self._pending.popleft()
        finally:
            if self._executor is not None:
                # After an error or a cancellation some batches may still be running: let
                # them end (milliseconds) before the file is closed under them.
                self._executor.shutdown(wait=True)
                self._executor = None


_ssl_lock = threading.Lock()
_ssl_context: ssl.SSLContext | None = None


def shared_ssl_context() -> ssl.SSLContext:
    """The verifying TLS context every client of this process uses (httpx's default: the CA
    bundle, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``). Building one reads the whole CA bundle
    (~20 ms of CPU), and a client is made per task: with hundreds of tasks that was most of
    a batch's CPU time. A context is safe to share between threads and event loops."""
    global _ssl_context
    with _ssl_lock:
        if _ssl_context is None:
            _ssl_context = httpx.create_ssl_context()
        return _ssl_context


class _NullContext:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _scrub(value: Any, secret: str) -> Any:
    if not secret:
        return value
    if isinstance(value, str):
        return value.replace(secret, "***")
    if isinstance(value, dict):
        return {k: _scrub(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secret) for v in value]
    return value


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _content_range_total(response: httpx.Response) -> int | None:
    value = response.headers.get("content-range", "")
    total = value.rpartition("/")[2]
    return int(total) if total.isdigit() else None
