"""Prefect tasks: submit, wait for, and download a generation.

``submit_generation`` is cached on the request fingerprint (provider, model, canonical
request — never the key) with a persisted result, so a retried task, a retried flow or a
re-run of the same flow finds the job already submitted instead of paying for it again, for
as long as the provider holds it. ``wait_for_generation`` and ``download_generation`` retry
what a retry can cure and nothing else.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta
from typing import Any

from prefect import task
from prefect.context import TaskRunContext
from prefect.logging import get_run_logger

from prefect_runway.blocks.credentials import RunwayProviderCredentials
from prefect_runway.errors import DownloadError, InvalidRequest, ProviderError, RunwayError
from prefect_runway.models import Generation, GenerationResult, Request, StoredOutput
from prefect_runway.previews import PREVIEW_FORMATS, Preview, make_preview, preview_key
from prefect_runway.providers.base import redact_url
from prefect_runway.storage import (
    DEFAULT_KEY_TEMPLATE,
    OutputStorage,
    render_key,
    resolve_storage,
    sidecar_key,
)

_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "video/mp4": "mp4"}


def submission_cache_key(credentials: RunwayProviderCredentials, request: Request) -> str:
    """The cache key of a submission: its fingerprint and the API it goes to; no secret."""
    prepared = credentials.provider().prepare(request, credentials.resolved_base_url())
    scope = f"{prepared.fingerprint}|{prepared.base_url}"
    return "prefect-runway-submit-" + hashlib.sha256(scope.encode()).hexdigest()[:40]


def _cache_key_fn(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    return submission_cache_key(parameters["credentials"], parameters["request"])


async def _failure(state: Any) -> BaseException | None:
    if isinstance(state.data, BaseException):
        return state.data
    try:
        await state.aresult()
    except BaseException as exc:  # noqa: BLE001 - we only classify it
        return exc
    return None


async def _retry_submit(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a submit only where the provider provably did not take the job."""
    exc = await _failure(state)
    return isinstance(exc, ProviderError) and exc.retryable


async def _retry_read(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a read unless the error is final (a failed job, a bad request, bad credentials)."""
    exc = await _failure(state)
    if isinstance(exc, ProviderError):
        return exc.retryable
    return not isinstance(exc, RunwayError)


@task(
    name="submit-generation",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=_retry_submit,
    cache_key_fn=_cache_key_fn,
    cache_expiration=timedelta(hours=1),
    persist_result=True,
)
async def submit_generation(
    request: Request, credentials: RunwayProviderCredentials
) -> Generation:
    """Submit one generation to the provider the credentials are for.

    Cached on the request fingerprint, so the same request is not submitted twice while the
    provider holds the job. Use :func:`submit_task_for` to get the task with the provider's
    retention as its cache expiry.

    Args:
        request: An ImageRequest or VideoRequest.
        credentials: A SegmindCredentials, AimlapiCredentials or RunwayCredentials block.

    Returns:
        The submitted job.

    Raises:
        InvalidRequest: before anything is sent.
        SubmissionUncertain: the outcome is unknown; not retried.

    Example:
        ```python
        from prefect import flow
        from prefect_runway import ImageRequest, SegmindCredentials
        from prefect_runway.tasks import submit_generation

        @flow
        async def submit_one():
            credentials = await SegmindCredentials.load("BLOCK_NAME")
            request = ImageRequest(prompt="a lighthouse", reference_images=[
                {"uri": "https://example.com/ref.png", "tag": "ref"}])
            return await submit_generation(request, credentials)
        ```
    """
    logger = get_run_logger()
    async with credentials.get_client() as client:
        generation = await client.submit(request)
    logger.info(
        "Submitted %s %s job %s (fingerprint %s)",
        generation.provider, generation.model, generation.job_id, generation.fingerprint[:12],
    )
    return generation


def submit_task_for(credentials: RunwayProviderCredentials, *, refresh: bool = False) -> Any:
    """``submit_generation`` with the cache expiry set to the provider's retention window."""
    retention = credentials.provider().retention_seconds
    return submit_generation.with_options(
        cache_expiration=timedelta(seconds=retention * 0.95), refresh_cache=refresh or None,
    )


@task(
    name="wait-for-generation",
    retries=2,
    retry_delay_seconds=[1, 10],
    retry_condition_fn=_retry_read,
)
async def wait_for_generation(
    generation: Generation,
    credentials: RunwayProviderCredentials,
    timeout: float | None = None,
) -> GenerationResult:
    """Poll a submitted job until it finishes, within a deadline.

    Args:
        generation: The job from ``submit_generation``.
        credentials: The same provider's credentials block.
        timeout: Overall deadline in seconds (None: the block's ``wait_timeout_seconds``).

    Returns:
        The finished job's output URLs, metrics and cost.

    Raises:
        GenerationFailed, GenerationCancelled, GenerationExpired, GenerationTimedOut.
    """
    async with credentials.get_client() as client:
        result = await client.wait(generation, timeout=timeout)
    get_run_logger().info(
        "%s job %s finished in %.1fs with %d output(s)",
        generation.provider, generation.job_id, result.seconds, len(result.outputs),
    )
    return result


def partial_name(key: str, url: str) -> str:
    """The partial file of one output: stable across processes for the same key and output
    (a re-signed URL is the same output), different for a resubmitted job's new output."""
    ident = hashlib.sha256(f"{key}|{redact_url(url)}".encode()).hexdigest()[:24]
    return f".part-{ident}"


def output_key(
    template: str | None,
    *,
    kind: str,
    model: str,
    provider: str,
    fingerprint: str,
    seed: int | None,
    name: str | None,
    media_type: str,
    index: int = 0,
    count: int = 1,
    job_id: str | None = None,
    flow_run: str | None = None,
    date: str | None = None,
) -> str:
    """The storage key of one output, from the key template."""
    template = template or DEFAULT_KEY_TEMPLATE
    ext = _EXTENSIONS.get(media_type, "bin")
    if count > 1 and "{index" not in template:
        stem, dot, suffix = template.rpartition(".")
        template = f"{stem}-{{index}}.{suffix}" if dot else f"{template}-{{index}}"
    return render_key(
        template, kind=kind, model=model, provider=provider, fingerprint=fingerprint[:16],
        seed=seed, name=name or kind, ext=ext, index=index, job_id=job_id, flow_run=flow_run,
        date=date,
    )


@task(
    name="download-generation",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=_retry_read,
)
async def download_generation(
    result: GenerationResult,
    credentials: RunwayProviderCredentials,
    storage: Any = None,
    key_template: str | None = None,
    name: str | None = None,
    preview: str | None = "gif",
) -> list[StoredOutput]:
    """Download every output of a finished job into storage, verified, with a sidecar each.

    Each output streams to a temporary file while being hashed, is checked (length, media
    type, magic bytes), then lands atomically under its key (to S3: a multipart upload from
    that file); a JSON sidecar beside it records the request (no secrets), provider, job,
    timings, metrics, sha256 and size. A video also gets a small preview beside it
    (``<key>.preview.gif`` or ``.preview.png``), named in its sidecar as ``preview_key``. An
    output already stored and still matching its sidecar is not downloaded again. A signed
    output URL that has expired is refreshed from the provider once.

    Args:
        result: The finished job from ``wait_for_generation``.
        credentials: The provider's credentials block (to re-fetch expired output URLs).
        storage: A directory, ``s3://bucket/prefix``, or a Prefect filesystem block
            (default ``./runway-outputs``).
        key_template: e.g. ``"{flow_run}/{name}-{seed}.{ext}"``; default
            ``"{kind}-{fingerprint}.{ext}"``.
        name: A name for the ``{name}`` placeholder.
        preview: For videos: ``"gif"`` (animated), ``"png"`` (contact sheet) or None.

    Returns:
        One StoredOutput per output.
    """
    logger = get_run_logger()
    if preview is not None and preview not in PREVIEW_FORMATS:
        raise InvalidRequest("preview", f"{preview!r} is not a preview format",
                             allowed=(*PREVIEW_FORMATS, None))
    store: OutputStorage = resolve_storage(storage)
    generation = result.generation
    flow_run = flow_run_id()
    expected_media = ("image/",) if generation.kind == "image" else ("video/",)
    default_media = "image/png" if generation.kind == "image" else "video/mp4"
    stored: list[StoredOutput] = []
    outputs = list(result.outputs)
    async with credentials.get_client() as client:
        for index in range(len(outputs)):
            key_args = dict(
                kind=generation.kind, model=generation.model, provider=generation.provider,
                fingerprint=generation.fingerprint, seed=generation.request.get("seed"),
                name=name, index=index, count=len(outputs), job_id=generation.job_id,
                flow_run=flow_run, date=result.completed_at.strftime("%Y-%m-%d"),
            )
            key = output_key(key_template, media_type=default_media, **key_args)
            existing = await store.verified(key)
            if existing is not None and existing.fingerprint == generation.fingerprint:
                logger.info("Already stored and verified: %s", existing.location)
                # Its sidecar was written before its own location was known.
                stored.append(existing.model_copy(
                    update={"sidecar": existing.sidecar or store.location(sidecar_key(key))}
                ))
                continue
            try:
                downloaded = await client.download(
                    outputs[index], store.staging_dir(), expected_media=expected_media,
                    job_id=generation.job_id, partial_name=partial_name(key, outputs[index]),
                )
            except DownloadError as exc:
                if exc.status_code not in (401, 403, 404, 410):
                    raise
                # A signed URL past its expiry: ask the provider for fresh ones, once.
                logger.warning(
                    "Output URL %s was refused (http %s); fetching fresh URLs",
                    redact_url(outputs[index]), exc.status_code,
                )
                fresh = await client.status(generation)
                if fresh.needs_result_call:
                    fresh = await client.result(generation, fresh)
                if len(fresh.outputs) <= index:
                    raise
                outputs = list(fresh.outputs)
                downloaded = await client.download(
                    outputs[index], store.staging_dir(), expected_media=expected_media,
                    job_id=generation.job_id, partial_name=partial_name(key, outputs[index]),
                )
            if downloaded.media_type != default_media:
                key = output_key(key_template, media_type=downloaded.media_type, **key_args)
            made = None
            if preview and downloaded.media_type.startswith("video/"):
                made = await _make_preview(downloaded.path, preview, key)
            location = await store.put(
                downloaded.path, key, downloaded.media_type, sha256=downloaded.sha256
            )
            previewed = None
            if made is not None:
                previewed = preview_key(key, preview)  # type: ignore[arg-type]
                await store.write_bytes(previewed, made.data)
            output = StoredOutput(
                location=location,
                key=key,
                size=downloaded.size,
                sha256=downloaded.sha256,
                media_type=downloaded.media_type,
                provider=generation.provider,
                model=generation.model,
                kind=generation.kind,
                job_id=generation.job_id,
                fingerprint=generation.fingerprint,
                source_url=redact_url(downloaded.source_url),
                request=generation.request,
                metrics=result.metrics,
                cost=result.cost,
                submitted_at=generation.submitted_at,
                completed_at=result.completed_at,
                flow_run_id=flow_run,
                preview_key=previewed,
            )
            output.sidecar = await store.write_sidecar(output)
            logger.info(
                "Stored %s (%d bytes, sha256 %s) at %s",
                output.media_type, output.size, output.sha256[:12], output.location,
            )
            stored.append(output)
    return stored


@task(
    name="collect-generation",
    retries=2,
    retry_delay_seconds=[1, 10],
    retry_condition_fn=_retry_read,
)
async def collect_generation(
    generation: Generation,
    credentials: RunwayProviderCredentials,
    storage: Any = None,
    key_template: str | None = None,
    name: str | None = None,
    preview: str | None = "gif",
    timeout: float | None = None,
) -> tuple[GenerationResult, list[StoredOutput]]:
    """Wait for a submitted job, then download its outputs into storage: one task run.

    What :func:`wait_for_generation` then :func:`download_generation` do, in one task run
    instead of two: a batch of hundreds of chains then costs the Prefect API a third fewer
    task runs (and their state events and log lines). Nothing is lost by it: neither step is
    cached (the submit is, and stays its own task, persisted as soon as the provider returns
    the job id), a retry of this task waits again (a finished job answers at once) and finds
    outputs already stored and verified, and the flows call this task.

    Args:
        generation: The job from ``submit_generation``.
        credentials: The same provider's credentials block.
        storage: A directory, ``s3://bucket/prefix``, or a Prefect filesystem block.
        key_template: Storage key template (see :func:`download_generation`).
        name: A name for the ``{name}`` placeholder.
        preview: For videos: ``"gif"``, ``"png"`` or None.
        timeout: The wait's deadline in seconds (None: the block's ``wait_timeout_seconds``).

    Returns:
        The finished job and one StoredOutput per output.

    Raises:
        GenerationFailed, GenerationCancelled, GenerationExpired, GenerationTimedOut,
        DownloadError.
    """
    result = await wait_for_generation.fn(generation, credentials, timeout)
    stored = await download_generation.fn(result, credentials, storage, key_template, name, preview)
    return result, stored


async def _make_preview(path: Any, fmt: str, key: str) -> Preview | None:
    """A preview of the downloaded video, made in a worker thread; None if it cannot be."""
    try:
        return await asyncio.to_thread(make_preview, path, fmt)  # type: ignore[arg-type]
    except Exception as exc:  # a preview is a convenience: it never fails the download
        get_run_logger().warning("Could not make a %s preview of %s: %s", fmt, key, exc)
        return None


def flow_run_id() -> str | None:
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return str(ctx.flow_run.id) if ctx and ctx.flow_run else None
