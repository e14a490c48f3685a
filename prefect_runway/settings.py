"""Every ``PREFECT_RUNWAY_*`` setting, in one settings model read from the environment."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from prefect_runway.errors import InvalidRequest

__all__ = [
    "ARTIFACT_LINK_ENV", "ENV_PREFIX", "LOCK_DIR_ENV", "LOCK_HOLD_ENV", "LOCK_REDIS_URL_ENV",
    "MAX_DOWNLOADS_ENV", "MAX_PRESIGN_SECONDS", "MAX_TASK_RUNS_ENV", "RunwaySettings",
    "get_settings", "link_seconds",
]

ENV_PREFIX = "PREFECT_RUNWAY_"
MAX_DOWNLOADS_ENV = ENV_PREFIX + "MAX_DOWNLOADS"
MAX_TASK_RUNS_ENV = ENV_PREFIX + "MAX_TASK_RUNS"
LOCK_DIR_ENV = ENV_PREFIX + "LOCK_DIR"
LOCK_HOLD_ENV = ENV_PREFIX + "LOCK_HOLD_SECONDS"
LOCK_REDIS_URL_ENV = ENV_PREFIX + "LOCK_REDIS_URL"
ARTIFACT_LINK_ENV = ENV_PREFIX + "ARTIFACT_LINK_SECONDS"

#: The largest number of downloads or task runs at once.
MAX_SLOTS = 10_000
#: The longest a SigV4 presigned URL may live (7 days).
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+sentinel://")


def _slots(value: Any, env: str, what: str, default: int) -> int:
    raw = str(value).strip()
    if not raw:
        return default
    number = int(raw) if raw.isdigit() else 0
    if not 1 <= number <= MAX_SLOTS:
        raise InvalidRequest(env, f"{raw!r} is not a number of {what}", allowed=f"1 to {MAX_SLOTS}")
    return number


def link_seconds(value: Any, field: str) -> int:
    """A lifetime of artifact links in whole seconds, 60 to 604800 (SigV4's limit).

    Raises:
        InvalidRequest: naming ``field``, for anything else.
    """
    try:
        seconds = int(str(value).strip())
    except ValueError:
        seconds = -1
    if isinstance(value, bool) or not 60 <= seconds <= MAX_PRESIGN_SECONDS:
        raise InvalidRequest(field, f"{value!r} is not a link lifetime",
                             allowed=f"whole seconds, 60 to {MAX_PRESIGN_SECONDS} (7 days)")
    return seconds


class RunwaySettings(BaseSettings):
    """prefect-runway's settings: each field is the environment variable ``PREFECT_RUNWAY_``
    + its name in capitals (``max_downloads``: ``PREFECT_RUNWAY_MAX_DOWNLOADS``)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    max_downloads: int = Field(
        default=32,
        description="Output bodies streamed at once per event loop (a flow run's), whichever "
                    "client they come from: 1 to 10000.",
    )
    max_task_runs: int = Field(
        default=64,
        description="This package's Prefect task runs open at once per event loop (the flows' "
                    "submits): 1 to 10000.",
    )
    lock_dir: Path | None = Field(
        default=None,
        description="Where the submit locks' files live (one machine, or machines sharing the "
                    "directory); default: prefect-runway-locks beside Prefect's local results.",
    )
    lock_hold_seconds: float = Field(
        default=900.0,
        description="The longest a submit lock is held, in seconds (1 to 86400); a submit "
                    "waits at most twice as long for a lock.",
    )
    lock_redis_url: str | None = Field(
        default=None,
        description="Hold the submit locks in Redis (prefect-redis's RedisLockManager), shared "
                    "by every worker reaching it: redis://, rediss://, unix:// or "
                    "redis+sentinel://. Unset: file locks.",
    )
    artifact_link_seconds: int = Field(
        default=24 * 3600,
        description="How long the links in artifacts (presigned S3 GET URLs) stay valid, in "
                    "seconds: 60 to 604800 (7 days).",
    )

    @field_validator("max_downloads", mode="before")
    @classmethod
    def _max_downloads(cls, value: Any) -> int:
        return _slots(value, MAX_DOWNLOADS_ENV, "downloads", 32)

    @field_validator("max_task_runs", mode="before")
    @classmethod
    def _max_task_runs(cls, value: Any) -> int:
        return _slots(value, MAX_TASK_RUNS_ENV, "task runs", 64)

    @field_validator("lock_dir", mode="before")
    @classmethod
    def _lock_dir(cls, value: Any) -> Path | None:
        return Path(value).expanduser() if value else None

    @field_validator("lock_hold_seconds", mode="before")
    @classmethod
    def _lock_hold_seconds(cls, value: Any) -> float:
        if value in (None, ""):
            return 900.0
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.0
        if not 1 <= seconds <= 86400:
            raise InvalidRequest(LOCK_HOLD_ENV, f"{value!r} is not a number of seconds",
                                 allowed="1 to 86400")
        return seconds

    @field_validator("lock_redis_url", mode="before")
    @classmethod
    def _lock_redis_url(cls, value: Any) -> str | None:
        url = str(value or "").strip()
        if url and not url.startswith(REDIS_SCHEMES):
            raise InvalidRequest(LOCK_REDIS_URL_ENV, "is not a Redis URL",
                                 allowed="redis://host:port/db, rediss://..., redis+sentinel://...")
        return url or None

    @field_validator("artifact_link_seconds", mode="before")
    @classmethod
    def _artifact_link_seconds(cls, value: Any) -> int:
        return link_seconds(value or 24 * 3600, ARTIFACT_LINK_ENV)


#: The variables the settings are read from, in the order of the fields.
_ENV_NAMES = tuple(ENV_PREFIX + name.upper() for name in RunwaySettings.model_fields)
_read: tuple[tuple[str | None, ...], RunwaySettings] | None = None


def get_settings() -> RunwaySettings:
    """The settings, read from the environment and checked once; read again when one of
    their variables changed since (a test's monkeypatch, a process that sets one).

    Raises:
        InvalidRequest: a variable holds a value its setting does not take, naming the
            variable and what it allows; nothing was sent.
    """
    global _read
    seen = tuple(os.environ.get(name) for name in _ENV_NAMES)
    read = _read
    if read is None or read[0] != seen:
        try:
            read = _read = (seen, RunwaySettings())
        except ValidationError as exc:
            error = (exc.errors()[0].get("ctx") or {}).get("error")
            if isinstance(error, InvalidRequest):
                raise error from None
            raise
    return read[1]
