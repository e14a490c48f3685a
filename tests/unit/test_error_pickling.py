"""Every error the package raises survives pickling (a process pool, a failed task's state)
with its message, its class and its attributes, whatever its ``__init__`` takes."""

from __future__ import annotations

import inspect
import pickle
from datetime import datetime, timezone
from typing import Any

import pytest

import prefect_runway.errors as errors


def _intent() -> Any:
    from prefect_runway.tasks.ledger_records import LedgerRecord

    return LedgerRecord(
        scope="s1", state="intent", fingerprint="f" * 64, provider="runway",
        api_origin="https://api.dev.runwayml.com", model="gen4_turbo",
        created_at=datetime(2026, 12, 7, tzinfo=timezone.utc), attempt_id="a1", host="h", pid=1,
    )


#: One instance of each exported error, built as the code raises it.
SAMPLES: dict[str, Any] = {
    "AuthenticationError": lambda c: c("bad key", provider="runway", status_code=401),
    "BadResponse": lambda c: c("not JSON", provider="segmind", status_code=200),
    "BudgetExceeded": lambda c: c("over", planned=3.0, budget=2.0),
    "CacheRecordRejected": lambda c: c("a pickle", "scope-1", "/tmp/x"),
    "ClassifiedFailure": lambda c: c("failed", failure_code="X", charged=True, provider="runway"),
    "ContentRejected": lambda c: c("unsafe", failure_code="SAFETY.INPUT.TEXT", charged=False),
    "DailyQuotaExceeded": lambda c: c("quota", retry_after=30.0, provider="runway"),
    "DownloadError": lambda c: c("cut short", provider="aimlapi", job_id="j1"),
    "DownloadTooLarge": lambda c: c("too big", limit=10, size=20, provider="runway"),
    "DownloadVerificationFailed": lambda c: c("sha differs", provider="runway"),
    "GenerationCancelled": lambda c: c("cancelled", job_id="j2"),
    "GenerationExpired": lambda c: c("expired", job_id="j3"),
    "GenerationFailed": lambda c: c("failed", failure_code="ASSET.INVALID", provider="runway"),
    "GenerationInternalError": lambda c: c("internal", failure_code="INTERNAL", charged=False),
    "GenerationTimedOut": lambda c: c("late", timeout=60.0, last_status="RUNNING", job_id="j4"),
    "InsufficientCredits": lambda c: c("no credits", provider="segmind", status_code=406),
    "InvalidAsset": lambda c: c("bad image", failure_code="ASSET.INVALID"),
    "InvalidRequest": lambda c: c("ratio", "is not served", allowed=["1280:720"], model="gen4.5"),
    "InvalidShot": lambda c: c(2, "ratio", "is not served", source="shots.yaml", allowed=["a"]),
    "LedgerAmbiguous": lambda c: c("2 match", ["a", "b"]),
    "LedgerError": lambda c: c("ledger"),
    "LedgerNotFound": lambda c: c("none"),
    "LedgerRecordUnreadable": lambda c: c("scope", "/tmp/r.json", "not JSON"),
    "LedgerStorageError": lambda c: c("denied", "s3://b/ledger"),
    "LocalDecision": lambda c: c("decided", provider="runway"),
    "LockTimeout": lambda c: c("held", "key-1", 3.5),
    "ModelRetired": lambda c: c("gen3a_turbo", provider="runway", replacement="gen4_turbo",
                                served_by=["segmind"]),
    "NotStarted": lambda c: c("video", "daily budget", planned=2.0, budget=1.0),
    "OutputRejected": lambda c: c("unsafe output", failure_code="SAFETY.OUTPUT.IMAGE"),
    "PrefectRunwayError": lambda c: c("base"),
    "ProviderError": lambda c: c("error", provider="runway", status_code=500, detail="boom"),
    "ProviderRejected": lambda c: c("rejected", status_code=400),
    "ProviderReported": lambda c: c("reported", provider="aimlapi"),
    "ProviderUnavailable": lambda c: c("down", provider="runway", status_code=503),
    "RateLimited": lambda c: c("slow down", retry_after=2.0, provider="runway"),
    "ReviewFailed": lambda c: c("review"),
    "ReviewTimedOut": lambda c: c("no answer", ["still-1"]),
    "RunwayError": lambda c: c("old name"),
    "ShotRejected": lambda c: c("harbour", "still-1"),
    "StorageError": lambda c: c("denied", "s3://b/k"),
    "StoryboardFailed": lambda c: c("1 failed", {"rows": []}),
    "SubmissionInDoubt": lambda c: c(_intent()),
    "SubmissionUncertain": lambda c: c("no answer", fingerprint="f2", provider="runway"),
    "UnknownPrice": lambda c: c("no price"),
    "UnsupportedOption": lambda c: c("seed", "not taken", allowed=["prompt"], provider="segmind"),
    "UploadRequired": lambda c: c("image", "too large inline", size=9, limit=5),
    "UsageError": lambda c: c("usage"),
}

ERROR_CLASSES = sorted(
    name for name, value in vars(errors).items()
    if inspect.isclass(value) and issubclass(value, BaseException)
)


def test_every_exported_error_has_a_sample():
    assert sorted(SAMPLES) == ERROR_CLASSES


@pytest.mark.parametrize("name", ERROR_CLASSES)
def test_an_error_round_trips_through_pickle(name: str):
    error = SAMPLES[name](getattr(errors, name))
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert str(back) == str(error)
    assert back.args == error.args
    assert vars(back) == vars(error)
