"""The root of every error prefect-runway raises."""

from __future__ import annotations


class PrefectRunwayError(Exception):
    """Base class of every error raised by prefect-runway."""


#: The earlier name of :class:`PrefectRunwayError` (the same class).
RunwayError = PrefectRunwayError
