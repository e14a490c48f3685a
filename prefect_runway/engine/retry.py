"""The one retry loop, and the classifiers that decide what a retry may cure.

:func:`with_retries` runs an attempt, hands its outcome (an answer, or the exception it
raised) to a *classifier*, and either waits and tries again (the classifier returned
:class:`Retry`), returns what the classifier returned, or lets the classifier's exception
through. The policy (:class:`~prefect_runway.engine.config.RetryPolicy`) bounds it in
attempts and in time, with capped exponential backoff and full jitter.

The rules, in one place:

* **Reads** (status, result, cancel; :func:`read_classifier`) retry on transport errors,
  unreadable answers, 408/425/429 (honouring ``Retry-After``) and 5xx.
* **Submits** (POST; :func:`submit_classifier`) are retried only where the provider provably
  did not take the job: the connection could not be made (nothing was sent), or the answer
  was 429 or 503 (refused). A read timeout, a dropped connection after sending, or a
  500/502/504 leave the outcome unknown: that raises
  :class:`~prefect_runway.errors.SubmissionUncertain`, never a resend.
* **Downloads** use the same loop with their own classifier
  (:mod:`prefect_runway.engine.download`): they resume where they broke off.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from prefect_runway.engine.config import RetryPolicy
from prefect_runway.engine.events import EngineLogger
from prefect_runway.engine.transport import Transport, retry_after
from prefect_runway.errors import (
    BadResponse,
    PrefectRunwayError,
    ProviderError,
    ProviderUnavailable,
    SubmissionUncertain,
)
from prefect_runway.providers.wire import HttpCall, redact_url

__all__ = ["RETRY_STATUS", "SUBMIT_SAFE_STATUS", "Retry", "made_no_job", "read_classifier",
           "read_retryable", "retry_reason", "submit_classifier", "with_retries"]

#: Answers a read (and a download) retries.
RETRY_STATUS = (408, 425, 429, 500, 502, 503, 504)
#: Answers that prove a submit was refused, not taken: safe to send again.
SUBMIT_SAFE_STATUS = (429, 503)

T = TypeVar("T")

logger = EngineLogger("prefect_runway.engine.retry")


@dataclass(frozen=True)
class Retry:
    """A classifier's verdict: try again, after ``retry_after`` seconds if the answer said."""

    retry_after: float | None = None


#: ``classify(outcome, may_retry)``: ``outcome`` is the attempt's result or the exception it
#: raised; ``may_retry`` says whether the policy allows another attempt. Returns
#: :class:`Retry`, or the call's result; raises to fail the call.
Classifier = Callable[[Any, bool], Any]


async def with_retries(
    policy: RetryPolicy,
    attempt: Callable[[], Awaitable[Any]],
    classify: Classifier,
    *,
    what: str | None = None,
) -> Any:
    """Run ``attempt`` until ``classify`` accepts its outcome, within ``policy``.

    Args:
        policy: Attempts, deadline and backoff.
        attempt: One try.
        classify: Decides on each outcome (see :data:`Classifier`).
        what: What is being tried (``"GET https://.../tasks/abc"``); when given, every retry
            is logged at WARNING with its reason and delay. None: the classifier logs its own.
    """
    started = time.monotonic()
    count = 0
    while True:
        count += 1
        try:
            outcome: Any = await attempt()
        except Exception as exc:  # noqa: BLE001 - the classifier decides; it re-raises the rest
            outcome = exc
        may_retry = count < policy.max_attempts and time.monotonic() - started < policy.deadline
        verdict = classify(outcome, may_retry)
        if isinstance(verdict, Retry):
            delay = policy.backoff(count, verdict.retry_after)
            if what is not None:
                logger.warning(
                    "%s: %s; retrying in %.1f s (attempt %d of at most %d)",
                    what, retry_reason(outcome), delay, count + 1, policy.max_attempts,
                )
            await asyncio.sleep(delay)
            continue
        return verdict


def retry_reason(outcome: Any) -> str:
    """Why an attempt is retried, in a few words: ``http 429 (Retry-After 2)``, ``ReadTimeout``."""
    if isinstance(outcome, httpx.Response):
        reason = f"http {outcome.status_code}"
        after = outcome.headers.get("retry-after")
        return f"{reason} (Retry-After {after})" if after else reason
    if isinstance(outcome, BaseException):
        return type(outcome).__name__
    return str(outcome)


def submit_classifier(transport: Transport, fingerprint: str) -> Classifier:
    """Retry a submit only where nothing reached the provider or it refused (429/503).

    Returns the answer (2xx) for the provider to parse; raises the typed error otherwise.
    """
    provider = transport.provider.name

    def classify(outcome: Any, may_retry: bool) -> Any:
        if isinstance(outcome, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
            # Nothing reached the provider: safe to try again.
            if may_retry:
                return Retry()
            raise ProviderUnavailable(
                f"could not connect to submit ({type(outcome).__name__})", provider=provider,
            ) from None
        if isinstance(outcome, (httpx.TransportError, BadResponse)):
            raise SubmissionUncertain(
                f"the submit was sent but its answer was lost or unreadable "
                f"({type(outcome).__name__}); the job may exist and be billed, so it was not resent",
                fingerprint=fingerprint, provider=provider,
            ) from None
        if isinstance(outcome, BaseException):
            raise outcome
        response: httpx.Response = outcome
        if response.status_code in SUBMIT_SAFE_STATUS and may_retry:
            return Retry(retry_after(response))
        if response.status_code in (500, 502, 504):
            raise SubmissionUncertain(
                "the provider answered the submit with a server error after receiving it; "
                "the job may exist and be billed, so it was not resent",
                fingerprint=fingerprint, provider=provider, status_code=response.status_code,
            )
        if response.status_code >= 400:
            raise transport.error(response, transport.body(response))
        return response

    return classify


def read_classifier(
    transport: Transport, call: HttpCall, job_id: str | None, ok: tuple[int, ...] = ()
) -> Classifier:
    """Retry an idempotent call on transport errors, unreadable answers, 429 and 5xx.

    Returns ``(response, body)`` for answers the provider interprets (2xx, 404, 422 and
    ``ok``); raises the typed error for the others.
    """

    def classify(outcome: Any, may_retry: bool) -> Any:
        if isinstance(outcome, BadResponse):
            if may_retry:
                return Retry()
            outcome.job_id = job_id
            raise outcome
        if isinstance(outcome, httpx.TransportError):
            if may_retry:
                return Retry()
            raise ProviderUnavailable(
                f"{call.method} {redact_url(call.url)} kept failing ({type(outcome).__name__})",
                provider=transport.provider.name, job_id=job_id,
            ) from None
        if isinstance(outcome, BaseException):
            raise outcome
        response: httpx.Response = outcome
        if response.status_code in ok:
            return response, transport.body(response)
        if response.status_code in RETRY_STATUS:
            if may_retry:
                return Retry(retry_after(response))
            raise transport.error(response, transport.body(response), job_id)
        if response.status_code >= 400 and response.status_code not in (404, 422):
            raise transport.error(response, transport.body(response), job_id, on_job=True)
        return response, transport.body(response)

    return classify


def made_no_job(exc: BaseException) -> bool:
    """Whether a failed submit provably created no job: a 4xx answer (429 included), a 503,
    or a connection that was never made. Anything else may have been billed."""
    if not isinstance(exc, ProviderError) or isinstance(exc, SubmissionUncertain):
        return False
    status = exc.status_code or 0
    return 400 <= status < 500 or (
        isinstance(exc, ProviderUnavailable) and exc.status_code in (None, 503)
    )


def read_retryable(exc: BaseException | None) -> bool:
    """Whether a wait or download that raised ``exc`` is worth trying again: not when the
    error is final (a failed, cancelled or expired job, our deadline, a bad request, bad
    credentials); yes for a transient provider error and for anything unexpected."""
    if isinstance(exc, ProviderError):
        return exc.retryable
    return not isinstance(exc, PrefectRunwayError)
