"""Flows: ``generate_image``, ``animate_image`` and the chain ``image_to_video``.

Each flow validates its request against the chosen provider before anything is sent, then
runs two Prefect tasks per job — submit (cached and persisted), then wait and download in
one — and publishes artifacts: the still as an image artifact, each video's preview (GIF or
contact sheet) as an image artifact, and a table of every output with its link, provider,
seconds and cost.
"""


from datetime import datetime, timedelta, timezone
from typing import Any

from prefect import flow
from prefect.logging import get_run_logger

from prefect_runway.artifacts import publish_outputs, publish_still, publish_video_preview
from prefect_runway.blocks.credentials import ProviderCredentials
from prefect_runway.cancellation import cancel_remote_jobs, track, untrack
from prefect_runway.errors import GenerationExpired, InvalidRequest
from prefect_runway.models import (
    GenerationResult,
    ImageRequest,
    ReferenceImage,
    StoredOutput,
    VideoRequest,
    bytes_to_data_uri,
)
from prefect_runway.plan import PreparedRequest, check_run, load_credentials, plan_chain, prepare
from prefect_runway.results import ImageToVideoResult
from prefect_runway.storage import OutputStorage, resolve_storage
from prefect_runway.tasks.generation import (
    collect_generation,
    flow_run_id,
    submit_task_for,
)

#: How old a provider output URL may be before it is refreshed from the provider.
FRESH_URL_SECONDS = 600
#: How long a presigned URL handing a stored still to the video provider stays valid.
HANDOFF_URL_SECONDS = 900


async def run_generation(
    prepared: PreparedRequest,
    credentials: ProviderCredentials,
    *,
    storage: OutputStorage,
    key_template: str | None = None,
    name: str | None = None,
    timeout: float | None = None,
    force: bool = False,
    preview: str | None = "gif",
) -> tuple[GenerationResult, list[StoredOutput]]:
    """Submit (cached), wait and download one request; resubmit once if the job expired.

    Call it inside a flow, with the request prepared (:func:`prefect_runway.plan.prepare`,
    so an invalid request costs nothing) and the storage resolved once per flow run. Two
    task runs per request: ``submit-generation`` (cached and persisted, so a re-run never
    pays twice) and ``collect-generation`` (wait, then download).
    """
    logger = get_run_logger()
    flow_run = flow_run_id()
    generation = await submit_task_for(credentials, refresh=force)(
        prepared, credentials, storage, force
    )
    for attempt in (1, 2):
        track(flow_run, credentials, generation)
        try:
            result, stored = await collect_generation(
                generation, credentials, storage, key_template, name, preview, timeout
            )
            untrack(flow_run, generation)
            return result, stored
        except GenerationExpired:
            untrack(flow_run, generation)
            if attempt == 2:
                raise
            logger.warning(
                "%s no longer holds job %s and its output was never stored; "
                "resubmitting it once (this is a new, billed job)",
                generation.provider, generation.job_id,
            )
            generation = await submit_task_for(credentials, refresh=True)(
                prepared, credentials, storage, True
            )
    raise AssertionError("unreachable")  # pragma: no cover


@flow(name="generate-image", on_cancellation=[cancel_remote_jobs])
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

    Returns:
        The stored, verified still.
    """
    credentials = await load_credentials(credentials)
    store = resolve_storage(storage)
    request = ImageRequest(prompt=prompt, reference_images=reference_images or [], ratio=ratio, seed=seed)
    prepared = prepare(request, credentials)
    await check_run(store, [(prepared, name)], key_template=key_template)
    result, stored = await run_generation(
        prepared, credentials, storage=store, key_template=key_template, name=name,
        timeout=timeout, force=force,
    )
    await publish_still(stored[0], store, name)
    await publish_outputs(stored, "gen4_image still", store, name)
    return stored[0]


@flow(name="animate-image", on_cancellation=[cancel_remote_jobs])
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

    Returns:
        The stored, verified video.
    """
    credentials = await load_credentials(credentials)
    store = resolve_storage(storage)
    request = VideoRequest(
        image=image, prompt=prompt, model=model, ratio=ratio, duration=duration, seed=seed,
        last_image=last_image,
    )
    prepared = prepare(request, credentials)
    await check_run(store, [(prepared, name)], key_template=key_template, preview=preview)
    _, stored = await run_generation(
        prepared, credentials, storage=store, key_template=key_template, name=name,
        timeout=timeout, force=force, preview=preview,
    )
    await publish_video_preview(stored[0], store, name)
    await publish_outputs(stored, f"{model} video", store, name)
    return stored[0]


@flow(name="image-to-video", on_cancellation=[cancel_remote_jobs])
async def image_to_video(
    still_prompt: str,
    motion_prompt: str,
    credentials: ProviderCredentials | str | None = None,
    reference_images: list[ReferenceImage | dict[str, Any]] | None = None,
    image_credentials: ProviderCredentials | str | None = None,
    video_credentials: ProviderCredentials | str | None = None,
    video_model: str = "gen4_turbo",
    still_ratio: str | None = None,
    video_ratio: str | None = None,
    duration: int = 5,
    seed: int | None = None,
    storage: Any = None,
    key_template: str | None = None,
    name: str | None = None,
    timeout: float | None = None,
    force: bool = False,
    preview: str | None = "gif",
) -> ImageToVideoResult:
    """A gen4_image still, then that still animated: the chain, across providers if you like.

    The still reaches the video provider as a short-lived presigned URL of the stored copy
    when outputs are in S3; otherwise by its fresh provider URL (refreshed from the provider
    when stale) or, once the provider has forgotten it, as a data URI where the video provider
    accepts one.

    Args:
        still_prompt: The still's prompt.
        motion_prompt: The animation's prompt.
        credentials: Credentials for both steps (unless the two below are given).
        reference_images: Tagged reference images for the still.
        image_credentials: Credentials for the still (default ``credentials``).
        video_credentials: Credentials for the video (default ``credentials``).
        video_model: ``gen4_turbo`` or ``gen3a_turbo``.
        still_ratio: The still's ratio.
        video_ratio: The video's ratio (default: the still's, mapped to the video model's).
        duration: 5 or 10 seconds.
        seed: Seed for both steps.
        storage: Directory, ``s3://bucket/prefix`` or filesystem block.
        key_template: Storage key template.
        name: Value of ``{name}`` in the key template.
        timeout: Wait deadline per step, in seconds.
        force: Submit new jobs even if the same requests are cached.
        preview: The video's preview stored beside it: ``"gif"``, ``"png"`` (contact sheet)
            or None.

    Returns:
        The stored still and video.
    """
    image_creds = await load_credentials(image_credentials or credentials)
    video_creds = await load_credentials(video_credentials or credentials)
    store = resolve_storage(storage)
    still_request = ImageRequest(
        prompt=still_prompt, reference_images=reference_images or [], ratio=still_ratio, seed=seed,
    )

    def video_request(image: str, image_sha256: str | None) -> VideoRequest:
        return VideoRequest(
            image=image, image_sha256=image_sha256, prompt=motion_prompt, model=video_model,
            ratio=video_ratio or still_ratio, duration=duration, seed=seed,
        )

    # Plan both steps (and check the run's settings) before spending anything on the first.
    chain = plan_chain(still_request, video_request, image_creds, video_creds)
    await check_run(store, [(chain.still, name), (chain.video_check, name)],
                    key_template=key_template, preview=preview)
    still_result, still_stored = await run_generation(
        chain.still, image_creds, storage=store, key_template=key_template, name=name,
        timeout=timeout, force=force,
    )
    still = still_stored[0]
    await publish_still(still, store, name)
    image = await still_reference(still, still_result, image_creds, video_creds, store)
    _, video_stored = await run_generation(
        chain.video(image, still.sha256), video_creds, storage=store, key_template=key_template,
        name=name, timeout=timeout, force=force, preview=preview,
    )
    await publish_video_preview(video_stored[0], store, name)
    await publish_outputs([still, video_stored[0]], "image-to-video", store, name)
    return ImageToVideoResult(still=still, video=video_stored[0])


async def still_reference(
    still: StoredOutput,
    result: GenerationResult,
    image_credentials: ProviderCredentials,
    video_credentials: ProviderCredentials,
    storage: OutputStorage | Any,
) -> str:
    """How the video provider should receive the still.

    In order: a presigned URL of the stored copy (S3 storage; valid
    :data:`HANDOFF_URL_SECONDS`), the provider's own URL while fresh, a refreshed provider
    URL, a data URI of the stored copy (where the video provider accepts one); else an
    :class:`InvalidRequest` that says to store outputs in S3.
    """
    logger = get_run_logger()
    store = resolve_storage(storage)  # the flow's resolved storage passes through as it is
    presigned = await store.presigned_url(still.key, HANDOFF_URL_SECONDS)
    if presigned:
        logger.info(
            "Handing the stored still %s to %s as a presigned URL (valid %d s)",
            store.location(still.key), video_credentials.provider_name, HANDOFF_URL_SECONDS,
        )
        return presigned
    if _age(result) < timedelta(seconds=FRESH_URL_SECONDS) and result.outputs:
        return result.outputs[0]
    try:
        async with image_credentials.get_client() as client:
            update = await client.refresh_outputs(result.generation)
        if update.outputs:
            return update.outputs[0]
    except GenerationExpired:
        logger.info("The still's provider URL has expired; handing the stored copy over instead")
    if video_credentials.provider().accepts_data_uri:
        data = await store.read_bytes(still.key)
        if data is not None:
            return bytes_to_data_uri(data, still.media_type)
    raise InvalidRequest(
        "image", f"the still's provider URL has expired and {video_credentials.provider_name} "
        "needs an https URL", allowed="store outputs in S3 (storage='s3://bucket/prefix') "
        "so a presigned URL can be passed on",
    )


def _age(result: GenerationResult) -> timedelta:
    return datetime.now(timezone.utc) - result.completed_at
