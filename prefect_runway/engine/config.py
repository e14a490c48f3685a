"""The engine's settings as explicit, typed values: retries, timeouts, connection limits."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import httpx

from prefect_runway._version import __version__

__all__ = [
    "ConnectionLimits", "DownloadLimits", "EngineConfig", "MAX_API_BODY", "RetryPolicy",
    "Timeouts", "USER_AGENT",
]

#: The User-Agent of every request, from the package's single version.
USER_AGENT = f"prefect-runway/{__version__}"
#: The largest API answer (JSON) read; media downloads stream to disk, bounded by
#: :class:`DownloadLimits`.
MAX_API_BODY = 4 * 1024 * 1024
_MiB = 1024 * 1024


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


@dataclass(frozen=True)
class Timeouts:
    """httpx timeouts of one request, in seconds.

    Attributes:
        total: The default for reading, writing and waiting for a pooled connection.
        connect: Establishing a connection.
    """

    total: float = 60.0
    connect: float = 10.0

    def httpx(self) -> httpx.Timeout:
        return httpx.Timeout(self.total, connect=self.connect)


@dataclass(frozen=True)
class ConnectionLimits:
    """The connection pool of one client.

    Attributes:
        max_connections: Connections open at once.
        max_keepalive: Idle connections kept for reuse.
    """

    max_connections: int = 100
    max_keepalive: int = 20

    def httpx(self) -> httpx.Limits:
        return httpx.Limits(
            max_connections=self.max_connections, max_keepalive_connections=self.max_keepalive
        )


@dataclass(frozen=True)
class DownloadLimits:
    """The largest output one download may bring, per kind, in bytes: checked against the
    ``Content-Length`` before the body is read, and again while it streams.

    Attributes:
        max_image_bytes: A still (today's are a few MB; a 4K PNG well under 64 MiB).
        max_video_bytes: A video (a 10 s 1080p clip is tens of MB).
    """

    max_image_bytes: int = 64 * _MiB
    max_video_bytes: int = 2048 * _MiB

    def for_media(self, expected_media: tuple[str, ...]) -> int:
        """The limit for a download expected to be one of ``expected_media`` (prefixes such
        as ``("image/",)``): the larger limit when both kinds may come."""
        limits = []
        if any(m.startswith("image/") for m in expected_media):
            limits.append(self.max_image_bytes)
        if any(m.startswith("video/") for m in expected_media):
            limits.append(self.max_video_bytes)
        return max(limits or [self.max_image_bytes, self.max_video_bytes])


@dataclass(frozen=True)
class EngineConfig:
    """Everything one client is configured with, besides the provider, key and URL."""

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeouts: Timeouts = field(default_factory=Timeouts)
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    user_agent: str = USER_AGENT
    downloads: DownloadLimits = field(default_factory=DownloadLimits)
