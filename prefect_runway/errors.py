"""One exception hierarchy for everything a user of prefect-runway must tell apart.

Every error raised by this package derives from :class:`PrefectRunwayError`. The tree separates
what was wrong with the *request* (caught locally, before any money is spent) from what the
*provider* said, and separates terminal job outcomes (failed, cancelled, expired, timed out)
from transport trouble that a retry may cure.

No exception message ever contains an API key: messages are built from provider names,
status codes, job ids, request fingerprints and the provider's own error text only.

```
PrefectRunwayError                  (RunwayError: the same class, its earlier name)
├── InvalidRequest                  bad input, caught before any request (also ValueError)
│   ├── InvalidShot                 a storyboard shot is invalid (names its row and field)
│   ├── ModelRetired                the provider retired the model (names the replacement)
│   ├── UnsupportedOption           an option the provider or model has no field for
│   └── UploadRequired              a local image too large to send inline
├── StoryboardFailed                some shots of a storyboard failed (carries the summary)
├── StorageError                    outputs or the ledger cannot be stored there (not retried)
├── LockTimeout                     the submit lock of a request stayed taken past the deadline
└── ProviderError                   a job at a provider went wrong (provider, job id, http)
    ├── ProviderReported            what the provider said, or that it could not be reached
    │   ├── AuthenticationError     401 / 403 on the key
    │   ├── InsufficientCredits     Segmind 406, AIMLAPI 403 "out of credits"
    │   ├── RateLimited             429 after the retry budget was spent
    │   │   └── DailyQuotaExceeded  a rolling daily quota (not retried)
    │   ├── ProviderUnavailable     5xx / transport errors after the retry budget was spent
    │   ├── ProviderRejected        4xx the provider gave for a request we thought valid
    │   ├── BadResponse             a body we cannot read (HTML, malformed JSON, missing fields)
    │   ├── GenerationFailed        the job ended FAILED (content blocks included)
    │   │   └── ClassifiedFailure   a failure code saying what next: ContentRejected (input
    │   │                           moderation, final), OutputRejected (output moderation, a
    │   │                           new seed may pass), GenerationInternalError (resubmit
    │   │                           once), InvalidAsset (fix the input)
    │   ├── GenerationCancelled     the job was cancelled
    │   ├── GenerationExpired       the provider no longer holds the job (e.g. Segmind 404 after 1 h)
    │   └── DownloadError           an output could not be fetched
    └── LocalDecision               what this package decided, not what the provider said
        ├── SubmissionUncertain     doubt: a POST whose outcome is unknown (may be billed)
        │   └── CacheRecordRejected a submit cache record we did not write (refused unread)
        ├── GenerationTimedOut      our own deadline passed while the job was still pending
        ├── DownloadVerificationFailed  an output failed verification (truncated, wrong
        │                               media); also a DownloadError
        └── DownloadTooLarge        an output over the size limit of its kind; also a
                                    DownloadError
```
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


class PrefectRunwayError(Exception):
    """Base class of every error raised by prefect-runway."""


#: The earlier name of :class:`PrefectRunwayError` (the same class).
RunwayError = PrefectRunwayError


class InvalidRequest(PrefectRunwayError, ValueError):
    """A request is invalid for the chosen provider and model; nothing was sent.

    Attributes:
        field: The request field at fault (e.g. ``"ratio"``).
        allowed: The allowed values or range, where there is a finite description.
        provider: The provider whose rule was broken, if the rule is provider-specific.
        model: The model whose rule was broken, if the rule is model-specific.
    """

    def __init__(
        self,
        field: str,
        message: str,
        *,
        allowed: Iterable[Any] | str | None = None,
        provider: str | None = None,
        model: str | None = None,
    ) -> None:
        self.field = field
        self.provider = provider
        self.model = model
        self.allowed: list[Any] | str | None
        if allowed is None or isinstance(allowed, str):
            self.allowed = allowed
        else:
            self.allowed = list(allowed)
        where = " ".join(p for p in (provider, model) if p)
        text = f"{field}: {message}"
        if where:
            text += f" (for {where})"
        if self.allowed is not None:
            shown = self.allowed if isinstance(self.allowed, str) else ", ".join(
                repr(a) for a in self.allowed
            )
            text += f"; allowed: {shown}"
        super().__init__(text)


class InvalidShot(InvalidRequest):
    """A shot of a storyboard is invalid; nothing of the storyboard was submitted.

    The message names where the shot is (the file, its row, the shot's name) and the field.

    Attributes:
        row: 1-based position of the shot in its list or file (for CSV: the data row).
        shot: The shot's name, where it has one.
        source: The shots file, or None for shots given as a list.
        line: The line of the file where the shot starts, where known (CSV).
    """

    def __init__(
        self,
        row: int,
        field: str,
        message: str,
        *,
        source: str | None = None,
        shot: str | None = None,
        line: int | None = None,
        allowed: Iterable[Any] | str | None = None,
        provider: str | None = None,
        model: str | None = None,
    ) -> None:
        self.row = row
        self.shot = shot
        self.source = source
        self.line = line
        self._message = message
        super().__init__(field, message, allowed=allowed, provider=provider, model=model)
        where = f"{source}: " if source else ""
        where += f"row {row}"
        details = [d for d in (f"line {line}" if line else None, f"shot {shot!r}" if shot else None) if d]
        if details:
            where += f" ({', '.join(details)})"
        self.args = (f"{where}: {self.args[0]}",)

    def __reduce__(self) -> Any:
        return (_rebuild_invalid_shot, (self.row, self.field, self._message, {
            "source": self.source, "shot": self.shot, "line": self.line, "allowed": self.allowed,
            "provider": self.provider, "model": self.model,
        }))


def _rebuild_invalid_shot(row: int, field: str, message: str, kwargs: dict[str, Any]) -> InvalidShot:
    return InvalidShot(row, field, message, **kwargs)


class UsageError(PrefectRunwayError):
    """A mistake on the ``prefect-runway`` command line: printed as one line, exit status 2."""


class StoryboardFailed(PrefectRunwayError):
    """Some shots of a storyboard failed; the others were generated and stored.

    Attributes:
        summary: The per-shot summary (a ``StoryboardSummary``): each shot's stored outputs,
            or the reason it failed.
    """

    def __init__(self, message: str, summary: Any = None) -> None:
        self.summary = summary
        super().__init__(message)

    def __reduce__(self) -> Any:
        return (type(self), (self.args[0], self.summary))


class BudgetExceeded(PrefectRunwayError):
    """A run's plan costs more than its budget; nothing was sent.

    Attributes:
        planned: What the plan costs, in the budget's terms.
        budget: The budget.
    """

    def __init__(self, message: str, *, planned: float | None = None,
                 budget: float | None = None) -> None:
        self.planned = planned
        self.budget = budget
        super().__init__(message)

    def __reduce__(self) -> Any:
        return (_rebuild_budget_exceeded, (self.args[0], self.planned, self.budget))


def _rebuild_budget_exceeded(message: str, planned: float | None,
                             budget: float | None) -> BudgetExceeded:
    return BudgetExceeded(message, planned=planned, budget=budget)


class NotStarted(BudgetExceeded):
    """A submit was refused before it was sent: it would pass a budget, or it has no known
    price while the run has one (an unknown price counts as unbounded). Nothing was sent.

    Attributes:
        what: The step it was for (``its video``, ``the video on runway (fallback)``).
        limit: The budget it would pass (``the budget of USD 5.00``).
        unpriced: ``model on provider`` when it has no known price, else None.
    """

    def __init__(self, what: str, limit: str, *, unpriced: str | None = None,
                 planned: float | None = None, budget: float | None = None) -> None:
        self.what, self.limit, self.unpriced = what, limit, unpriced
        if unpriced:
            message = (f"not started: {what} has no known price ({unpriced}), so it could pass "
                       f"{limit}; give its price in the credentials block's prices")
        else:
            message = f"not started: {what} would pass {limit}"
        super().__init__(message, planned=planned, budget=budget)

    def __reduce__(self) -> Any:
        return (_rebuild_not_started, (self.what, self.limit, self.unpriced, self.planned,
                                       self.budget))


def _rebuild_not_started(what: str, limit: str, unpriced: str | None, planned: float | None,
                         budget: float | None) -> NotStarted:
    return NotStarted(what, limit, unpriced=unpriced, planned=planned, budget=budget)


class UnknownPrice(PrefectRunwayError, KeyError):
    """No price is known for this provider and model."""

    def __str__(self) -> str:  # KeyError quotes its argument; say it plainly
        return str(self.args[0]) if self.args else "unknown price"


class StorageError(PrefectRunwayError):
    """Outputs (or the submission ledger) cannot be written where the run was told to put
    them: a path that is not a writable directory, a bucket that cannot be reached or has no
    credentials. Raised before anything is sent where it can be known; never retried.

    Attributes:
        location: The storage at fault (a path or ``s3://`` URI), when known.
    """

    def __init__(self, message: str, location: str | None = None) -> None:
        self.location = location
        super().__init__(message)

    def __reduce__(self) -> Any:
        return (type(self), (self.args[0], self.location))


class LockTimeout(PrefectRunwayError, TimeoutError):
    """A submit waited longer than its deadline for the lock on its request, which another
    run kept holding. Nothing was sent.

    Attributes:
        key: The lock's key (the submission scope).
        waited: Seconds waited.
    """

    def __init__(self, message: str, key: str = "", waited: float = 0.0) -> None:
        self.key = key
        self.waited = waited
        super().__init__(message)

    def __reduce__(self) -> Any:
        return (type(self), (self.args[0], self.key, self.waited))


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


class SubmissionUncertain(LocalDecision):
    """A submit was sent but its outcome is unknown; the job may exist and may be billed.

    It is not resent automatically, because that could pay for the same job twice. Check
    the provider's dashboard for a job created at this time, or resubmit deliberately.

    Attributes:
        fingerprint: The request fingerprint of the submission in doubt.
    """

    def __init__(self, message: str, *, fingerprint: str, **kwargs: Any) -> None:
        self.fingerprint = fingerprint
        super().__init__(f"{message}; fingerprint={fingerprint}", **kwargs)


class CacheRecordRejected(SubmissionUncertain):
    """A submit's cache record is not one prefect-runway wrote (a pickle, another serializer,
    altered or truncated): it was refused unread. It may stand for a job already paid for,
    so nothing is sent for it, unless the submission ledger holds that job.

    Attributes:
        reason: What is wrong with it.
        scope: The record's cache key (the submission scope), where known.
        location: Where it is, where known.
    """

    def __init__(self, reason: str, scope: str = "", location: str = "") -> None:
        self.reason = reason
        self.scope = scope
        self.location = location
        where = f" at {location}" if location else ""
        super().__init__(
            f"the submit cache record{where} was not written by prefect-runway ({reason}) and "
            "was not loaded; it may stand for a job already paid for, so nothing was sent. "
            "Check the provider's dashboard, then delete the record, or submit with force=True",
            fingerprint=scope or "unknown",
        )

    def __reduce__(self) -> Any:
        return (type(self), (self.reason, self.scope, self.location))


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


# ---- the catalogue, uploads and Runway's failure codes (issue 17) ------------------------------


class ModelRetired(InvalidRequest):
    """The provider retired this model; nothing was sent.

    Attributes:
        retired_on: The day the provider retired it, where known.
        replacement: The model the provider offers instead, where there is one.
        served_by: The providers that still serve this model.
    """

    def __init__(
        self,
        model: str,
        *,
        provider: str,
        retired_on: Any = None,
        replacement: str | None = None,
        served_by: Iterable[str] = (),
        allowed: Iterable[Any] | str | None = None,
    ) -> None:
        self.retired_on = retired_on
        self.replacement = replacement
        self.served_by = list(served_by)
        message = f"{model!r} was retired by {provider}"
        if retired_on is not None:
            message += f" on {retired_on}"
        if replacement:
            message += f"; use {replacement!r} instead"
        if self.served_by:
            message += f"; still served by {', '.join(self.served_by)}"
        super().__init__("model", message, allowed=allowed, provider=provider, model=model)

    def __reduce__(self) -> Any:
        return (_rebuild_model_retired, (self.model, {
            "provider": self.provider, "retired_on": self.retired_on,
            "replacement": self.replacement, "served_by": self.served_by, "allowed": self.allowed,
        }))


def _rebuild_model_retired(model: str, kwargs: dict[str, Any]) -> ModelRetired:
    return ModelRetired(model, **kwargs)


class UnsupportedOption(InvalidRequest):
    """The request sets an option this provider or model has no field for; nothing was sent."""


class UploadRequired(InvalidRequest):
    """A local image is too large to send inline (as a data URI); it must be uploaded first.

    The engine uploads it (Runway: ``POST /v1/uploads``) and sends the ``runway://`` URI;
    see ``Provider.uploads_needed``. Nothing was sent.

    Attributes:
        size: The image's size in bytes.
        limit: The provider's data-URI limit (characters of the encoded URI).
    """

    def __init__(self, field: str, message: str, *, size: int, limit: int, **kwargs: Any) -> None:
        self.size = size
        self.limit = limit
        super().__init__(field, message, **kwargs)

    def __reduce__(self) -> Any:
        return (_rebuild_upload_required, (self.field, str(self), {
            "size": self.size, "limit": self.limit,
        }))


def _rebuild_upload_required(field: str, text: str, kwargs: dict[str, Any]) -> UploadRequired:
    error = UploadRequired(field, "", **kwargs)
    error.args = (text,)
    return error


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


# ---- the submission ledger ------------------------------------------------------------------


class LedgerError(PrefectRunwayError):
    """Something about the submission ledger itself (not the provider) went wrong."""


class LedgerStorageError(LedgerError, StorageError):
    """The ledger's storage could not be read or written (permissions, no bucket, a file
    where a directory should be). Nothing was sent; no retry cures it."""


class LedgerNotFound(LedgerError, LookupError):
    """No ledger record matches the fingerprint (or prefix) given."""


class LedgerAmbiguous(LedgerError, LookupError):
    """A fingerprint prefix matches several ledger records; give more of it.

    Attributes:
        matches: The fingerprints that matched.
    """

    def __init__(self, message: str, matches: list[str]) -> None:
        self.matches = matches
        super().__init__(message)

    def __reduce__(self) -> Any:
        return (type(self), (self.args[0], self.matches))


class SubmissionInDoubt(SubmissionUncertain):
    """An earlier submit of this request has an intent and no job: it may have been billed.

    Raised by the submission ledger's ``begin`` instead of submitting again.

    Attributes:
        intent: The ledger record of the earlier submit (a ``LedgerRecord``).
    """

    def __init__(self, intent: Any) -> None:
        self.intent = intent
        run = intent.flow_run_id or "no flow run"
        message = (
            f"a submit of this request was sent at {intent.created_at.isoformat()} by flow run "
            f"{run} (attempt {intent.attempt_id}, {intent.host}:{intent.pid}) and no job was "
            f"recorded for it: it may exist and be billed, so it was not sent again. Check the "
            f"{intent.provider} dashboard, then adopt the job it shows with `prefect-runway "
            f"ledger resolve {intent.fingerprint[:16]} --job JOB_ID` (the next run continues "
            f"with it, nothing paid again), or clear the doubt with `prefect-runway ledger "
            f"resolve {intent.fingerprint[:16]}` or force=True (a new, billed job)"
        )
        super().__init__(message, fingerprint=intent.fingerprint, provider=intent.provider)

    def __reduce__(self) -> Any:
        return (type(self), (self.intent,))


class LedgerRecordUnreadable(SubmissionUncertain):
    """A ledger record exists but cannot be read; it is never taken as absent.

    Attributes:
        scope: The submission scope of the record.
        location: Where the record is.
    """

    def __init__(self, scope: str, location: str, reason: str) -> None:
        self.scope = scope
        self.location = location
        self.reason = reason
        super().__init__(
            f"the ledger record at {location} cannot be read ({reason}); a submit of this "
            f"request may have been sent, so nothing is sent until it is resolved: check the "
            f"provider's dashboard, then use force=True or `prefect-runway ledger resolve "
            f"{scope}`",
            fingerprint=scope,
        )

    def __reduce__(self) -> Any:
        return (type(self), (self.scope, self.location, self.reason))


# ---- the review gate ------------------------------------------------------------------------


class ReviewTimedOut(PrefectRunwayError):
    """Nobody answered the review within ``review_timeout`` and ``on_timeout="fail"``.

    Attributes:
        stills: The stills that were waiting for a decision (stored; nothing was animated).
    """

    def __init__(self, message: str, stills: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.stills = list(stills)


class ShotRejected(PrefectRunwayError):
    """A shot was rejected at review (not a failure: nothing was animated, as asked)."""

    def __init__(self, name: str, still: Any) -> None:
        super().__init__(f"shot {name!r} was rejected at review; nothing was animated")
        self.still = still


class ReviewFailed(PrefectRunwayError):
    """A reviewed shot's still (or its regeneration) could not be made."""
