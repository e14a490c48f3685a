"""prefect-runway: Runway's generative models as dependable Prefect pipeline steps.

gen4_image stills and gen4_turbo / gen3a_turbo animations on Segmind, AI/ML API or Runway's
own API, with credentials in Prefect blocks, submit / wait / download as retried and cached
tasks, and flows that chain a still into a video.
"""

from prefect_runway._version import __version__ as __version__
from prefect_runway.blocks import (
    AimlapiCredentials,
    RunwayCredentials,
    RunwayProviderCredentials,
    SegmindCredentials,
)
from prefect_runway.client import PollSchedule, RetryPolicy, RunwayClient
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
    InvalidShot,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    RunwayError,
    StoryboardFailed,
    SubmissionUncertain,
)
from prefect_runway.flows import (
    ImageToVideoResult,
    ShotResult,
    StoryboardSummary,
    animate_image,
    generate_image,
    image_to_video,
    storyboard,
)
from prefect_runway.models import (
    Generation,
    GenerationResult,
    ImageRequest,
    ReferenceImage,
    Shot,
    StoredOutput,
    VideoRequest,
)
from prefect_runway.tasks import download_generation, submit_generation, wait_for_generation

__all__ = [
    "AimlapiCredentials", "AuthenticationError", "BadResponse", "DownloadError", "Generation",
    "GenerationCancelled", "GenerationExpired", "GenerationFailed", "GenerationResult",
    "GenerationTimedOut", "ImageRequest", "ImageToVideoResult", "InsufficientCredits",
    "InvalidRequest", "PollSchedule", "ProviderError", "ProviderRejected", "ProviderUnavailable",
    "RateLimited", "ReferenceImage", "RetryPolicy", "RunwayClient", "RunwayCredentials",
    "RunwayError", "RunwayProviderCredentials", "SegmindCredentials", "StoredOutput",
    "SubmissionUncertain", "VideoRequest", "animate_image", "download_generation",
    "generate_image", "image_to_video", "submit_generation", "wait_for_generation",
    # storyboards
    "InvalidShot", "Shot", "ShotResult", "StoryboardFailed", "StoryboardSummary", "storyboard",
]
