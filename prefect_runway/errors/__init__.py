"""Every exception prefect-runway raises, each a :class:`PrefectRunwayError`, imported from here."""

from __future__ import annotations

from prefect_runway.errors.base import PrefectRunwayError, RunwayError
from prefect_runway.errors.provider import (
    AuthenticationError,
    BadResponse,
    ClassifiedFailure,
    ContentRejected,
    DailyQuotaExceeded,
    DownloadError,
    DownloadTooLarge,
    DownloadVerificationFailed,
    GenerationCancelled,
    GenerationExpired,
    GenerationFailed,
    GenerationInternalError,
    GenerationTimedOut,
    InsufficientCredits,
    InvalidAsset,
    LocalDecision,
    OutputRejected,
    ProviderError,
    ProviderRejected,
    ProviderReported,
    ProviderUnavailable,
    RateLimited,
)
from prefect_runway.errors.request import (
    InvalidRequest,
    InvalidShot,
    ModelRetired,
    UnsupportedOption,
    UploadRequired,
    UsageError,
)
from prefect_runway.errors.run import (
    BudgetExceeded,
    LockTimeout,
    NotStarted,
    ReviewFailed,
    ReviewTimedOut,
    ShotRejected,
    StorageError,
    StoryboardFailed,
    UnknownPrice,
)
from prefect_runway.errors.submission import (
    CacheRecordRejected,
    LedgerAmbiguous,
    LedgerError,
    LedgerNotFound,
    LedgerRecordUnreadable,
    LedgerStorageError,
    SubmissionInDoubt,
    SubmissionUncertain,
)

__all__ = [
    "AuthenticationError", "BadResponse", "BudgetExceeded", "CacheRecordRejected",
    "ClassifiedFailure", "ContentRejected", "DailyQuotaExceeded", "DownloadError",
    "DownloadTooLarge", "DownloadVerificationFailed", "GenerationCancelled", "GenerationExpired",
    "GenerationFailed", "GenerationInternalError", "GenerationTimedOut", "InsufficientCredits",
    "InvalidAsset", "InvalidRequest", "InvalidShot", "LedgerAmbiguous", "LedgerError",
    "LedgerNotFound", "LedgerRecordUnreadable", "LedgerStorageError", "LocalDecision",
    "LockTimeout", "ModelRetired", "NotStarted", "OutputRejected", "PrefectRunwayError",
    "ProviderError", "ProviderRejected", "ProviderReported", "ProviderUnavailable",
    "RateLimited", "ReviewFailed", "ReviewTimedOut", "RunwayError", "ShotRejected",
    "StorageError", "StoryboardFailed", "SubmissionInDoubt", "SubmissionUncertain",
    "UnknownPrice", "UnsupportedOption", "UploadRequired", "UsageError",
]

# Each class is known by its public path (prefect_runway.errors.X), in tracebacks, reprs and
# pickles, whichever file of this package defines it.
for _name in __all__:
    _cls = globals()[_name]
    if _cls.__module__.startswith(__name__ + "."):
        _cls.__module__ = __name__
del _name, _cls
