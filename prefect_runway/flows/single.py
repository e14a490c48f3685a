"""Flows of one generation each: ``generate_image``, ``animate_image`` and ``text_to_video``."""

from typing import Any

from prefect_runway.blocks.credentials import ProviderCredentials
from prefect_runway.blocks.requests import load_credentials, prepare, reseeder, upload_images
from prefect_runway.flows.artifacts import publish_outputs, publish_still, publish_video_preview
from prefect_runway.flows.cancellation import cancel_remote_jobs
from prefect_runway.flows.parameters import runway_flow
from prefect_runway.flows.plan import check_run
from prefect_runway.flows.retries import run_generation
from prefect_runway.models import (
    ImageRequest,
    ReferenceImage,
    Request,
    StoredOutput,
    TextToVideoRequest,
    VideoRequest,
)
from prefect_runway.money.budget import Budget
from prefect_runway.money.daily import budget_guard
from prefect_runway.storage import OutputStorage, resolve_storage
from prefect_runway.tasks.runs import flow_run_id

__all__ = ["animate_image", "generate_image", "text_to_video"]


async def _one_request(
    request: Request,
    credentials: ProviderCredentials,
    store: OutputStorage,
    *,
    key_template: str | None,
    name: str | None,
    preview: str | None,
    upload: bool,
    **run: Any,
) -> list[StoredOutput]:
    """One request of a single-step flow: its local images uploaded, the request prepared and
    every setting checked before anything is paid, then :func:`run_generation` (``run``: its
    timeout, force, queue_timeout, retry_unsafe_output and resubmit_internal)."""
    request = await upload_images(request, credentials, upload=upload)
    prepared = prepare(request, credentials)
    await check_run(store, [(prepared, name)], key_template=key_template, preview=preview)
    _, stored = await run_generation(
        prepared, credentials, storage=store, key_template=key_template, name=name,
        preview=preview, reseed=reseeder(request, credentials), **run,
    )
    return stored



@runway_flow(name="generate-image", on_cancellation=[cancel_remote_jobs])
async def generate_image(
    prompt: str,
    credentials: ProviderCredentials | str,
    reference_images: list[ReferenceImage | dict[str, Any]] | None = None,
    ratio: str | None = None,
    seed: int | None = None,
    storage: Any = None,
    key_template: str | None = None,
    name: str | None = None,
    timeout: float | None = None,
    force: bool = False,
    upload: bool = False,
    queue_timeout: float | None = None,
    retry_unsafe_output: int = 0,
    resubmit_internal: bool = True,
    options: dict[str, Any] | None = None,
) -> StoredOutput:
    """Generate one gen4_image still and store it.

    Args:
        prompt: What to draw; refer to reference images as ``@tag``.
        credentials: The provider's credentials block (or ``"block-type/name"``).
        reference_images: Tagged reference images ``{uri, tag}``.
        ratio: Output ratio (provider default when None).
        seed: Seed (provider's random when None).
        storage: Directory, ``s3://bucket/prefix`` or filesystem block (default ``./runway-outputs``).
        key_template: Storage key template, e.g. ``"{flow_run}/{name}-{seed}.{ext}"``.
        name: Value of ``{name}`` in the key template.
        timeout: Wait deadline in seconds.
        force: Submit a new job even if the same request is cached.
        upload: Send local images as uploads (Runway: ephemeral ``runway://`` uploads) even
            when they would fit a data URI; those too long for one are uploaded anyway.
        queue_timeout: How long a job may sit THROTTLED (held back by the provider's
            concurrency limit), in seconds; that time does not count against ``timeout``
            (default: the block's ``queue_timeout_seconds``).
        retry_unsafe_output: How many times an output rejected by content moderation is
            retried with a new random seed (each a new, billed job); 0: never.
        resubmit_internal: Resubmit a job that failed internally once (not when the
            provider says it was charged).
        options: The model's own options (Runway's API), e.g. ``{"output_format": "png"}``.

    Returns:
        The stored, verified still.
    """
    credentials = await load_credentials(credentials)
    store = resolve_storage(storage)
    request: Request = ImageRequest(
        prompt=prompt, reference_images=reference_images or [], ratio=ratio, seed=seed,
        options=options or {},
    )
    stored = await _one_request(
        request, credentials, store, key_template=key_template, name=name, preview=None,
        upload=upload, timeout=timeout, force=force, queue_timeout=queue_timeout,
        retry_unsafe_output=retry_unsafe_output, resubmit_internal=resubmit_internal,
    )
    await publish_still(stored[0], store, name)
    await publish_outputs(stored, "gen4_image still", store, name)
    return stored[0]


@runway_flow(name="animate-image", on_cancellation=[cancel_remote_jobs])
async def animate_image(
    image: str,
    credentials: ProviderCredentials | str,
    prompt: str = "",
    model: str = "gen4_turbo",
    ratio: str | None = None,
    duration: int = 5,
    seed: int | None = None,
    last_image: str | None = None,
    storage: Any = None,
    key_template: str | None = None,
    name: str | None = None,
    timeout: float | None = None,
    force: bool = False,
    preview: str | None = "gif",
    upload: bool = False,
    queue_timeout: float | None = None,
    retry_unsafe_output: int = 0,
    resubmit_internal: bool = True,
    options: dict[str, Any] | None = None,
) -> StoredOutput:
    """Animate one image with gen4_turbo or gen3a_turbo and store the video.

    Args:
        image: The first frame: https URL, data URI or local path (what the provider accepts).
        credentials: The provider's credentials block (or ``"block-type/name"``).
        prompt: The motion prompt.
        model: ``gen4_turbo`` or ``gen3a_turbo``.
        ratio: Output ratio (provider default when None).
        duration: 5 or 10 seconds.
        seed: Seed (provider's random when None).
        last_image: Optional last frame (gen3a_turbo on AIMLAPI / Runway).
        storage: Directory, ``s3://bucket/prefix`` or filesystem block.
        key_template: Storage key template.
        name: Value of ``{name}`` in the key template.
        timeout: Wait deadline in seconds.
        force: Submit a new job even if the same request is cached.
        preview: The video's preview stored beside it: ``"gif"``, ``"png"`` (contact sheet)
            or None.
        upload: Send local images as uploads (Runway: ephemeral ``runway://`` uploads) even
            when they would fit a data URI; those too long for one are uploaded anyway.
        queue_timeout: How long a job may sit THROTTLED (held back by the provider's
            concurrency limit), in seconds; that time does not count against ``timeout``
            (default: the block's ``queue_timeout_seconds``).
        retry_unsafe_output: How many times an output rejected by content moderation is
            retried with a new random seed (each a new, billed job); 0: never.
        resubmit_internal: Resubmit a job that failed internally once (not when the
            provider says it was charged).
        options: The model's own options (Runway's API), e.g. ``{"audio": True}`` for veo3.1.

    Returns:
        The stored, verified video.
    """
    credentials = await load_credentials(credentials)
    store = resolve_storage(storage)
    request: Request = VideoRequest(
        image=image, prompt=prompt, model=model, ratio=ratio, duration=duration, seed=seed,
        last_image=last_image, options=options or {},
    )
    stored = await _one_request(
        request, credentials, store, key_template=key_template, name=name, preview=preview,
        upload=upload, timeout=timeout, force=force, queue_timeout=queue_timeout,
        retry_unsafe_output=retry_unsafe_output, resubmit_internal=resubmit_internal,
    )
    await publish_video_preview(stored[0], store, name)
    await publish_outputs(stored, f"{model} video", store, name)
    return stored[0]


@runway_flow(name="text-to-video", on_cancellation=[cancel_remote_jobs])
async def text_to_video(
    prompt: str,
    credentials: ProviderCredentials | str,
    model: str = "gen4.5",
    ratio: str | None = None,
    duration: int = 5,
    seed: int | None = None,
    options: dict[str, Any] | None = None,
    storage: Any = None,
    budget: float | str | None = None,
    key_template: str | None = None,
    name: str | None = None,
    timeout: float | None = None,
    force: bool = False,
    preview: str | None = "gif",
    queue_timeout: float | None = None,
    retry_unsafe_output: int = 0,
    resubmit_internal: bool = True,
) -> StoredOutput:
    """A video from a prompt alone, no still (Runway's ``text_to_video``: gen4.5, veo3.1, ...).

    Args:
        prompt: What the video shows.
        credentials: Runway's credentials block (or ``"block-type/name"``).
        model: A text_to_video model of Runway's API (``gen4.5``: 1280:720 or 720:1280).
        ratio: Output ratio, one the model takes (the model's default when None).
        duration: Seconds, as the model takes them (gen4.5: 2-10; veo3.1: 4, 6 or 8).
        seed: Seed (provider's random when None).
        options: The model's own options, e.g. ``{"audio": False}`` for veo3.1.
        storage: Directory, ``s3://bucket/prefix`` or filesystem block.
        budget: This run's cap (a number in the provider's unit or ``"USD 5.00"``): a job
            that would pass it, or whose price is unknown, is not sent.
        key_template: Storage key template.
        name: Value of ``{name}`` in the key template.
        timeout: Wait deadline in seconds.
        force: Submit a new job even if the same request is cached.
        preview: The video's preview stored beside it: ``"gif"``, ``"png"`` or None.
        queue_timeout: How long a job may sit THROTTLED, in seconds (not counted against
            ``timeout``; default: the block's).
        retry_unsafe_output: How many times an output rejected by moderation is retried
            with a new random seed (each a new, billed job); 0: never.
        resubmit_internal: Resubmit a job that failed internally once (not when the
            provider says it was charged).

    Returns:
        The stored, verified video.

    Raises:
        NotStarted: the job would pass ``budget`` or has no known price; nothing was sent.
    """
    credentials = await load_credentials(credentials)
    store = resolve_storage(storage)
    request: Request = TextToVideoRequest(
        prompt=prompt, model=model, ratio=ratio, duration=duration, seed=seed,
        options=options or {},
    )
    guard = budget_guard(Budget.parse(budget), [credentials], store, flow_run_id())
    stored = await _one_request(
        request, credentials, store, key_template=key_template, name=name, preview=preview,
        upload=False, timeout=timeout, force=force, queue_timeout=queue_timeout,
        retry_unsafe_output=retry_unsafe_output, resubmit_internal=resubmit_internal,
        guard=guard, what="the video",
    )
    await publish_video_preview(stored[0], store, name)
    await publish_outputs(stored, f"{model} text-to-video", store, name)
    return stored[0]
