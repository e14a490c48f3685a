"""One job in a flow run (submit, wait, collect) and every retry and resubmit of it, named.

The engine and the submit task retry below it: docs/never-paying-twice.md lists them all."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar, cast

from prefect.logging import get_run_logger
from prefect.utilities.annotations import opaque

from prefect_runway.blocks.credentials import ProviderCredentials
from prefect_runway.blocks.requests import prepare
from prefect_runway.engine.events import emit_job
from prefect_runway.engine.retry import made_no_job, read_retryable
from prefect_runway.errors import (
    ClassifiedFailure,
    GenerationExpired,
    InvalidRequest,
    NotStarted,
    SubmissionUncertain,
)
from prefect_runway.flows.artifacts import publish_doubts
from prefect_runway.flows.cancellation import track, untrack
from prefect_runway.flows.doubts import Doubt
from prefect_runway.flows.events import emit_charged, emit_doubt
from prefect_runway.flows.fallback import StepFallback
from prefect_runway.flows.watch import watched_generation
from prefect_runway.models import Generation, GenerationResult, Request, StoredOutput
from prefect_runway.money.budget import BudgetGuard, Reservation
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
from prefect_runway.storage import OutputStorage
from prefect_runway.tasks.collect import COLLECT_RETRY_DELAYS, collect_job, wait_for_job
from prefect_runway.tasks.generation import reuses_a_job, submit_task_for
from prefect_runway.tasks.limits import task_run_slot
from prefect_runway.tasks.runs import describe_job, flow_run_id

__all__ = ["COLLECT_RETRY_DELAYS", "EXPIRED_RESUBMITS", "INTERNAL_RESUBMITS", "Retries",
           "run_generation"]

T = TypeVar("T")

#: A job the provider no longer holds, its output never stored: resubmitted this many times.
EXPIRED_RESUBMITS = 1
#: A job that failed internally (and was not charged): resubmitted this many times.
INTERNAL_RESUBMITS = 1


@dataclass
class Retries:
    """Every retry and resubmit a flow makes of one job, each by its name.

    * **collect retry**: the wait or the download stopped on an error a retry can cure
      (:func:`read_retryable`): tried again in the flow run after each of
      :data:`COLLECT_RETRY_DELAYS` (the ``collect-generation`` task's delays, one home);
      nothing is paid again.
    * **expired resubmit**: the provider no longer holds the job and its output was never
      stored: resubmitted :data:`EXPIRED_RESUBMITS` time (a new, billed job).
    * **unsafe-output retry**: the output was rejected by content moderation
      (``OutputRejected``): up to ``unsafe_output`` times, each with a new random seed.
    * **internal resubmit**: the job failed internally (``GenerationInternalError``) and the
      provider does not say it was charged: :data:`INTERNAL_RESUBMITS` time, unless
      ``resubmit_internal`` is False.
    * **fallback**: the first submit goes to the route's next provider where this one
      provably refuses it (:class:`~prefect_runway.flows.fallback.StepFallback`).
    * **review regeneration**: a person asks for a new still
      (:func:`prefect_runway.flows.review.regenerate`), made as a ``regenerated still``.

    Every resubmit is priced against the run's budget first, and logged at WARNING.
    """

    unsafe_output: int = 0
    resubmit_internal: bool = True
    expired: int = 0
    unsafe: int = 0
    internal: int = 0

    def __post_init__(self) -> None:
        if self.unsafe_output < 0:
            raise InvalidRequest("retry_unsafe_output", f"{self.unsafe_output} is negative",
                                 allowed="0 (never) or more")

    def expired_resubmit(self, generation: Generation) -> str:
        """The expired resubmit's note (for the refusal, if the budget refuses it).

        Raises:
            GenerationExpired: (re-raised by the caller) when it was resubmitted already.
        """
        self.expired += 1
        get_run_logger().warning(
            "%s no longer holds job %s and its output was never stored; "
            "resubmitting it once (this is a new, billed job)",
            generation.provider, generation.job_id,
        )
        return " (resubmitted: the provider no longer held its job)"

    def may_resubmit_expired(self) -> bool:
        return self.expired < EXPIRED_RESUBMITS

    def unsafe_output_retry(
        self, exc: ClassifiedFailure, generation: Generation, prepared: PreparedRequest,
        reseed: Callable[[int], PreparedRequest] | None,
    ) -> tuple[PreparedRequest, str] | None:
        """The unsafe-output retry: the request with a new random seed and its note, or None."""
        if not (exc.retryable_with_new_seed and self.unsafe < self.unsafe_output
                and reseed is not None):
            return None
        self.unsafe += 1
        lo, hi = prepared.spec.seed_range
        seed = lo + secrets.randbelow(hi - lo + 1)
        prepared = reseed(seed)
        get_run_logger().warning(
            "%s job %s: the output was rejected by content moderation (%s); "
            "retrying with a new seed %d, attempt %d of %d (a new, billed job, "
            "fingerprint %s)",
            generation.provider, generation.job_id, exc.failure_code, seed, self.unsafe,
            self.unsafe_output, prepared.fingerprint[:12],
        )
        return prepared, (f" (retry {self.unsafe} of {self.unsafe_output} with a new seed: "
                          "its output was rejected)")

    def internal_resubmit(self, exc: ClassifiedFailure, generation: Generation) -> str | None:
        """The internal resubmit's note, or None when the failure is final."""
        if not (exc.resubmittable and self.resubmit_internal
                and self.internal < INTERNAL_RESUBMITS and exc.charged is not True):
            return None
        self.internal += 1
        get_run_logger().warning(
            "%s job %s failed internally (%s); resubmitting it once "
            "(a new job; the failed one was not charged)",
            generation.provider, generation.job_id, exc.failure_code,
        )
        return " (resubmitted after an internal failure)"


class _Job:
    """The job in hand: how it is submitted (priced first, against ``guard``) and what its
    reservation holds until it ends."""

    def __init__(self, credentials: ProviderCredentials, storage: OutputStorage,
                 guard: BudgetGuard | None, step: str, name: str | None,
                 after: GenerationResult | None, doubts: list[Doubt] | None) -> None:
        self.first, self.storage, self.guard, self.step = credentials, storage, guard, step
        self.name, self.after, self.doubts = name, after, doubts
        self.flow_run = flow_run_id()
        self.held: Reservation | None = None

    async def settle(self, charged: Cost | None, job_id: str | None = None) -> None:
        if self.guard is not None and self.held is not None:
            await self.guard.settle(self.held.provider, self.held, charged, job_id)
        self.held = None

    def charge(self, generation: Generation) -> Cost | None:
        """What the job in hand is taken to have cost when it ended without a known charge."""
        return submit_charge(generation, self.held.cost) if self.held else None

    async def admit(self, request: PreparedRequest, refresh: bool,
                    on: ProviderCredentials, why: str) -> Cost | None:
        """Price the submit and reserve it in the guard (or refuse it: ``NotStarted``)."""
        if self.guard is None:
            return None
        priced = request if isinstance(request, PreparedRequest) else prepare(request, on)
        estimate = estimate_step(priced, credentials=on)
        label = self.step if on is self.first else f"{self.step} on {on.provider_name} (fallback)"
        try:
            self.held = await self.guard.admit(on.provider_name, estimate, on, label + why,
                                               model=priced.model)
        except NotStarted:  # unless it reuses an earlier job, which costs nothing
            if refresh or not await reuses_a_job(request, on, self.storage):
                raise
            self.held = None
        return estimate

    async def submit(self, request: PreparedRequest, refresh: bool,
                     on: ProviderCredentials, last: bool = True, why: str = "") -> Generation:
        """One submit task run (cached): priced, sent, its reservation kept or released."""
        estimate = await self.admit(request, refresh, on, why)
        sent = datetime.now(timezone.utc)
        task = submit_task_for(on, refresh=refresh, retries=last)
        try:
            async with task_run_slot():
                submitted = await task(_opaque(request), _opaque(on), _opaque(self.storage),
                                       refresh, self.name, wait_for=_upstream(self.after))
        except BaseException as exc:  # a refusal made no job; anything else may be billed
            await self.settle(None if made_no_job(exc) or isinstance(exc, InvalidRequest)
                              else self.held.cost if self.held else None)
            if isinstance(exc, SubmissionUncertain):  # may be billed: a person settles it
                await _report_doubt(exc, request, on, self.storage, self.name, self.flow_run,
                                    self.doubts)
            raise
        if submitted.submitted_at < sent:  # an earlier job, reused: not paid again
            await self.settle(None)
        elif self.guard is not None and self.held is None:  # to be reused, but new: paid
            self.held = Reservation(provider=on.provider_name, cost=estimate)
        emit_job("submitted", submitted)  # also a job found in the cache
        return submitted


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
    """Submit (cached), wait and download one request; retry and resubmit as :class:`Retries`
    says.

    Call it inside a flow, with the request prepared (so an invalid request costs nothing)
    and the storage resolved once per flow run. One task run per request:
    ``submit-generation``, cached and persisted, so a re-run never pays twice. The wait and
    the download run in the flow run itself, their messages in its log. Every submit (the
    first, a fallback's, each resubmit) is priced before it is sent: reserved in ``guard``,
    or refused with :class:`~prefect_runway.errors.NotStarted` and nothing is sent.

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
        fallback: Where the first submit goes when ``credentials`` provably refuses it.
        after: The finished job this one follows (the still a video animates).
        guard: The run's budget guard (shared by its chains); None: the daily budgets of
            the route's blocks, where they have one.
        what: The step as a refusal names it (default ``the still 'name'``).
        doubts: Where a submit in doubt is noted for the caller's summary; None: published
            as this run's ``submission-doubts`` artifact.

    Raises:
        NotStarted: a submit would pass a budget (or has no known price while there is
            one); it was not sent.
    """
    Retries(retry_unsafe_output, resubmit_internal)  # checked before anything is sent
    if guard is None:
        guard = budget_guard(None, fallback.route.providers if fallback else [credentials],
                             storage, flow_run_id())
    job = _Job(credentials, storage, guard, what or "the " + describe_job(prepared.kind, name, None),
               name, after, doubts)
    if fallback is None:
        generation = await job.submit(prepared, force, credentials)
    else:  # the route's next provider where this one provably refuses
        served = await fallback.submit(prepared, credentials, reseed,
                                       lambda p, c, last: job.submit(p, force, c, last))
        credentials, prepared, reseed = served.credentials, served.prepared, served.reseed
        generation = served.generation
    return await _until_stored(job, generation, credentials, prepared, reseed, fallback,
                               Retries(retry_unsafe_output, resubmit_internal), force,
                               (key_template, name, preview, timeout, queue_timeout))


async def _until_stored(
    job: _Job, generation: Generation, credentials: ProviderCredentials,
    prepared: PreparedRequest, reseed: Callable[[int], PreparedRequest] | None,
    fallback: StepFallback | None, retries: Retries, force: bool, collect: tuple[Any, ...],
) -> tuple[GenerationResult, list[StoredOutput]]:
    """Wait for the job and collect it; on a failure, the resubmit :class:`Retries` allows
    (each a new job, priced first), until one is stored or none is left."""
    try:
        while True:
            track(job.flow_run, credentials, generation)
            try:
                return await _stored(generation, credentials, job, fallback, *collect)
            except GenerationExpired:
                untrack(job.flow_run, generation)
                await job.settle(job.charge(generation))  # it was paid
                if not retries.may_resubmit_expired():
                    raise
                why = retries.expired_resubmit(generation)
                generation = await job.submit(prepared, True, credentials, why=why)
            except ClassifiedFailure as exc:
                untrack(job.flow_run, generation)
                await job.settle(None if exc.charged is False else job.charge(generation))
                again = retries.unsafe_output_retry(exc, generation, prepared, reseed)
                if again is not None:
                    prepared, why = again
                    generation = await job.submit(prepared, force, credentials, why=why)
                    continue
                why_internal = retries.internal_resubmit(exc, generation)
                if why_internal is None:
                    raise
                generation = await job.submit(prepared, True, credentials, why=why_internal)
    finally:  # a job that ended without a known charge (failed, timed out, cancelled)
        await job.settle(job.charge(generation))


async def _stored(
    generation: Generation, credentials: ProviderCredentials, job: _Job,
    fallback: StepFallback | None, key_template: str | None, name: str | None,
    preview: str | None, timeout: float | None, queue_timeout: float | None,
) -> tuple[GenerationResult, list[StoredOutput]]:
    """The job waited for and collected, its charge recorded and its reservation settled."""
    waited = await _wait_in_flow(generation, credentials, timeout, queue_timeout)
    result, stored = await _collect_in_flow(
        waited, credentials, job.storage, key_template, name, preview, timeout, queue_timeout,
    )
    untrack(job.flow_run, generation)
    if fallback is not None:
        stored = await fallback.annotate(stored, job.storage)
    cost = output_cost(stored[0]) if stored else charged_cost(result, prices_of(credentials))
    await emit_charged(result, cost)
    await record_spend(credentials, job.storage, result, cost, get_run_logger(),
                       job.flow_run)  # daily budgets
    await job.settle(cost, generation.job_id)
    return result, stored


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
    """``value`` for a task call, marked so that Prefect does not walk into it (walking
    blocks and requests cost most of a storyboard's ``visit_collection`` calls and drew
    arrows in the run graph that meant nothing). The real upstream goes in ``wait_for``."""
    return cast(T, opaque(value))


def _upstream(after: GenerationResult | None) -> Any:
    """``wait_for`` for a submit: the job of the earlier submit it follows (Prefect finds the
    task run that returned it and draws the arrow), or None."""
    return None if after is None else [opaque(after.generation)]


async def _wait_in_flow(
    generation: Generation,
    credentials: ProviderCredentials,
    timeout: float | None,
    queue_timeout: float | None,
) -> Generation | GenerationResult:
    """Wait for the job in the flow run (no task run is open while the provider works): the
    finished job. A final error (failed, cancelled, expired, our deadline) is raised; one a
    retry can cure hands :func:`_collect_in_flow` the job, which waits again."""
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
    """The collect retry: download the finished job (or wait for it again first) in the flow
    run, tried again after each of :data:`COLLECT_RETRY_DELAYS` on an error a retry can cure
    (each logged at WARNING); a final error, or the last one, is raised."""
    delays = COLLECT_RETRY_DELAYS
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
