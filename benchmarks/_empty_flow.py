"""Prefect's own floor for ``benchmarks.scale``: a flow with ``image_to_video``'s parameters that
does nothing, deployed and run the same way; it imports nothing but Prefect."""

from typing import Any

from prefect import flow


@flow(name="empty-image-to-video")
async def empty_image_to_video(
    still_prompt: str,
    motion_prompt: str,
    credentials: str | None = None,
    name: str | None = None,
    seed: int | None = None,
    storage: Any = None,
    budget: float | str | None = None,
    review: bool = False,
    still: dict[str, Any] | None = None,
    video: dict[str, Any] | None = None,
    run: dict[str, Any] | None = None,
    review_options: dict[str, Any] | None = None,
    # The flat keywords the benchmark passes (image_to_video maps them onto its groups).
    reference_images: list[dict[str, str]] | None = None,
    still_ratio: str | None = None,
    duration: int | None = None,
    preview: str | None = None,
) -> None:
    """``image_to_video``'s signature (its option groups as mappings, the credentials as a
    block's name: Prefect's types only), and no work."""
