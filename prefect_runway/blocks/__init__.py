"""Prefect blocks: a credentials block per provider."""

from prefect_runway.blocks.credentials import (
    AimlapiCredentials,
    RunwayCredentials,
    RunwayProviderCredentials,
    SegmindCredentials,
)

__all__ = [
    "AimlapiCredentials",
    "RunwayCredentials",
    "RunwayProviderCredentials",
    "SegmindCredentials",
]
