"""Prefect blocks: a credentials block per provider."""

from prefect_runway.blocks.credentials import (
    AimlapiCredentials,
    ProviderCredentials,
    RunwayCredentials,
    SegmindCredentials,
)

__all__ = [
    "AimlapiCredentials",
    "RunwayCredentials",
    "ProviderCredentials",
    "SegmindCredentials",
]
