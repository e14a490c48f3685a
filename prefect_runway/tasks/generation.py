"""Prefect tasks: submit, wait for, and download a generation.

``submit_generation`` is cached on the request fingerprint (provider, model, canonical
request — never the key) with a persisted result, so a retried task, a retried flow or a
re-run of the same flow finds the job already submitted instead of paying for it again, for
as long as the provider holds it. ``wait_for_generation`` and ``download_generation`` retry
what a retry can cure and nothing else.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar

from prefect import task
from prefect.cache_policies import NO_CACHE, CacheKeyFnPolicy
from prefect.context import TaskRunContext
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger
from prefect.utilities.annotations import NotSet

from prefect_runway.blocks.credentials import ProviderCredentials
from prefect_runway.cache_records import GENERATION_SERIALIZER, SUBMIT_RECORD_KEYS, take_rejection
from prefect_runway.costs import prices_of
from prefect_runway.delivery import deliver
from prefect_runway.engine.client import RESUMED_WAIT_SECONDS
from prefect_runway.engine.events import emit_job, log_to
from prefect_runway.errors import (
    PrefectRunwayError,
    ProviderError,
    ProviderUnavailable,
    StorageError,
    SubmissionUncertain,
)
from prefect_runway.ledger import IntentMeta, JobRecord, ledger_of, scope_for
from prefect_runway.locks import lock_manager_from_settings, submission_cache_policy
from prefect_runway.models import Generation, GenerationResult, Request, StoredOutput
from prefect_runway.plan import PreparedRequest, check_preview, prepare
from prefect_runway.storage import resolve_storage

P = ParamSpec("P")
R = TypeVar("R")


def submission_cache_key(
    credentials: ProviderCredentials, request: PreparedRequest | Request
) -> str:
    """The cache key of a submission: its fingerprint and the API it goes to; no secret.

    Takes the prepared request (what the flows pass); a plain request is prepared first.
    """
    prepared = request if isinstance(request, PreparedRequest) else prepare(request, credentials)
    return scope_for(prepared.fingerprint, prepared.base_url)


def _cache_key_fn(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    return submission_cache_key(parameters["credentials"], parameters["request"])


def _kind_label(kind: str | None) -> str:
    return {"image": "still", "video": "video"}.get(kind or "", kind or "job")


def describe_job(kind: str | None, name: str | None, provider: str | None) -> str:
    """What a job is, for a task run's name: ``still 'harbour' on segmind``."""
    label = _kind_label(kind)
    if name:
        label += f" {name!r}"
    return f"{label} on {provider}" if provider else label


def _provider_of(credentials: Any) -> str | None:
    return getattr(credentials, "provider_name", None)


def _submit_run_name(parameters: dict[str, Any]) -> str:
    request = parameters.get("request")
    return "submit " + describe_job(
        getattr(request, "kind", None), parameters.get("name"),
        _provider_of(parameters.get("credentials")),
    )


def _generation_run_name(verb: str, key: str) -> Callable[..., str]:
    def name(parameters: dict[str, Any]) -> str:
        generation = parameters.get(key)
        if isinstance(generation, GenerationResult):
            generation = generation.generation
        return f"{verb} " + describe_job(
            getattr(generation, "kind", None), parameters.get("name"),
            getattr(generation, "provider", None) or _provider_of(parameters.get("credentials")),
        )

    return name


def _logs_to_run(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Run ``fn`` with the engine's messages (state changes, retries, resumed downloads,
    progress) going to the task run's logger (see :mod:`prefect_runway.engine.events`)."""

    @functools.wraps(fn)
    async def logged(*args: P.args, **kwargs: P.kwargs) -> R:
        with log_to(_run_logger()):
            return await fn(*args, **kwargs)

    return logged


def _run_logger() -> Any:
    """The current run's logger, or None outside a run (the engine keeps its own loggers)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return None


def made_no_job(exc: BaseException) -> bool:
    """Whether a failed submit provably created no job: a 4xx answer (429 included), a 503,
    or a connection that was never made. Anything else may have been billed."""
    if not isinstance(exc, ProviderError) or isinstance(exc, SubmissionUncertain):
        return False
    status = exc.status_code or 0
    return 400 <= status < 500 or (
        isinstance(exc, ProviderUnavailable) and exc.status_code in (None, 503)
    )


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
    return read_retryable(await _failure(state))


def read_retryable(exc: BaseException | None) -> bool:
    """Whether a wait or download that raised ``exc`` is worth trying again: not when the
    error is final (a failed, cancelled or expired job, our deadline, a bad request, bad
    credentials); yes for a transient provider error and for anything unexpected."""
    if isinstance(exc, ProviderError):
        return exc.retryable
    return not isinstance(exc, PrefectRunwayError)


#: The reading tasks (wait, download, collect): a job's state changes over time, so they are
#: never cached by their inputs and have nothing worth persisting. (Under
#: ``PREFECT_RESULTS_PERSIST_BY_DEFAULT`` Prefect would otherwise hash their storage argument,
#: fail, and log a traceback per task run.)
_UNCACHED: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}


@task(
    name="submit-generation",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=_retry_submit,
    cache_policy=CacheKeyFnPolicy(cache_key_fn=_cache_key_fn).configure(
        key_storage=SUBMIT_RECORD_KEYS
    ),
    cache_expiration=timedelta(hours=1),
    persist_result=True,
    # The cache record is a Generation as JSON, read back into that model only (never a
    # pickle): see prefect_runway.cache_records.
    result_serializer=GENERATION_SERIALIZER,
    # Prefect's TaskRunNameCallbackWithParameters protocol declares a classmethod that no
    # function has, so mypy refuses any callable taking `parameters`; Prefect calls it so.
    task_run_name=_submit_run_name,  # type: ignore[arg-type]
)
@_logs_to_run
async def submit_generation(
    request: PreparedRequest | Request,
    credentials: ProviderCredentials,
    storage: Any = None,
    force: bool = False,
    name: str | None = None,
) -> Generation:
    """Submit one generation to the provider the credentials are for, at most once.

    Cached on the request fingerprint, so the same request is not submitted twice while the
    provider holds the job. Use :func:`submit_task_for` to get the task with the provider's
    retention as its cache expiry and the submit lock (two runs of the same request at once:
    one submits, the other reuses its job).

    Before the POST leaves, an intent is written to the submission ledger that lives with
    ``storage``; after the answer, the job. A job already recorded is returned without a
    POST; an intent without a job (an earlier submit whose outcome is unknown) refuses with
    :class:`~prefect_runway.ledger.SubmissionInDoubt` until ``force=True`` or
    ``prefect-runway ledger resolve``.

    Args:
        request: The request prepared by :func:`prefect_runway.plan.prepare` (what the
            flows pass), or an ImageRequest / VideoRequest, prepared here.
        credentials: A SegmindCredentials, AimlapiCredentials or RunwayCredentials block.
        storage: Where the run's outputs go (the ledger lives with them); None: beside
            Prefect's local results.
        force: Submit a new job whatever the ledger holds (a deliberate, billed resubmit).
        name: What the job is for (a shot's name): only in the task run's name
            (``submit still 'harbour' on segmind``), not in the cache key.

    Returns:
        The submitted (or already recorded) job.

    Raises:
        InvalidRequest: before anything is sent.
        SubmissionUncertain: the outcome is unknown (also ``SubmissionInDoubt``: an earlier
            one's is; ``CacheRecordRejected``: the cache record at this key is not one we
            wrote and the ledger holds no job for it); not retried.
        StorageError: the ledger cannot be written; nothing was sent.

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
    prepared = request if isinstance(request, PreparedRequest) else prepare(request, credentials)
    ledger = ledger_of(storage)
    scope = submission_cache_key(credentials, prepared)
    retention = credentials.provider().retention_seconds
    rejected = None if force else take_rejection(scope)
    if rejected is not None:
        # A record at this cache key that we did not write was refused unread, and Prefect
        # ran the task as if there were none. It may stand for a paid job: only the ledger's
        # own record of the job lets the submit go on (reusing that job, nothing sent).
        if not isinstance(await ledger.get(scope), JobRecord):
            raise rejected
        get_run_logger().warning(
            "%s; the submission ledger holds its job, which is reused (the record is "
            "written again)", rejected,
        )
    began = await ledger.begin(
        scope, IntentMeta.from_prepared(prepared), force=force, job_max_age=retention * 0.95
    )
    if isinstance(began, JobRecord):
        generation = began.to_generation()
        get_run_logger().info(
            "Reusing %s job %s recorded in the submission ledger (fingerprint %s); nothing sent",
            generation.provider, generation.job_id, generation.fingerprint[:12],
        )
        return generation
    try:
        async with credentials.get_client() as client:
            generation = await client.submit(prepared)
    except ProviderError as exc:
        if made_no_job(exc):
            await ledger.clear(began, f"{type(exc).__name__} (http {exc.status_code}): provably no job")
        raise
    await ledger.record_job(began, generation)  # the engine logged "Submitted ...", once
    return generation


async def reuses_a_job(
    request: PreparedRequest, credentials: ProviderCredentials, storage: Any = None,
) -> bool:
    """Whether submitting ``request`` now would reuse an earlier job, and so cost nothing:
    the submit task's cache holds it, or the submission ledger beside ``storage`` records
    it, as :func:`submit_generation` would find them. Unreadable: False (the submit pays)."""
    from prefect.results import get_result_store

    scope = submission_cache_key(credentials, request)
    try:
        store = await get_result_store().aupdate_for_task(submit_generation)
        if await store.aexists(scope):
            return True
    except Exception:  # an unreadable cache only means the submit is priced
        pass
    max_age = credentials.provider().retention_seconds * 0.95
    try:
        return await ledger_of(storage).reusable(scope, max_age) is not None
    except Exception:
        return False


def submit_task_for(
    credentials: ProviderCredentials, *, refresh: bool = False, retries: bool = True
) -> Any:
    """``submit_generation`` with the cache expiry set to the provider's retention window,
    and the submit lock (:func:`prefect_runway.locks.submission_cache_policy`, read from the
    settings now) around it; ``retries=False``: without the task's retries (a submit with a
    fallback after it).

    Made once per setting and kept: ``with_options`` builds a new Prefect task, which reads
    the function's source, and a storyboard submits thousands of jobs. Name each run with
    the task's ``name`` argument.
    """
    retention = credentials.provider().retention_seconds
    manager = lock_manager_from_settings()  # from the settings now; one per setting
    key = (retention, refresh, retries, id(manager))
    task = _submit_tasks.get(key)
    if task is None:
        task = submit_generation.with_options(
            cache_policy=submission_cache_policy(
                _cache_key_fn, lock_manager=manager, key_storage=SUBMIT_RECORD_KEYS,
            ),
            cache_expiration=timedelta(seconds=retention * 0.95),
            refresh_cache=True if refresh else NotSet,
            retries=NotSet if retries else 0,
        )
        _submit_tasks[key] = task
    return task


#: submit_task_for's tasks, by (retention, refresh, retries, lock manager); a few at most.
_submit_tasks: dict[tuple[Any, ...], Any] = {}


@task(
    name="wait-for-generation",
    **_UNCACHED,
    retries=2,
    retry_delay_seconds=[1, 10],
    retry_condition_fn=_retry_read,
    task_run_name=_generation_run_name("wait for", "generation"),
)
@_logs_to_run
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


@_logs_to_run
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
    logger = _run_logger()
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
    task_run_name=_generation_run_name("download", "result"),
)
@_logs_to_run
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
                flow_run=flow_run_id(), logger=get_run_logger(), prices=prices_of(credentials),
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

    This package's flows call ``collect_job`` in the flow run itself, with
    ``collect_generation``'s retries (:func:`prefect_runway.flows.generation.run_generation`):
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
    retries=2,
    retry_delay_seconds=[1, 10],
    retry_condition_fn=_retry_read,
    task_run_name=_generation_run_name("collect", "generation"),  # type: ignore[arg-type]
)(_logs_to_run(collect_job))


def flow_run_id() -> str | None:
    """The current flow run's id, or None outside a flow run."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return str(ctx.flow_run.id) if ctx and ctx.flow_run else None
