"""The exception tree and its messages (prefect_runway.errors)."""

from __future__ import annotations

import pytest

from prefect_runway import errors
from prefect_runway.errors import (
    AuthenticationError,
    BadResponse,
    DownloadError,
    GenerationCancelled,
    GenerationExpired,
    GenerationFailed,
    GenerationTimedOut,
    InsufficientCredits,
    InvalidRequest,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    RunwayError,
    SubmissionUncertain,
)


def test_invalid_request_message_names_field_provider_model_and_allowed():
    err = InvalidRequest(
        "ratio", "'4:5' has no equivalent", allowed=("16:9", "9:16"), provider="segmind",
        model="gen3a_turbo",
    )
    assert str(err) == "ratio: '4:5' has no equivalent (for segmind gen3a_turbo); allowed: '16:9', '9:16'"
    assert err.field == "ratio"
    assert err.allowed == ["16:9", "9:16"]
    assert (err.provider, err.model) == ("segmind", "gen3a_turbo")


def test_invalid_request_with_a_string_allowed():
    err = InvalidRequest("seed", "0 is out of range", allowed="1-99999", provider="segmind")
    assert str(err) == "seed: 0 is out of range (for segmind); allowed: 1-99999"
    assert err.allowed == "1-99999"


def test_invalid_request_without_allowed_or_provider():
    err = InvalidRequest("prompt", "must not be empty")
    assert str(err) == "prompt: must not be empty"
    assert err.allowed is None and err.provider is None and err.model is None


def test_invalid_request_allowed_integers_are_listed():
    err = InvalidRequest("duration", "7 is not allowed", allowed=(5, 10), model="gen4_turbo")
    assert str(err) == "duration: 7 is not allowed (for gen4_turbo); allowed: 5, 10"
    assert err.allowed == [5, 10]


def test_invalid_request_allowed_generator_is_materialised():
    err = InvalidRequest("ratio", "bad", allowed=(r for r in ("1:1", "16:9")))
    assert err.allowed == ["1:1", "16:9"]
    assert "'1:1', '16:9'" in str(err)


def test_invalid_request_is_a_value_error_and_a_runway_error():
    err = InvalidRequest("x", "y")
    assert isinstance(err, ValueError) and isinstance(err, RunwayError)
    assert not isinstance(err, ProviderError)


def test_provider_error_message_parts():
    err = ProviderError(
        "the provider had a server error", provider="segmind", status_code=502, job_id="req-1",
        detail="Bad Gateway",
    )
    assert str(err) == (
        "the provider had a server error; provider=segmind; http=502; job_id=req-1; detail=Bad Gateway"
    )
    assert (err.provider, err.status_code, err.job_id, err.detail) == ("segmind", 502, "req-1", "Bad Gateway")


def test_provider_error_bare_message():
    assert str(ProviderError("boom")) == "boom"


def test_submission_uncertain_carries_the_fingerprint():
    err = SubmissionUncertain("lost answer", fingerprint="abc123", provider="segmind")
    assert err.fingerprint == "abc123"
    assert "fingerprint=abc123" in str(err)
    assert "provider=segmind" in str(err)
    assert err.retryable is False


def test_generation_timed_out_carries_deadline_and_job():
    err = GenerationTimedOut("late", timeout=30.0, last_status="QUEUED", provider="segmind", job_id="req-9")
    assert (err.timeout, err.last_status, err.job_id) == (30.0, "QUEUED", "req-9")
    assert "job_id=req-9" in str(err)


def test_generation_failed_carries_failure_code():
    err = GenerationFailed("failed", failure_code="SAFETY.INPUT.TEXT", detail="flagged")
    assert err.failure_code == "SAFETY.INPUT.TEXT"
    assert "detail=flagged" in str(err)


def test_rate_limited_carries_retry_after():
    assert RateLimited("slow", retry_after=2.0).retry_after == 2.0
    assert RateLimited("slow").retry_after is None


@pytest.mark.parametrize(
    "cls",
    [AuthenticationError, InsufficientCredits, RateLimited, ProviderUnavailable, ProviderRejected,
     BadResponse, GenerationFailed, GenerationCancelled, GenerationExpired, DownloadError],
)
def test_provider_errors_derive_from_provider_error(cls):
    assert issubclass(cls, ProviderError) and issubclass(cls, RunwayError)
    assert not issubclass(cls, ValueError)


@pytest.mark.parametrize(
    ("cls", "retryable"),
    [(RateLimited, True), (ProviderUnavailable, True), (BadResponse, True), (DownloadError, True),
     (AuthenticationError, False), (InsufficientCredits, False), (ProviderRejected, False),
     (SubmissionUncertain, False), (GenerationFailed, False), (GenerationCancelled, False),
     (GenerationExpired, False), (GenerationTimedOut, False)],
)
def test_retryable_flags(cls, retryable):
    assert cls.retryable is retryable


def test_every_public_exception_is_a_runway_error():
    for name in dir(errors):
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, BaseException) and obj.__module__ == errors.__name__:
            assert issubclass(obj, RunwayError), name
