"""Pure provider translations: request -> HTTP call, HTTP answer -> status/result/error.

Each module knows one API's endpoints, headers, field names, allowed values and status
vocabulary, and never opens a socket. :func:`get_provider` returns one by name.
"""

from __future__ import annotations

from prefect_runway.providers.aimlapi import AimlapiProvider
from prefect_runway.providers.base import ModelSpec, PreparedRequest, Provider
from prefect_runway.providers.runway import RunwayProvider
from prefect_runway.providers.segmind import SegmindProvider
from prefect_runway.providers.wire import HttpCall, PendingUpload, UploadForm

PROVIDERS: dict[str, type[Provider]] = {
    SegmindProvider.name: SegmindProvider,
    AimlapiProvider.name: AimlapiProvider,
    RunwayProvider.name: RunwayProvider,
}


def get_provider(name: str, **options: object) -> Provider:
    """The provider translation called ``name`` (segmind, aimlapi, runway)."""
    try:
        cls = PROVIDERS[name]
    except KeyError:
        from prefect_runway.errors import InvalidRequest

        raise InvalidRequest("provider", f"{name!r} is not known", allowed=sorted(PROVIDERS)) from None
    return cls(**options)  # type: ignore[arg-type]


__all__ = [
    "HttpCall", "ModelSpec", "PendingUpload", "PreparedRequest", "Provider", "PROVIDERS", "UploadForm",
    "get_provider",
]
