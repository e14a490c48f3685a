"""A submit that may have been paid for without an answer, and the submission ledger's errors."""

from __future__ import annotations

from typing import Any

from prefect_runway.errors.base import PrefectRunwayError
from prefect_runway.errors.provider import LocalDecision
from prefect_runway.errors.run import StorageError


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
