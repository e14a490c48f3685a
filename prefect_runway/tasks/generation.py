"""The submit task: one paid submit, cached on the request's fingerprint, written ahead in the
submission ledger, locked per request."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from prefect import task
from prefect.cache_policies import CacheKeyFnPolicy
from prefect.context import TaskRunContext
from prefect.logging import get_run_logger
from prefect.utilities.annotations import NotSet

from prefect_runway.blocks.credentials import ProviderCredentials
from prefect_runway.blocks.requests import prepare
from prefect_runway.engine.retry import made_no_job
from prefect_runway.errors import ProviderError
from prefect_runway.models import Generation, Request
from prefect_runway.providers.base import PreparedRequest
from prefect_runway.tasks.cache_records import (
    GENERATION_SERIALIZER,
    SUBMIT_RECORD_KEYS,
    take_rejection,
)
from prefect_runway.tasks.ledger import SubmissionLedger, ledger_of
from prefect_runway.tasks.ledger_records import Intent, IntentMeta, JobRecord, scope_for
from prefect_runway.tasks.locks import lock_manager_from_settings, submission_cache_policy
from prefect_runway.tasks.runs import describe_job, failure_of, logs_to_run, provider_of

__all__ = ["cached_steps", "reuses_a_job", "submission_cache_key", "submit_generation",
           "submit_task_for"]


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


def _submit_run_name(parameters: dict[str, Any]) -> str:
    request = parameters.get("request")
    return "submit " + describe_job(
        getattr(request, "kind", None), parameters.get("name"),
        provider_of(parameters.get("credentials")), getattr(request, "model", None),
    )


async def _retry_submit(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a submit only where the provider provably did not take the job."""
    exc = await failure_of(state)
    return isinstance(exc, ProviderError) and exc.retryable


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
    # pickle): see prefect_runway.tasks.cache_records.
    result_serializer=GENERATION_SERIALIZER,
    # Prefect's TaskRunNameCallbackWithParameters protocol declares a classmethod that no
    # function has, so mypy refuses any callable taking `parameters`; Prefect calls it so.
    task_run_name=_submit_run_name,  # type: ignore[arg-type]
)
@logs_to_run
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
    :class:`~prefect_runway.errors.SubmissionInDoubt` until ``force=True`` or
    ``prefect-runway ledger resolve``.

    Args:
        request: The request prepared by :func:`prefect_runway.blocks.requests.prepare` (what the
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
    began = await _begin(ledger, submission_cache_key(credentials, prepared), prepared,
                         force, credentials.provider().retention_seconds)
    if isinstance(began, JobRecord):
        generation = began.to_generation()
        get_run_logger().info(
            "Reusing %s job %s recorded in the submission ledger (fingerprint %s); nothing sent",
            generation.provider, generation.job_id, generation.fingerprint[:12],
        )
        return generation
    return await _send(ledger, began, prepared, credentials)


async def _begin(
    ledger: SubmissionLedger, scope: str, prepared: PreparedRequest, force: bool,
    retention: float,
) -> Intent | JobRecord:
    """The ledger's word before a paid POST: the job recorded for ``scope`` (reuse it), or the
    intent now written (send the POST).

    Raises:
        CacheRecordRejected: the cache record at ``scope`` is not one we wrote, and the
            ledger holds no job for it.
        SubmissionUncertain: the ledger holds a doubt for ``scope`` (see ``begin``).
    """
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
    return await ledger.begin(
        scope, IntentMeta.from_prepared(prepared), force=force, job_max_age=retention * 0.95
    )


async def _send(
    ledger: SubmissionLedger, intent: Intent, prepared: PreparedRequest,
    credentials: ProviderCredentials,
) -> Generation:
    """The paid POST of ``intent``'s request: its job recorded in the ledger, or its intent
    cleared where the refusal provably made no job."""
    try:
        async with credentials.get_client() as client:
            generation = await client.submit(prepared)
    except ProviderError as exc:
        if made_no_job(exc):
            await ledger.clear(intent, f"{type(exc).__name__} (http {exc.status_code}): provably no job")
        raise
    await ledger.record_job(intent, generation)  # the engine logged "Submitted ...", once
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


async def cached_steps(
    plans: Sequence[Any], cache_key: Callable[[Any, Any], str], task: Any,
) -> set[str]:
    """The steps of ``plans`` the submit task's cache already holds: not paid again.

    Args:
        plans: Shot plans or chain plans.
        cache_key: The submit task's cache key of (credentials, prepared request)
            (:func:`prefect_runway.tasks.generation.submission_cache_key`).
        task: The submit task (``submit_generation``), whose result store holds the records.

    Looks up each distinct still's submission cache key in the current result store (the
    flow's, inside a flow run), and a text-to-video chain's video (its request is whole). A
    video's request names its still's bytes, unknown until the still is stored, so those
    videos are not looked up here: a cached one still counts as a request to pay (the plan
    errs on the side of paying).
    """
    from prefect.filesystems import WritableFileSystem
    from prefect.results import ResultStore, get_result_store

    key_storage = getattr(task.cache_policy, "key_storage", None)
    try:  # the submit task's own store: where its cache records are
        if isinstance(key_storage, WritableFileSystem):  # read as it is: no Prefect API needed
            store = ResultStore(metadata_storage=key_storage)
        else:
            store = await get_result_store().aupdate_for_task(task)
    except Exception:
        return set()
    found: set[str] = set()
    looked: set[str] = set()
    for plan in plans:
        for key, credentials, prepared in getattr(plan, "chain", plan).known_steps():
            if key in looked:
                continue
            looked.add(key)
            try:
                if await store.aexists(cache_key(credentials, prepared)):
                    found.add(key)
            except Exception:  # an unreadable cache only makes the plan pay more
                continue
    return found


def submit_task_for(
    credentials: ProviderCredentials, *, refresh: bool = False, retries: bool = True
) -> Any:
    """``submit_generation`` with the cache expiry set to the provider's retention window,
    and the submit lock (:func:`prefect_runway.tasks.locks.submission_cache_policy`, read from the
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
