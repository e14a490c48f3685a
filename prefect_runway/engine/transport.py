"""Sending one HTTP call: the AsyncClient, the key's origin check, scrubbing, TLS, log redaction.

A :class:`Transport` sends what a provider's translation describes (an
:class:`~prefect_runway.providers.base.HttpCall`) and reads the answer into memory, bounded
(:data:`~prefect_runway.engine.config.MAX_API_BODY`). It never retries: that is
:mod:`prefect_runway.engine.retry`'s one loop. It knows neither Prefect nor any provider's
field names.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr

from prefect_runway.engine.config import MAX_API_BODY, EngineConfig
from prefect_runway.errors import BadResponse, ProviderError, RateLimited
from prefect_runway.providers.base import Provider
from prefect_runway.providers.wire import HttpCall, check_base_url, json_or_text, redact_url

__all__ = [
    "MIN_SECRET_LENGTH", "Transport", "install_log_redaction", "retry_after", "shared_ssl_context",
]


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


def install_log_redaction() -> None:
    """Put the query-string filter on httpx's logger, once per process (done when a
    :class:`Transport` is made, not at import)."""
    httpx_logger = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactQueryStrings) for f in httpx_logger.filters):
        httpx_logger.addFilter(_RedactQueryStrings())


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


class Transport:
    """One provider's API with one key, over one httpx AsyncClient.

    Args:
        provider: The provider translation (auth headers, error mapping).
        api_key: The API key; sent only to ``base_url``'s origin.
        base_url: The API base URL: https, or http on loopback only.
        config: Timeouts, connection limits and user agent.
        limiter: An async context manager factory entered around every request, or None.
        http: An AsyncClient to use instead of making one (not closed here).
    """

    def __init__(
        self,
        provider: Provider,
        api_key: SecretStr,
        base_url: str,
        config: EngineConfig,
        *,
        limiter: Callable[[], Any] | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.provider = provider
        self._api_key = api_key
        self.base_url = check_base_url(base_url)  # InvalidRequest before anything is sent
        self.config = config
        self._limiter = limiter
        self._http = http
        self._owns_http = http is None
        #: An httpx Timeout that overrides ``config.timeouts`` (None: the config's).
        self.httpx_timeout: httpx.Timeout | None = None
        install_log_redaction()

    async def open(self) -> None:
        if self._http is None:
            self._http = httpx.AsyncClient(
                verify=shared_ssl_context(),
                timeout=self.httpx_timeout or self.config.timeouts.httpx(),
                headers={"user-agent": self.config.user_agent},
                limits=self.config.limits.httpx(),
                follow_redirects=False,
            )

    async def close(self) -> None:
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            raise RuntimeError("use `async with GenerationClient(...)` before making calls")
        return self._http

    def limit(self) -> Any:
        """The rate limiter's context for one request (a no-op without one)."""
        if self._limiter is None:
            return _NullContext()
        return self._limiter()

    async def send(self, call: HttpCall) -> httpx.Response:
        """Send ``call`` once and read its (bounded) answer into memory.

        Raises:
            httpx.TransportError: the call could not be made or its answer was cut off.
            BadResponse: the answer is larger than the bound.
        """
        # The key goes only to the API it belongs to: a status or result URL named by a
        # response that points elsewhere gets no credentials.
        headers = (
            self.provider.auth_headers(self._api_key.get_secret_value())
            if _origin(call.url) == _origin(self.base_url)
            else {}
        )
        async with self.limit():
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

    def body(self, response: httpx.Response) -> Any:
        """The answer's body (JSON or text), exactly as sent: what the providers parse is
        never altered. What is raised or logged from it is scrubbed (:meth:`scrub`)."""
        return json_or_text(response.content)

    def scrub(self, value: Any) -> Any:
        """``value`` (a string, or dicts and lists of them) with our own key replaced by
        ``***``, should a provider ever echo it back; unchanged when the key is shorter than
        :data:`MIN_SECRET_LENGTH` (see there)."""
        return _scrub(value, self._api_key.get_secret_value())

    def scrub_error(self, exc: BaseException) -> BaseException:
        """``exc`` with our key scrubbed from its message and its text attributes (in place:
        the same exception, its type and traceback kept)."""
        secret = self._api_key.get_secret_value()
        if len(secret) < MIN_SECRET_LENGTH:
            return exc
        exc.args = tuple(_scrub(a, secret) for a in exc.args)
        for name, value in vars(exc).items():
            if isinstance(value, (str, dict, list)):
                setattr(exc, name, _scrub(value, secret))
        return exc

    def error(
        self, response: httpx.Response, body: Any, job_id: str | None = None, on_job: bool = False
    ) -> ProviderError:
        """The typed error for an error answer (the provider's mapping), scrubbed."""
        err = self.provider.error_for(response.status_code, body, job_id=job_id, on_job=on_job)
        if isinstance(err, RateLimited):
            err.retry_after = retry_after(response)
        self.scrub_error(err)
        return err

    def _oversized(self, call: HttpCall) -> BadResponse:
        return BadResponse(
            f"the answer to {call.method} {redact_url(call.url)} is larger than {MAX_API_BODY} bytes",
            provider=self.provider.name,
        )


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


#: Keys shorter than this are not scrubbed from what is logged or raised. A key that short is
#: no secret (it falls to guessing in moments: the providers' keys are 32 characters and
#: more), and its characters occur in ordinary text: replacing every ``k`` of a message
#: with ``***`` garbles it, and did garble upload tokens when answers were scrubbed.
MIN_SECRET_LENGTH = 8


def _scrub(value: Any, secret: str) -> Any:
    if len(secret) < MIN_SECRET_LENGTH:
        return value
    if isinstance(value, str):
        return value.replace(secret, "***")
    if isinstance(value, dict):
        return {k: _scrub(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secret) for v in value]
    return value


def retry_after(response: httpx.Response) -> float | None:
    """The answer's ``Retry-After`` in seconds (seconds or an HTTP date), or None."""
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
