"""Flows: generate_image, animate_image, text_to_video, the chain image_to_video, and the batch
storyboard."""

from prefect_runway.flows.generation import (
    animate_image,
    generate_image,
    image_to_video,
    text_to_video,
)
from prefect_runway.flows.results import ImageToVideoResult, ShotResult, StoryboardSummary
from prefect_runway.flows.retries import run_generation
from prefect_runway.flows.storyboard import storyboard

__all__ = [
    "ImageToVideoResult", "ShotResult", "StoryboardSummary", "animate_image", "generate_image",
    "image_to_video", "run_generation", "storyboard", "text_to_video",
]
