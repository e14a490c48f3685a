"""prefect-runway: Runway's generative models as dependable Prefect pipeline steps.

gen4_image stills and gen4_turbo / gen3a_turbo animations on Segmind, AI/ML API or Runway's
own API, with credentials in Prefect blocks, submit / wait / download as retried and cached
tasks, and flows that chain a still into a video.

The names here are the public API: blocks, flows, tasks, requests, results, errors and the
storage types ``storage=`` accepts. The HTTP engine is :mod:`prefect_runway.engine`, the
provider translations :mod:`prefect_runway.providers`; neither is exported here.
"""

from prefect_runway._version import __version__
from prefect_runway.blocks import (
    AimlapiCredentials,
    ProviderCredentials,
    RunwayCredentials,
    SegmindCredentials,
)
from prefect_runway.errors import (
    AuthenticationError,
    BadResponse,
    BudgetExceeded,
    ClassifiedFailure,
    ContentRejected,
    DailyQuotaExceeded,
    DownloadError,
    DownloadVerificationFailed,
    GenerationCancelled,
    GenerationExpired,
    GenerationFailed,
    GenerationInternalError,
    GenerationTimedOut,
    InsufficientCredits,
    InvalidAsset,
    InvalidRequest,
    InvalidShot,
    LocalDecision,
    ModelRetired,
    OutputRejected,
    PrefectRunwayError,
    ProviderError,
    ProviderRejected,
    ProviderReported,
    ProviderUnavailable,
    RateLimited,
    RunwayError,
    StorageError,
    StoryboardFailed,
    SubmissionUncertain,
    UnsupportedOption,
    UploadRequired,
)
from prefect_runway.flows import (
    animate_image,
    generate_image,
    image_to_video,
    storyboard,
)
from prefect_runway.flows.results import ImageToVideoResult, ShotResult, StoryboardSummary
from prefect_runway.models import (
    Generation,
    GenerationResult,
    ImageRequest,
    ReferenceImage,
    Shot,
    StoredOutput,
    VideoRequest,
)
from prefect_runway.storage import (
    FileSystemBlockStorage,
    LocalStorage,
    OutputStorage,
    S3Storage,
)
from prefect_runway.tasks import (
    collect_generation,
    download_generation,
    submit_generation,
    wait_for_generation,
)

__all__ = [
    "__version__",
    # blocks
    "AimlapiCredentials", "ProviderCredentials", "RunwayCredentials", "SegmindCredentials",
    # flows
    "animate_image", "generate_image", "image_to_video", "storyboard",
    # tasks
    "collect_generation", "download_generation", "submit_generation", "wait_for_generation",
    # requests
    "ImageRequest", "ReferenceImage", "Shot", "VideoRequest",
    # results
    "Generation", "GenerationResult", "ImageToVideoResult", "ShotResult", "StoredOutput",
    "StoryboardSummary",
    # errors
    "AuthenticationError", "BadResponse", "BudgetExceeded", "ClassifiedFailure", "ContentRejected",
    "DailyQuotaExceeded", "DownloadError", "DownloadVerificationFailed", "GenerationCancelled",
    "GenerationExpired", "GenerationFailed", "GenerationInternalError", "GenerationTimedOut",
    "InsufficientCredits", "InvalidAsset", "InvalidRequest", "InvalidShot", "LocalDecision",
    "ModelRetired", "OutputRejected", "PrefectRunwayError", "ProviderError",
    "StorageError", "ProviderRejected",
    "ProviderReported", "ProviderUnavailable", "RateLimited", "RunwayError", "StoryboardFailed",
    "SubmissionUncertain", "UnsupportedOption", "UploadRequired",
    # storage
    "FileSystemBlockStorage", "LocalStorage", "OutputStorage", "S3Storage",
]
