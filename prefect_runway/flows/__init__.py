"""Flows: generate_image, animate_image, and the chain image_to_video."""

from prefect_runway.flows.generation import (
    ImageToVideoResult,
    animate_image,
    generate_image,
    image_to_video,
    run_generation,
)

__all__ = ["ImageToVideoResult", "animate_image", "generate_image", "image_to_video", "run_generation"]
