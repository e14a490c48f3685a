"""Typed requests and results, and the catalogue of the models each provider serves."""

from prefect_runway.models import catalogue
from prefect_runway.models.base import (
    MAX_NAME,
    StrictModel,
    as_invalid_request,
    bytes_to_data_uri,
    check_name,
    seconds_value,
    sniff_media_type,
    utc_now,
    utf16_len,
)
from prefect_runway.models.requests import (
    DURATIONS,
    IMAGE_MODELS,
    MAX_PROMPT_UTF16,
    PLACEHOLDER_IMAGE,
    PLACEHOLDER_VIDEO,
    SEED_MAX,
    VIDEO_MODELS,
    ContentModeration,
    FinishRequest,
    ImageRequest,
    Kind,
    ReferenceImage,
    Request,
    TextToVideoRequest,
    VideoModel,
    VideoRequest,
    duration_seconds,
    model_durations,
)
from prefect_runway.models.results import (
    Balance,
    Generation,
    GenerationResult,
    JobState,
    ModelLimits,
    StatusUpdate,
    StoredOutput,
)
from prefect_runway.models.shot import Shot

__all__ = [
    "DURATIONS", "IMAGE_MODELS", "MAX_NAME", "MAX_PROMPT_UTF16", "PLACEHOLDER_IMAGE",
    "PLACEHOLDER_VIDEO", "SEED_MAX", "VIDEO_MODELS", "Balance", "ContentModeration", "FinishRequest", "Generation", "GenerationResult",
    "ImageRequest", "JobState", "Kind", "ModelLimits", "ReferenceImage", "Request", "Shot",
    "StatusUpdate", "StoredOutput", "StrictModel", "TextToVideoRequest", "VideoModel",
    "VideoRequest",
    "as_invalid_request", "bytes_to_data_uri", "catalogue", "check_name", "duration_seconds",
    "model_durations", "seconds_value", "sniff_media_type", "utc_now", "utf16_len",
]
