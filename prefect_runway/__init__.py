"""prefect-runway: Runway's generative models as dependable Prefect pipeline steps.

The names here are the public API: blocks, flows, tasks, requests and results.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

from prefect_runway._version import __version__ as __version__

if TYPE_CHECKING:
    from prefect_runway.blocks import (
        AimlapiCredentials,
        ProviderCredentials,
        RunwayCredentials,
        SegmindCredentials,
    )
    from prefect_runway.errors import PrefectRunwayError
    from prefect_runway.flows import (
        animate_image,
        generate_image,
        image_to_video,
        storyboard,
        text_to_video,
    )
    from prefect_runway.flows.results import ImageToVideoResult, ShotResult, StoryboardSummary
    from prefect_runway.models import (
        Generation,
        GenerationResult,
        ImageRequest,
        ReferenceImage,
        Shot,
        StoredOutput,
        TextToVideoRequest,
        VideoRequest,
    )
    from prefect_runway.tasks import (
        collect_generation,
        download_generation,
        submit_generation,
        wait_for_generation,
    )

#: Each public name and the module it is imported from, on first use: ``import
#: prefect_runway.errors`` or ``prefect_runway.models`` does not load Prefect's flows.
_PUBLIC = {
    # blocks
    "AimlapiCredentials": "prefect_runway.blocks",
    "ProviderCredentials": "prefect_runway.blocks",
    "RunwayCredentials": "prefect_runway.blocks",
    "SegmindCredentials": "prefect_runway.blocks",
    # flows
    "animate_image": "prefect_runway.flows",
    "generate_image": "prefect_runway.flows",
    "image_to_video": "prefect_runway.flows",
    "storyboard": "prefect_runway.flows",
    "text_to_video": "prefect_runway.flows",
    # tasks
    "collect_generation": "prefect_runway.tasks",
    "download_generation": "prefect_runway.tasks",
    "submit_generation": "prefect_runway.tasks",
    "wait_for_generation": "prefect_runway.tasks",
    # requests
    "ImageRequest": "prefect_runway.models",
    "ReferenceImage": "prefect_runway.models",
    "Shot": "prefect_runway.models",
    "TextToVideoRequest": "prefect_runway.models",
    "VideoRequest": "prefect_runway.models",
    # results
    "Generation": "prefect_runway.models",
    "GenerationResult": "prefect_runway.models",
    "StoredOutput": "prefect_runway.models",
    "ImageToVideoResult": "prefect_runway.flows.results",
    "ShotResult": "prefect_runway.flows.results",
    "StoryboardSummary": "prefect_runway.flows.results",
    # the root of every error (the others: prefect_runway.errors)
    "PrefectRunwayError": "prefect_runway.errors",
}

#: Names this module exported before its front door was made small: still importable from
#: here, with a DeprecationWarning naming the module to import them from.
_MOVED = {
    **dict.fromkeys((
        "AuthenticationError", "BadResponse", "BudgetExceeded", "ClassifiedFailure",
        "ContentRejected", "DailyQuotaExceeded", "DownloadError", "DownloadVerificationFailed",
        "GenerationCancelled", "GenerationExpired", "GenerationFailed",
        "GenerationInternalError", "GenerationTimedOut", "InsufficientCredits", "InvalidAsset",
        "InvalidRequest", "InvalidShot", "LocalDecision", "ModelRetired", "OutputRejected",
        "ProviderError", "ProviderRejected", "ProviderReported", "ProviderUnavailable",
        "RateLimited", "RunwayError", "StorageError", "StoryboardFailed", "SubmissionUncertain",
        "UnsupportedOption", "UploadRequired",
    ), "prefect_runway.errors"),
    **dict.fromkeys(
        ("FileSystemBlockStorage", "LocalStorage", "OutputStorage", "S3Storage"),
        "prefect_runway.storage",
    ),
}

__all__ = [
    # blocks
    "AimlapiCredentials", "ProviderCredentials", "RunwayCredentials", "SegmindCredentials",
    # flows
    "animate_image", "generate_image", "image_to_video", "storyboard", "text_to_video",
    # tasks
    "collect_generation", "download_generation", "submit_generation", "wait_for_generation",
    # requests
    "ImageRequest", "ReferenceImage", "Shot", "TextToVideoRequest", "VideoRequest",
    # results
    "Generation", "GenerationResult", "ImageToVideoResult", "ShotResult", "StoredOutput",
    "StoryboardSummary",
    # errors
    "PrefectRunwayError",
]


def __getattr__(name: str) -> Any:
    """Import a public name (or a subpackage) when it is first asked for (PEP 562)."""
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
    elif name in _MOVED:
        warnings.warn(
            f"import {name} from {_MOVED[name]}; prefect_runway no longer exports it",
            DeprecationWarning, stacklevel=2,
        )
        return getattr(importlib.import_module(_MOVED[name]), name)
    elif not name.startswith("_"):
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
