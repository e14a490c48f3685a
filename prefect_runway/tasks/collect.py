"""The reading tasks: wait for a submitted job, download its outputs into storage, or both."""

from __future__ import annotations

import time
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from prefect_runway.blocks.credentials import ProviderCredentials
from prefect_runway.engine.client import RESUMED_WAIT_SECONDS
from prefect_runway.engine.events import emit_job
from prefect_runway.engine.retry import read_retryable
from prefect_runway.errors import StorageError
from prefect_runway.models import Generation, GenerationResult, StoredOutput
from prefect_runway.money.costs import charged_cost
from prefect_runway.money.prices import prices_of
from prefect_runway.storage import resolve_storage
from prefect_runway.storage.delivery import deliver
from prefect_runway.storage.previews import check_preview
from prefect_runway.tasks.runs import (
    failure_of,
    flow_run_id,
    generation_run_name,
    logs_to_run,
    run_logger,
)

__all__ = ["COLLECT_RETRY_DELAYS", "collect_generation", "collect_job", "download_generation", "wait_for_generation",
           "wait_for_job"]


async def _retry_read(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a read unless the error is final (a failed job, a bad request, bad credentials)."""
    return read_retryable(await failure_of(state))


#: How long a failed collect waits before each retry, in seconds (so: how many retries), for
#: the ``collect-generation`` task and for the flows, which collect in the flow run.
COLLECT_RETRY_DELAYS: tuple[float, ...] = (1.0, 10.0)

#: The reading tasks (wait, download, collect): a job's state changes over time, so they are
#: never cached by their inputs and have nothing worth persisting. (Under
#: ``PREFECT_RESULTS_PERSIST_BY_DEFAULT`` Prefect would otherwise hash their storage argument,
#: fail, and log a traceback per task run.)
_UNCACHED: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}


@task(
    name="wait-for-generation",
    **_UNCACHED,
    retries=2,
    retry_delay_seconds=[1, 10],
    retry_condition_fn=_retry_read,
    task_run_name=generation_run_name("wait for", "generation"),
)
@logs_to_run
async def wait_for_generation(
    generation: Generation,
    credentials: ProviderCredentials,
    timeout: float | None = None,
    queue_timeout: float | None = None,
) -> GenerationResult:
    """Poll a submitted job until it finishes, within a deadline.

    A failed job raises its typed error (Runway: ``ContentRejected``, ``OutputRejected``,
    ``GenerationInternalError``, ``InvalidAsset`` by failure code); none is retried by this
    task (a failed job fails again when polled again): the flows decide about resubmitting.

    Args:
        generation: The job from ``submit_generation``.
        credentials: The same provider's credentials block.
        timeout: Overall deadline in seconds (None: the block's ``wait_timeout_seconds``).
        queue_timeout: How long the job may sit THROTTLED, in seconds (None: the block's
            ``queue_timeout_seconds``); that time does not count against ``timeout``.

    Returns:
        The finished job's output URLs, metrics and cost.

    Raises:
        GenerationFailed, GenerationCancelled, GenerationExpired, GenerationTimedOut.
    """
    return await wait_for_job(generation, credentials, timeout, queue_timeout)


@logs_to_run
async def wait_for_job(
    generation: Generation,
    credentials: ProviderCredentials,
    timeout: float | None = None,
    queue_timeout: float | None = None,
) -> GenerationResult:
    """What :func:`wait_for_generation` does, without a task run of its own: in a flow run
    (the flows wait so, see :func:`collect_generation`), its messages go to the flow run's
    log; outside any run, to the engine's loggers. Same arguments, result and errors."""
    began = time.monotonic()
    async with credentials.get_client() as client:
        result = await client.wait(generation, timeout=timeout, queue_timeout=queue_timeout)
    waited = time.monotonic() - began
    logger = run_logger()
    if logger is not None:
        logger.info(
            "%s job %s finished with %d output(s) after a %.1f s wait%s",
            generation.provider, generation.job_id, len(result.outputs), waited,
            _resumed_note(result, waited),
        )
    return result


def _resumed_note(result: GenerationResult, waited: float) -> str:
    """For a job older than this wait (found in the cache, resumed): how old it was."""
    age = result.seconds
    if age - waited > RESUMED_WAIT_SECONDS:
        return f" (a job submitted {age:.0f} s ago, found in the cache or resumed)"
    return ""


@task(
    name="download-generation",
    **_UNCACHED,
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=_retry_read,
    task_run_name=generation_run_name("download", "result"),
)
@logs_to_run
async def download_generation(
    result: GenerationResult,
    credentials: ProviderCredentials,
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
        storage: A resolved storage (what the flows pass), a directory,
            ``s3://bucket/prefix``, or a Prefect filesystem block (default ``./runway-outputs``).
        key_template: e.g. ``"{flow_run}/{name}-{seed}.{ext}"``; default
            ``"{kind}-{fingerprint}.{ext}"``.
        name: A name for the ``{name}`` placeholder.
        preview: For videos: ``"gif"`` (animated), ``"png"`` (contact sheet) or None.

    Returns:
        One StoredOutput per output.
    """
    store = resolve_storage(storage)
    check_preview(preview)
    emit_job("downloading", result.generation, name=name)
    try:
        async with credentials.get_client() as client:
            return await deliver(
                result, client, store, key_template=key_template, name=name, preview=preview,
                flow_run=flow_run_id(), logger=get_run_logger(),
                cost=charged_cost(result, prices_of(credentials)),
            )
    except OSError as exc:
        if isinstance(exc, (ConnectionError, TimeoutError, FileNotFoundError)):
            raise  # the network, or another process of the same run moving a file: retried
        raise StorageError(
            f"outputs cannot be written to {store!r} ({type(exc).__name__}: "
            f"{exc.strerror or exc})"
        ) from None


async def collect_job(
    generation: Generation | GenerationResult,
    credentials: ProviderCredentials,
    storage: Any = None,
    key_template: str | None = None,
    name: str | None = None,
    preview: str | None = "gif",
    timeout: float | None = None,
    queue_timeout: float | None = None,
) -> tuple[GenerationResult, list[StoredOutput]]:
    """Wait for a submitted job, then download its outputs into storage.

    What :func:`wait_for_generation` then :func:`download_generation` do, in one call.
    ``collect_generation`` is this as one task run, for flows of your own (retried twice, after
    1 s then 10 s, unless the error is final). Neither step is cached (the submit is, and
    stays its own task, persisted as soon as the provider returns the job id): a retry waits
    again (a finished job answers at once) and finds outputs already stored and verified.
    Given a finished job (a :class:`GenerationResult`) it only downloads (a retry downloads
    again, refreshing expired output URLs).

    This package's flows call ``collect_job`` in the flow run itself, with the same
    :data:`COLLECT_RETRY_DELAYS` (:class:`prefect_runway.flows.retries.Retries`):
    a task run per job costs the Prefect API three state events and the process a task
    engine, and holds nothing a re-run needs. Called so, its messages go to the flow run's log.

    Args:
        generation: The job from ``submit_generation``, or the finished job (then nothing
            is polled and ``timeout`` and ``queue_timeout`` do not apply).
        credentials: The same provider's credentials block.
        storage: A directory, ``s3://bucket/prefix``, or a Prefect filesystem block.
        key_template: Storage key template (see :func:`download_generation`).
        name: A name for the ``{name}`` placeholder.
        preview: For videos: ``"gif"``, ``"png"`` or None.
        timeout: The wait's deadline in seconds (None: the block's ``wait_timeout_seconds``).
        queue_timeout: How long the job may sit THROTTLED (None: the block's
            ``queue_timeout_seconds``).

    Returns:
        The finished job and one StoredOutput per output.

    Raises:
        GenerationFailed, GenerationCancelled, GenerationExpired, GenerationTimedOut,
        DownloadError.
    """
    if isinstance(generation, GenerationResult):
        result = generation  # finished: the flow waited for it
    else:
        result = await wait_for_generation.fn(generation, credentials, timeout, queue_timeout)
    stored = await download_generation.fn(result, credentials, storage, key_template, name, preview)
    return result, stored


#: :func:`collect_job` as one task run (``collect still 'harbour' on segmind``).
collect_generation = task(
    name="collect-generation",
    **_UNCACHED,
    retries=len(COLLECT_RETRY_DELAYS),
    retry_delay_seconds=list(COLLECT_RETRY_DELAYS),
    retry_condition_fn=_retry_read,
    task_run_name=generation_run_name("collect", "generation"),  # type: ignore[arg-type]
)(logs_to_run(collect_job))
