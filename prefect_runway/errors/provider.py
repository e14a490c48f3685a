"""What happened to a job at a provider: what it answered, and what this package decided."""

from __future__ import annotations

from typing import Any

from prefect_runway.errors.base import PrefectRunwayError


class ProviderError(PrefectRunwayError):
    """The provider answered with an error, or could not be reached.

    Attributes:
        provider: Provider name (``"segmind"``, ``"aimlapi"``, ``"runway"``).
        status_code: HTTP status of the answer, if there was one.
        job_id: The provider's job id, where the error concerns a submitted job.
        detail: The provider's own error text, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status_code: int | None = None,
        job_id: str | None = None,
        detail: str | None = None,
    ) -> None:
        self.provider = provider
        self.status_code = status_code
        self.job_id = job_id
        self.detail = detail
        parts = [message]
        if provider:
            parts.append(f"provider={provider}")
        if status_code is not None:
            parts.append(f"http={status_code}")
        if job_id:
            parts.append(f"job_id={job_id}")
        if detail:
            parts.append(f"detail={detail}")
        super().__init__("; ".join(parts))

    #: Whether a retry of the same call may succeed. Subclasses override.
    retryable: bool = False


class ProviderReported(ProviderError):
    """What the provider answered (an error, a job's end), or that it could not be reached."""


class LocalDecision(ProviderError):
    """What this package decided about a job: a deadline, a doubt, a failed verification."""


class AuthenticationError(ProviderReported):
    """The API key was missing, wrong, or not allowed to do this (401/403)."""


class InsufficientCredits(ProviderReported):
    """The account has no credits left for this job (Segmind 406, AIMLAPI 403)."""


class RateLimited(ProviderReported):
    """The provider kept answering 429 until the retry budget was spent."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class ProviderUnavailable(ProviderReported):
    """5xx answers or transport errors persisted until the retry budget was spent."""

    retryable = True


class ProviderRejected(ProviderReported):
    """The provider refused a request with a 4xx that local validation did not foresee."""


class BadResponse(ProviderReported):
    """The provider's answer could not be understood (not JSON, missing fields, HTML page)."""

    retryable = True


class GenerationFailed(ProviderReported):
    """The provider finished the job as FAILED (including content-moderation blocks).

    Attributes:
        failure_code: The provider's failure code, where it gives one (Runway ``failureCode``).
    """

    def __init__(self, message: str, *, failure_code: str | None = None, **kwargs: Any) -> None:
        self.failure_code = failure_code
        super().__init__(message, **kwargs)


class GenerationCancelled(ProviderReported):
    """The job was cancelled (by us, by a user in the provider's dashboard, or by the provider)."""


class GenerationExpired(ProviderReported):
    """The provider no longer holds this job or its outputs (retention window passed)."""


class GenerationTimedOut(LocalDecision):
    """Our deadline passed while the job was still pending; it may still finish remotely.

    The job id is carried so that a later run can resume waiting on it.

    Attributes:
        timeout: The deadline, in seconds, that was exceeded.
        last_status: The last status seen from the provider.
    """

    def __init__(
        self,
        message: str,
        *,
        timeout: float,
        last_status: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.timeout = timeout
        self.last_status = last_status
        super().__init__(message, **kwargs)


class DownloadError(ProviderReported):
    """An output could not be downloaded, or what arrived failed verification."""

    retryable = True


class DownloadVerificationFailed(DownloadError, LocalDecision):
    """What arrived failed verification: truncated, empty, or not the expected media.

    Still a :class:`DownloadError` (a retry may fetch it whole).
    """

    retryable = True


class DownloadTooLarge(DownloadError, LocalDecision):
    """An output is larger than the limit for its kind (the credentials block's
    ``max_still_bytes`` / ``max_video_bytes``): said by its ``Content-Length``, or more
    bytes arrived. The partial file is removed; not retried (it would be as large again).

    Attributes:
        limit: The limit, in bytes.
        size: The size the server declared, or the bytes received when it stopped.
    """

    retryable = False

    def __init__(self, message: str, *, limit: int = 0, size: int = 0, **kwargs: Any) -> None:
        self.limit = limit
        self.size = size
        super().__init__(message, **kwargs)


class ClassifiedFailure(GenerationFailed):
    """A FAILED job whose failure code says what to do next (base of the classes below).

    Class attributes tell the engine the policy; ``charged`` says whether the provider
    reported credits spent on this job (None where it did not say).

    Attributes:
        charged: True when the provider reported a cost above zero for the failed job.
    """

    #: The same request will fail again: never retry or resubmit.
    final: bool = False
    #: The same request with a new seed may pass (only when the user opted in).
    retryable_with_new_seed: bool = False
    #: The same request may be resubmitted once, unless ``charged``.
    resubmittable: bool = False

    def __init__(
        self,
        message: str,
        *,
        failure_code: str | None = None,
        charged: bool | None = None,
        **kwargs: Any,
    ) -> None:
        self.charged = charged
        self._message = message
        self._kwargs = dict(kwargs)
        super().__init__(message, failure_code=failure_code, **kwargs)

    def __reduce__(self) -> Any:
        return (_rebuild_failure, (type(self), self._message, {
            "failure_code": self.failure_code, "charged": self.charged, **self._kwargs,
        }))


def _rebuild_failure(cls: type[ClassifiedFailure], message: str, kwargs: dict[str, Any]) -> Any:
    return cls(message, **kwargs)


class ContentRejected(ClassifiedFailure):
    """Content moderation rejected an input (Runway ``SAFETY.INPUT.*``). Final: do not retry.

    Runway does not refund these.
    """

    final = True


class OutputRejected(ClassifiedFailure):
    """Content moderation rejected the output (Runway ``SAFETY.OUTPUT.*``).

    The same request with a new seed may pass; retry only when the user opted in.
    """

    retryable_with_new_seed = True


class GenerationInternalError(ClassifiedFailure):
    """The provider failed internally (Runway ``INTERNAL``, ``INTERNAL.BAD_OUTPUT.*``).

    May be resubmitted once, unless the provider says the job was charged.
    """

    resubmittable = True


class InvalidAsset(ClassifiedFailure):
    """The provider could not use an input asset (Runway ``ASSET.INVALID``): fix the input."""

    final = True


class DailyQuotaExceeded(RateLimited):
    """The provider's rolling daily generation quota is spent (Runway: 429 on task creation)."""

    retryable = False
