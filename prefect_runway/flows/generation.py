"""Flows: ``generate_image``, ``animate_image`` and the chain ``image_to_video``.

Each flow validates its request against the chosen provider before anything is sent, then
runs one Prefect task per job — the submit, cached and persisted — and waits for the job and
downloads its outputs in the flow run itself, and publishes artifacts: the still as
an image artifact, each video's preview (GIF or contact sheet) as an image artifact, and a
table of every output with its link, provider, seconds and cost.
"""


import asyncio
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar, cast

from prefect.logging import get_run_logger
from prefect.utilities.annotations import opaque

from prefect_runway.blocks.credentials import ProviderCredentials
from prefect_runway.blocks.requests import load_credentials, prepare, reseeder, upload_images
from prefect_runway.engine.events import emit_job
from prefect_runway.engine.retry import made_no_job, read_retryable
from prefect_runway.errors import (
    BudgetExceeded,
    ClassifiedFailure,
    GenerationExpired,
    InvalidRequest,
    NotStarted,
    ShotRejected,
    SubmissionUncertain,
)
from prefect_runway.flows.artifacts import (
    publish_doubts,
    publish_outputs,
    publish_still,
    publish_video_preview,
)
from prefect_runway.flows.cancellation import cancel_remote_jobs, track, untrack
from prefect_runway.flows.doubts import Doubt
from prefect_runway.flows.events import emit_charged, emit_doubt
from prefect_runway.flows.fallback import (
    FallbackPolicy,
    Route,
    StepFallback,
    balance_covered,
    same_request,
)
from prefect_runway.flows.parameters import runway_flow
from prefect_runway.flows.plan import check_run, plan_chain
from prefect_runway.flows.progress import BatchProgress, advance_quietly, note_progress
from prefect_runway.flows.results import ImageToVideoResult
from prefect_runway.flows.review import review_one
from prefect_runway.flows.review_form import DEFAULT_REVIEW_TIMEOUT, review_settings
from prefect_runway.flows.routing import load_route
from prefect_runway.flows.watch import announce, watched_generation
from prefect_runway.models import (
    PLACEHOLDER_IMAGE,
    Generation,
    GenerationResult,
    ImageRequest,
    ReferenceImage,
    Request,
    StoredOutput,
    VideoRequest,
    bytes_to_data_uri,
)
from prefect_runway.money.balances import check_balances
from prefect_runway.money.budget import Budget, BudgetGuard, Reservation
from prefect_runway.money.cost_plan import Attempts, plan_costs
from prefect_runway.money.costs import (
    Cost,
    charged_cost,
    estimate_step,
    output_cost,
    submit_charge,
)
from prefect_runway.money.daily import budget_guard, record_spend
from prefect_runway.money.prices import prices_of
from prefect_runway.providers.base import PreparedRequest
from prefect_runway.storage import OutputStorage, resolve_storage
from prefect_runway.tasks.collect import collect_generation, collect_job, wait_for_job
from prefect_runway.tasks.generation import reuses_a_job, submit_task_for
from prefect_runway.tasks.limits import task_run_slot
from prefect_runway.tasks.runs import describe_job, flow_run_id

T = TypeVar("T")

#: How old a provider output URL may be before it is refreshed from the provider.
FRESH_URL_SECONDS = 600
#: How long a presigned URL handing a stored still to the video provider stays valid.
HANDOFF_URL_SECONDS = 900


@watched_generation
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
    queue_timeout: float | None = None,
    retry_unsafe_output: int = 0,
    resubmit_internal: bool = True,
    reseed: Callable[[int], PreparedRequest] | None = None,
    fallback: StepFallback | None = None,
    after: GenerationResult | None = None,
    guard: BudgetGuard | None = None,
    what: str | None = None,
    doubts: list[Doubt] | None = None,
) -> tuple[GenerationResult, list[StoredOutput]]:
    """Submit (cached), wait and download one request; resubmit where the failure allows.

    Call it inside a flow, with the request prepared (:func:`prefect_runway.plan.prepare`,
    so an invalid request costs nothing) and the storage resolved once per flow run. One
    task run per request: ``submit-generation``, cached and persisted, so a re-run never
    pays twice, its run named for what it does (``submit still 'harbour' on segmind``). The
    wait and the download run in the flow run itself, their messages in the flow run's log,
    with ``collect-generation``'s retries (:func:`_collect_in_flow`): no task run is open
    while the provider works, and none is made for what a re-run does again anyway (a job's
    wait and download are neither cached nor persisted). That halves the Prefect API
    messages and task engines of a generation (benchmarks/README.md, section 5). At most
    ``PREFECT_RUNWAY_MAX_TASK_RUNS`` (default 64) submit task runs are open at once in the
    flow run's process (:func:`prefect_runway.limits.task_run_slot`); the rest wait for a
    place, in the flow. A failed, cancelled or expired job, or the wait's deadline, fails the
    flow's call here; a transient error of the wait or the download is retried.

    What is resubmitted (each a new, billed job, logged at WARNING):

    * a job the provider no longer holds, whose output was never stored: once;
    * an output rejected by moderation (``OutputRejected``): up to ``retry_unsafe_output``
      times, each with a new random seed (so a new fingerprint), only where ``reseed`` is
      given;
    * an internal failure (``GenerationInternalError``): once, unless ``resubmit_internal``
      is False or the provider says the failed job was charged.

    An input rejected by moderation (``ContentRejected``) and every other failure are final.

    Every submit (the first, a fallback's, each resubmit) is priced before it is sent
    (:meth:`prefect_runway.costs.BudgetGuard.admit`, by the block's prices): its estimate is
    reserved in ``guard`` (the run's budget and the blocks' daily budgets), or it is refused
    with :class:`~prefect_runway.costs.NotStarted` and nothing is sent. The reservation is
    released when the submit provably cost nothing (refused, or an earlier job reused) and
    when the job ends, with what it was charged (a job that ended without a known charge
    counts its estimate). See docs/money.md.

    Args:
        prepared: The prepared request.
        credentials: The provider's credentials block.
        storage: The resolved storage.
        key_template: Storage key template.
        name: Value of ``{name}`` in the key template.
        timeout: The wait's deadline per job, in seconds.
        force: Submit a new job even if the same request is cached.
        preview: The video's preview format, or None.
        queue_timeout: How long a job may sit THROTTLED, in seconds (None: the block's).
        retry_unsafe_output: How many times to retry an output moderation failure with a new
            seed (0: never).
        resubmit_internal: Resubmit an internal failure once.
        reseed: ``seed -> PreparedRequest``: the same request with another seed.
        fallback: Where the first submit goes when ``credentials`` provably refuses it
            (:class:`prefect_runway.fallback.StepFallback`); the outputs' sidecars record it.
        after: The finished job this one follows (the still a video animates): the run
            graph draws this submit after the submit that made it.
        guard: The run's budget guard (shared by its chains); None: the daily budgets of
            the route's blocks, where they have one.
        what: The step as a refusal names it (default ``the still 'name'``).
        doubts: Where a submit in doubt (``SubmissionUncertain``, raised on) is noted as a
            :class:`~prefect_runway.ledger.Doubt` for the caller's summary; None: published
            as this run's ``submission-doubts`` artifact. Either way it is a Prefect event
            (``prefect-runway.submission.in-doubt``) and a warning in the log, with the
            commands that settle it.

    Raises:
        NotStarted: a submit would pass a budget (or has no known price while there is
            one); it was not sent.
    """
    if retry_unsafe_output < 0:
        raise InvalidRequest("retry_unsafe_output", f"{retry_unsafe_output} is negative",
                             allowed="0 (never) or more")
    logger = get_run_logger()
    flow_run = flow_run_id()
    first = credentials
    step = what or "the " + describe_job(prepared.kind, name, None)
    if guard is None:
        guard = budget_guard(None, fallback.route.providers if fallback else [credentials],
                             storage, flow_run)
    held: Reservation | None = None  # the reservation of the job in hand

    async def settle(charged: Cost | None, job_id: str | None = None) -> None:
        nonlocal held
        if guard is not None and held is not None:
            await guard.settle(held.provider, held, charged, job_id)
        held = None

    async def submit(request: PreparedRequest, refresh: bool,
                     on: ProviderCredentials | None = None, last: bool = True,
                     why: str = "") -> Generation:
        nonlocal held
        on = on or credentials
        estimate = None
        if guard is not None:  # priced before it is sent, whichever route led here
            priced = request if isinstance(request, PreparedRequest) else prepare(request, on)
            estimate = estimate_step(priced, credentials=on)
            label = step if on is first else f"{step} on {on.provider_name} (fallback)"
            try:
                held = await guard.admit(on.provider_name, estimate, on, label + why,
                                         model=priced.model)
            except NotStarted:  # unless it reuses an earlier job, which costs nothing
                if refresh or not await reuses_a_job(request, on, storage):
                    raise
                held = None
        sent = datetime.now(timezone.utc)
        task = submit_task_for(on, refresh=refresh, retries=last)
        try:
            async with task_run_slot():
                submitted = await task(_opaque(request), _opaque(on), _opaque(storage), refresh,
                                       name, wait_for=_upstream(after))
        except BaseException as exc:  # a refusal made no job; anything else may be billed
            await settle(None if made_no_job(exc) or isinstance(exc, InvalidRequest)
                         else held.cost if held else None)
            if isinstance(exc, SubmissionUncertain):  # may be billed: a person settles it
                await _report_doubt(exc, request, on, storage, name, flow_run, doubts)
            raise
        if submitted.submitted_at < sent:  # an earlier job, reused: not paid again
            await settle(None)
        elif guard is not None and held is None:  # it was to be reused, but is new: paid
            held = Reservation(provider=on.provider_name, cost=estimate)
        emit_job("submitted", submitted)  # also a job found in the cache
        return submitted

    if fallback is None:
        generation = await submit(prepared, force)
    else:  # the route's next provider where this one provably refuses (prefect_runway.fallback)
        served = await fallback.submit(prepared, credentials, reseed,
                                       lambda p, c, last: submit(p, force, c, last))
        credentials, prepared, reseed = served.credentials, served.prepared, served.reseed
        generation = served.generation
    expired = unsafe = internal = 0
    try:
        while True:
            track(flow_run, credentials, generation)
            try:
                waited = await _wait_in_flow(generation, credentials, timeout, queue_timeout)
                result, stored = await _collect_in_flow(
                    waited, credentials, storage, key_template, name, preview, timeout,
                    queue_timeout,
                )
                untrack(flow_run, generation)
                if fallback is not None:
                    stored = await fallback.annotate(stored, storage)
                cost = (output_cost(stored[0]) if stored
                        else charged_cost(result, prices_of(credentials)))
                await emit_charged(result, cost)
                await record_spend(credentials, storage, result, cost, logger, flow_run)  # daily budgets
                await settle(cost, generation.job_id)
                return result, stored
            except GenerationExpired:
                untrack(flow_run, generation)
                await settle(submit_charge(generation, held.cost if held else None))  # it was paid
                if expired:
                    raise
                expired += 1
                logger.warning(
                    "%s no longer holds job %s and its output was never stored; "
                    "resubmitting it once (this is a new, billed job)",
                    generation.provider, generation.job_id,
                )
                generation = await submit(
                    prepared, True, why=" (resubmitted: the provider no longer held its job)")
            except ClassifiedFailure as exc:
                untrack(flow_run, generation)
                await settle(None if exc.charged is False
                             else submit_charge(generation, held.cost if held else None))
                if (exc.retryable_with_new_seed and unsafe < retry_unsafe_output
                        and reseed is not None):
                    unsafe += 1
                    lo, hi = prepared.spec.seed_range
                    seed = lo + secrets.randbelow(hi - lo + 1)
                    prepared = reseed(seed)
                    logger.warning(
                        "%s job %s: the output was rejected by content moderation (%s); "
                        "retrying with a new seed %d, attempt %d of %d (a new, billed job, "
                        "fingerprint %s)",
                        generation.provider, generation.job_id, exc.failure_code, seed, unsafe,
                        retry_unsafe_output, prepared.fingerprint[:12],
                    )
                    generation = await submit(
                        prepared, force, why=f" (retry {unsafe} of {retry_unsafe_output} with a "
                        "new seed: its output was rejected)")
                    continue
                if (exc.resubmittable and resubmit_internal and not internal
                        and exc.charged is not True):
                    internal += 1
                    logger.warning(
                        "%s job %s failed internally (%s); resubmitting it once "
                        "(a new job; the failed one was not charged)",
                        generation.provider, generation.job_id, exc.failure_code,
                    )
                    generation = await submit(
                        prepared, True, why=" (resubmitted after an internal failure)")
                    continue
                raise
    finally:  # a job that ended without a known charge (failed, timed out, cancelled)
        await settle(submit_charge(generation, held.cost) if held else None)


async def _report_doubt(
    error: SubmissionUncertain, request: PreparedRequest | Request,
    credentials: ProviderCredentials, storage: OutputStorage, name: str | None,
    flow_run: str | None, doubts: list[Doubt] | None,
) -> None:
    """A submission in doubt, where a person looks: the log, a Prefect event, and the run's
    summary (``doubts``, the caller's) or its own ``submission-doubts`` artifact. Never
    raises: the doubt itself is what the run fails with."""
    try:
        prepared = request if isinstance(request, PreparedRequest) else prepare(request,
                                                                                  credentials)
        doubt = Doubt.of(error, prepared, credentials, storage, name=name, flow_run_id=flow_run)
    except Exception as exc:  # noqa: BLE001 - the SubmissionUncertain goes on regardless
        get_run_logger().warning("Could not describe the submission in doubt (%s: %s)",
                                 type(exc).__name__, exc)
        return
    settle = f"`{doubt.adopt_command}` (adopt the job it shows), or " if doubt.adopt_command else ""
    get_run_logger().warning(
        "The %s submit of %s is in doubt (%s, fingerprint %s): it may exist and be billed. "
        "Check the %s dashboard, then settle it: %s`%s` (clear it: the next run submits again)",
        doubt.model, repr(doubt.name) if doubt.name else "this request", doubt.error,
        doubt.reference, doubt.provider, settle, doubt.clear_command,
    )
    emit_doubt(doubt)
    if doubts is None:
        await publish_doubts([doubt])
    else:
        doubts.append(doubt)


def _opaque(value: T) -> T:
    """``value`` for a task call, marked so that Prefect does not walk into it.

    Prefect walks every task argument twice (``visit_collection``), looking for futures and
    states to resolve and for upstream task runs to record as inputs. A credentials block, a
    prepared request or a finished generation holds neither, but walking them made two-thirds
    of a storyboard's ``visit_collection`` calls (benchmarks/README.md, section 5), and their
    strings, matched by ``id`` against earlier tasks' results, drew arrows in the run graph
    that meant nothing (``credentials`` after the still's submit). ``opaque`` skips the walk;
    the task receives ``value`` itself, and its cache key is the same. The real upstream
    goes in ``wait_for`` (:func:`_upstream`).
    """
    return cast(T, opaque(value))


def _upstream(after: GenerationResult | None) -> Any:
    """``wait_for`` for a submit: the job of the earlier submit it follows (the submit task's
    own result, not walked: Prefect finds the task run that returned it and draws the
    arrow), or None."""
    return None if after is None else [opaque(after.generation)]


async def _wait_in_flow(
    generation: Generation,
    credentials: ProviderCredentials,
    timeout: float | None,
    queue_timeout: float | None,
) -> Generation | GenerationResult:
    """Wait for the job here, in the flow run, not in a task run: the finished job, for
    :func:`_collect_in_flow` to download only.

    A task run open for the whole wait holds Prefect's objects for a running task (its
    TaskRun, states, contexts, engine), a thousand sets of them for a storyboard of a
    thousand shots (benchmarks/README §5); the wait needs none of them: it is not cached,
    not persisted, and a re-run polls the job again anyway. Its errors are what the task's
    would have been: a final one (the job failed, was cancelled or expired, our deadline
    passed) is raised here, as the task raised it without a retry; one the task would have
    retried hands :func:`_collect_in_flow` the job, which waits again with its retries.
    """
    try:
        return await wait_for_job(generation, credentials, timeout, queue_timeout)
    except Exception as exc:
        if not read_retryable(exc):
            raise
        get_run_logger().warning(
            "Waiting for %s job %s stopped (%s: %s); waiting for it again",
            generation.provider, generation.job_id, type(exc).__name__, exc,
        )
        return generation


async def _collect_in_flow(
    waited: Generation | GenerationResult,
    credentials: ProviderCredentials,
    storage: OutputStorage,
    key_template: str | None,
    name: str | None,
    preview: str | None,
    timeout: float | None,
    queue_timeout: float | None,
) -> tuple[GenerationResult, list[StoredOutput]]:
    """Download the finished job (or wait for it again first, when the wait stopped on an
    error a retry can cure) here, in the flow run: what the ``collect-generation`` task does,
    with its retries and their delays, and no task run.

    A task run would hold nothing a re-run needs (the download is not cached, and an output
    already stored and verified is not fetched again) and would cost three state events, a
    task engine and a place among ``PREFECT_RUNWAY_MAX_TASK_RUNS``. Each retry is logged at
    WARNING in the flow run's log; an error a retry cannot cure (:func:`read_retryable`), or
    the last one, is raised.
    """
    delays = _collect_retry_delays()
    attempt = 0
    while True:
        try:
            return await collect_job(waited, credentials, storage, key_template, name, preview,
                                     timeout, queue_timeout)
        except Exception as exc:
            if attempt >= len(delays) or not read_retryable(exc):
                raise
            job = waited.generation if isinstance(waited, GenerationResult) else waited
            get_run_logger().warning(
                "Collecting %s job %s failed (%s: %s); trying again in %g s (retry %d of %d)",
                job.provider, job.job_id, type(exc).__name__, exc, delays[attempt],
                attempt + 1, len(delays),
            )
            await asyncio.sleep(delays[attempt])
            attempt += 1


def _collect_retry_delays() -> list[float]:
    """The ``collect-generation`` task's retry delays, one per retry, in seconds."""
    retries = collect_generation.retries or 0
    delays = collect_generation.retry_delay_seconds
    if not isinstance(delays, list):
        delays = [delays or 0]
    return [float(delays[min(i, len(delays) - 1)]) for i in range(retries)]


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

    Returns:
        The stored, verified still.
    """
    credentials = await load_credentials(credentials)
    store = resolve_storage(storage)
    request: Request = ImageRequest(
        prompt=prompt, reference_images=reference_images or [], ratio=ratio, seed=seed,
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

    Returns:
        The stored, verified video.
    """
    credentials = await load_credentials(credentials)
    store = resolve_storage(storage)
    request: Request = VideoRequest(
        image=image, prompt=prompt, model=model, ratio=ratio, duration=duration, seed=seed,
        last_image=last_image,
    )
    stored = await _one_request(
        request, credentials, store, key_template=key_template, name=name, preview=preview,
        upload=upload, timeout=timeout, force=force, queue_timeout=queue_timeout,
        retry_unsafe_output=retry_unsafe_output, resubmit_internal=resubmit_internal,
    )
    await publish_video_preview(stored[0], store, name)
    await publish_outputs(stored, f"{model} video", store, name)
    return stored[0]


@runway_flow(name="image-to-video", on_cancellation=[cancel_remote_jobs])
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
    upload: bool = False,
    queue_timeout: float | None = None,
    retry_unsafe_output: int = 0,
    resubmit_internal: bool = True,
    budget: float | str | None = None,
    check_balance: bool = True,
    image_fallback: list[ProviderCredentials | str] | None = None,
    video_fallback: list[ProviderCredentials | str] | None = None,
    fallback_on: list[str] | str | None = None,
    progress: bool = True,
    review: bool = False,
    review_timeout: float = DEFAULT_REVIEW_TIMEOUT,
    on_timeout: str = "fail",
    review_mode: str = "auto",
) -> ImageToVideoResult:
    """A gen4_image still, then that still animated: the chain, across providers if you like.

    The still reaches the video provider as a short-lived presigned URL of the stored copy
    when outputs are in S3; otherwise by its fresh provider URL (refreshed from the provider
    when stale) or, once the provider has forgotten it, as a data URI where the video provider
    accepts one. A stored still too long for a data URI (or any, with ``upload``) goes to
    Runway as an ephemeral upload.

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
        upload: Send local images as uploads (Runway: ephemeral ``runway://`` uploads) even
            when they would fit a data URI; those too long for one are uploaded anyway.
        queue_timeout: How long a job may sit THROTTLED (held back by the provider's
            concurrency limit), in seconds; that time does not count against ``timeout``
            (default: the block's ``queue_timeout_seconds``).
        retry_unsafe_output: How many times an output rejected by content moderation is
            retried with a new random seed (each a new, billed job); 0: never.
        resubmit_internal: Resubmit a job that failed internally once (not when the
            provider says it was charged).
        budget: This run's cap: a number in the provider's unit or a currency
            (``"USD 5.00"``); a plan over it is refused before anything is sent.
        check_balance: Before the run, read each provider's balance (where it has an
            endpoint) and refuse a plan it cannot pay (unless the step has a fallback).
        image_fallback: Where the still goes, in order, when its provider provably does not
            take the job (see :mod:`prefect_runway.fallback`): blocks or saved blocks' names.
        video_fallback: The same for the video (e.g. ``["aimlapi-credentials/prod"]``).
        fallback_on: The reasons that allow a fallback (default: all of
            ``unavailable``, ``rate_limited``, ``daily_quota``, ``insufficient_credits``,
            ``model_unsupported``); never after ``SubmissionUncertain``.
        progress: Keep an ``image-to-video-progress`` artifact (still, then video) up to
            date: created once, updated as each step ends (a Prefect API call each);
            False for none.
        review: Wait for a person to approve, reject or regenerate the still before the
            video is paid for (see :mod:`prefect_runway.review`).
        review_timeout: How long the review waits, in seconds.
        on_timeout: When nobody answers in time: ``"fail"``, ``"reject"`` or ``"approve"``.
        review_mode: ``"auto"``, ``"pause"`` (keep the process) or ``"suspend"`` (free the
            worker; deployments only).

    Returns:
        The stored still and video (with ``review``: ``status="rejected"`` and no video
        when the still was rejected).

    Raises:
        BudgetExceeded: the plan costs more than ``budget``; nothing was sent.
        InsufficientCredits: a provider's balance cannot pay the plan; nothing was sent.
    """
    cap = Budget.parse(budget)
    settings = review_settings(review_timeout, on_timeout, review_mode)
    image_creds = await load_credentials(
        image_credentials or credentials, "image_credentials" if image_credentials else "credentials",
    )
    video_creds = await load_credentials(
        video_credentials or credentials, "video_credentials" if video_credentials else "credentials",
    )
    policy = FallbackPolicy.parse(fallback_on)
    image_route = await load_route("still", image_creds, image_fallback, "image_fallback", policy)
    video_route = await load_route("video", video_creds, video_fallback, "video_fallback", policy)
    store = resolve_storage(storage)
    still_request = ImageRequest(
        prompt=still_prompt, reference_images=reference_images or [], ratio=still_ratio, seed=seed,
    )

    def video_request(image: str, image_sha256: str | None) -> VideoRequest:
        return VideoRequest(
            image=image, image_sha256=image_sha256, prompt=motion_prompt, model=video_model,
            ratio=video_ratio or still_ratio, duration=duration, seed=seed,
        )

    # Every provider of each step's route takes its request, before anything is sent.
    image_creds = image_route.check(still_request).primary
    video_creds = video_route.check(video_request(PLACEHOLDER_IMAGE, None)).primary

    # Plan both steps (and check the run's settings) before spending anything on the first.
    chain = plan_chain(still_request, video_request, image_creds, video_creds)
    await check_run(store, [(chain.still, name), (chain.video_check, name)],
                    key_template=key_template, preview=preview)
    cost_plan = plan_costs(  # priced, not published: two steps need no artifact
        [chain], routes=[(image_route, video_route)],
        attempts=Attempts(retry_unsafe_output, resubmit_internal, review=review))
    if cap is not None:
        cap.check(cost_plan)
    # Every submit of the run, whichever route leads to it, is priced against this guard.
    guard = budget_guard(cap, [*image_route.providers, *video_route.providers], store,
                         flow_run_id())
    if guard is not None and guard.daily:  # each block's cap per UTC day, with today's spend
        await guard.daily.check(cost_plan, [chain])
    if check_balance:
        await _check_balances(cost_plan, [image_creds, video_creds], [image_route, video_route])
    announce(name, "image", image_creds.provider_name, chain.still.model)
    announce(name, "video", video_creds.provider_name, chain.video_check.model)
    tracker = await BatchProgress.begin(
        2, key="image-to-video-progress", description=f"image-to-video{f' {name!r}' if name else ''}",
        steps=("still", "video"),
    ) if progress else None

    async def make_still(
        shot: str | None, prepared: PreparedRequest, request: ImageRequest,
        label: str = "still",
    ) -> tuple[GenerationResult, StoredOutput]:
        result, stored = await run_generation(
            prepared, image_creds, storage=store, key_template=key_template, name=name,
            timeout=timeout, force=force, reseed=reseeder(request, image_creds),
            queue_timeout=queue_timeout, retry_unsafe_output=retry_unsafe_output,
            resubmit_internal=resubmit_internal,
            fallback=image_route.runtime(same_request(request), name), guard=guard,
            what=f"the {label}",
        )
        return result, stored[0]

    if review:  # the still is made, shown, and animated only once a person says so
        try:
            still_result, still = await review_one(
                name or "still", still_request, image_creds, make_still, store, settings,
            )
        except ShotRejected as rejected:
            assert rejected.still is not None  # a rejected shot had its still shown
            await note_progress(tracker)  # the still is done; its video will not start
            return ImageToVideoResult(still=rejected.still, video=None, status="rejected")
        await note_progress(tracker)
    else:
        still_result, still = await advance_quietly(
            tracker, make_still(name, chain.still, still_request))
    image_creds = image_route.credentials_for(still.provider)  # where the still was made

    async def video_for(creds: ProviderCredentials) -> Request:  # a fallback's video request
        handed = await still_reference(still, still_result, image_creds, creds, store, upload=upload)
        return await upload_images(video_request(handed, still.sha256), creds, upload=upload)
    await publish_still(still, store, name)
    image = await still_reference(still, still_result, image_creds, video_creds, store,
                                  upload=upload)
    video_step = await chain.video_request_uploading(image, still.sha256, upload=upload)
    try:
        _, video_stored = await advance_quietly(tracker, run_generation(
            prepare(video_step, video_creds), video_creds, storage=store,
            key_template=key_template, name=name, timeout=timeout, force=force, preview=preview,
            reseed=reseeder(video_step, video_creds), queue_timeout=queue_timeout,
            retry_unsafe_output=retry_unsafe_output, resubmit_internal=resubmit_internal,
            fallback=video_route.runtime(video_for, name), after=still_result, guard=guard,
            what="the video",
        ))
    except NotStarted as exc:  # the still may have cost more than its estimate
        if exc.unpriced:
            raise
        cost = "an unknown amount" if still.cost is None else f"{still.cost:g} {still.cost_unit}"
        raise BudgetExceeded(
            f"{exc.what} was not started: the still cost {cost} and it would pass "
            f"{exc.limit}; the still is stored at {still.location}",
            planned=exc.planned, budget=exc.budget,
        ) from None
    await publish_video_preview(video_stored[0], store, name)
    await publish_outputs([still, video_stored[0]], "image-to-video", store, name)
    return ImageToVideoResult(still=still, video=video_stored[0])


async def still_reference(
    still: StoredOutput,
    result: GenerationResult,
    image_credentials: ProviderCredentials,
    video_credentials: ProviderCredentials,
    storage: OutputStorage | Any,
    *,
    upload: bool = False,
) -> str:
    """How the video provider should receive the still.

    In order: with ``upload`` and a video provider that takes uploads, the stored copy as a
    data URI (the video step uploads it); a presigned URL of the stored copy (S3 storage;
    valid :data:`HANDOFF_URL_SECONDS`), the provider's own URL while fresh, a refreshed
    provider URL, a data URI of the stored copy (where the video provider accepts one; one
    too long for a data URI is uploaded by the video step, where the provider takes
    uploads); else an :class:`InvalidRequest` that says to store outputs in S3.
    """
    logger = get_run_logger()
    store = resolve_storage(storage)  # the flow's resolved storage passes through as it is
    if upload and _takes_uploads(video_credentials):
        data = await store.read_bytes(still.key)
        if data is not None:
            logger.info("Handing the stored still %s to %s as an upload",
                        store.location(still.key), video_credentials.provider_name)
            return bytes_to_data_uri(data, still.media_type)
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


def _takes_uploads(credentials: ProviderCredentials) -> bool:
    """Whether the provider has an upload route (overrides ``Provider.upload_call``)."""
    from prefect_runway.providers.base import Provider

    return type(credentials.provider()).upload_call is not Provider.upload_call
async def _check_balances(cost_plan: Any, credentials: list[ProviderCredentials],
                          routes: list[Route] | None = None) -> None:
    """Refuse a plan a provider's balance cannot pay (unless its steps have a fallback); a
    balance that cannot be read is skipped."""
    from prefect_runway.errors import InsufficientCredits, PrefectRunwayError

    try:
        await check_balances(cost_plan, credentials)
    except InsufficientCredits as exc:
        if balance_covered(exc, routes or []):
            return
        raise
    except (PrefectRunwayError, OSError) as exc:
        get_run_logger().warning("Could not read a provider's balance; not checked: %s", exc)


def _age(result: GenerationResult) -> timedelta:
    return datetime.now(timezone.utc) - result.completed_at
