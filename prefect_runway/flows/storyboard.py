"""The ``storyboard`` flow: many shots, each a gen4_image still then that still animated (or a
video from its prompt alone), optionally each starting on the previous shot's last frame."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from prefect.logging import get_run_logger
from prefect.states import Failed

from prefect_runway.blocks.credentials import ProviderCredentials
from prefect_runway.errors import InvalidRequest, NotStarted, ShotRejected, StoryboardFailed
from prefect_runway.flows.artifacts import publish_cost_plan, publish_summary
from prefect_runway.flows.cancellation import cancel_remote_jobs
from prefect_runway.flows.chain import Chain, JobOptions, check_balances, guard_run
from prefect_runway.flows.continuity import check_handoff, continue_from
from prefect_runway.flows.doubts import Doubt
from prefect_runway.flows.fallback import FallbackPolicy
from prefect_runway.flows.options import (
    DEFAULT_CONCURRENCY,
    StoryboardReview,
    StoryboardRun,
    StoryboardStill,
    StoryboardVideo,
)
from prefect_runway.flows.parameters import runway_flow
from prefect_runway.flows.plan import ShotPlan, check_run, plan_storyboard
from prefect_runway.flows.progress import BatchProgress
from prefect_runway.flows.results import ShotResult, StoryboardSummary
from prefect_runway.flows.review import ReviewOutcome, review_storyboard, reviewed_still
from prefect_runway.flows.review_form import review_settings
from prefect_runway.flows.routing import ShotRouter, ShotRoutes
from prefect_runway.flows.shots import load_shots
from prefect_runway.flows.watch import announce_chains
from prefect_runway.models import Shot, StoredOutput
from prefect_runway.money.budget import Budget
from prefect_runway.money.cost_plan import Attempts, CostPlan, plan_costs, spending
from prefect_runway.money.costs import output_cost
from prefect_runway.storage import OutputStorage, resolve_storage
from prefect_runway.tasks.generation import cached_steps, submission_cache_key, submit_generation
from prefect_runway.tasks.limits import ModelSlots, ProviderSlots

__all__ = ["DEFAULT_CONCURRENCY", "storyboard"]


@runway_flow(name="storyboard", on_cancellation=[cancel_remote_jobs])
async def storyboard(
    # Mappings are accepted as they are and checked by load_shots, whose errors name the
    # row and field (1-based), where Prefect's parameter validation would not.
    shots: list[Shot | dict[str, Any]] | str,
    credentials: ProviderCredentials | str | None = None,
    storage: Any = None,
    budget: float | str | None = None,
    review: bool = False,
    still: StoryboardStill = StoryboardStill(),  # noqa: B008 - an immutable default
    video: StoryboardVideo = StoryboardVideo(),  # noqa: B008
    run: StoryboardRun = StoryboardRun(),  # noqa: B008
    review_options: StoryboardReview = StoryboardReview(),  # noqa: B008
) -> StoryboardSummary | CostPlan:
    """Generate a storyboard: for every shot a gen4_image still, then that still animated.

    A shot with no ``still_prompt`` is text-to-video (its ``motion_prompt`` alone, on a
    text_to_video model); with ``run.continuity`` every shot after the first starts on the
    previous shot's last frame, and the shots run one after another (docs/storyboards.md).

    Every shot is checked against its provider before anything is submitted; identical shots
    are generated once; the chains run concurrently; one failed shot does not stop the
    others. The run ends Completed when every shot succeeded, else Failed with the summary.
    The options come in groups (see :mod:`prefect_runway.flows.options`); their old flat
    keywords still work (``concurrency=8`` is ``run={"concurrency": 8}``).

    Args:
        shots: The shots (``Shot`` objects or mappings of their fields), or the path or
            ``s3://bucket/key`` of a JSON, CSV or YAML shots file.
        credentials: Credentials for both steps of every shot that names none itself: a block
            or a saved block's name (``"segmind-credentials/nightly"``).
        storage: Directory, ``s3://bucket/prefix`` or filesystem block for the outputs
            (default ``./runway-outputs``; on a worker, give an absolute directory or S3).
        budget: This run's cap: a number in the provider's unit (``300`` Runway credits) or
            a currency (``"USD 5.00"``); a plan over it is refused before anything is sent,
            and no new job starts once spent + in flight would pass it. A block's
            ``daily_budget`` is enforced the same way.
        review: Make every still, then wait for a person to approve, reject or regenerate
            each shot before any video is paid for (refused for a shot with no still).
        still: Where every still goes unless its shot says: credentials and fallback.
        video: Where every video goes unless its shot says: credentials and fallback.
        run: How the shots run: key template, concurrency, deadlines, caching, preview,
            dry run, checks.
        review_options: How the review waits, and the stills per shot to choose from.

    Returns:
        The per-shot summary (or, with ``run.dry_run``, the cost plan). When any shot
        failed, the run ends Failed: calling the flow raises
        :class:`~prefect_runway.errors.StoryboardFailed`, whose ``summary`` is this.

    Raises:
        InvalidShot: a shot is invalid (names the row and field); nothing was submitted.
        BudgetExceeded: the plan costs more than ``budget`` or a block has left today.
        InsufficientCredits: a provider's balance cannot pay the plan; nothing was sent.
    """
    if run.concurrency < 1:
        raise InvalidRequest("concurrency", f"{run.concurrency} is too small", allowed="1 or more")
    if isinstance(storage, str) and not storage.strip():
        raise InvalidRequest("storage", "is empty", allowed="a directory, s3://bucket/prefix or a block")
    settings = review_settings(review_options.timeout, review_options.on_timeout,
                               review_options.mode, review_options.variants, review=review)
    plans, routes = await _plan(shots, credentials, still, video, run, review)
    store = resolve_storage(storage)
    await _check(plans, routes, store, run)
    cost_plan, guard = await _price(plans, routes, store, Budget.parse(budget), run,
                                    settings.variants, review)
    if run.dry_run:
        get_run_logger().info("Dry run: nothing submitted")
        return cost_plan
    balances = await check_balances(cost_plan, [c for p in plans for c in (
        p.image_credentials, p.video_credentials)], [s for r in routes.values() for s in (
            r.still, r.video)]) if run.check_balance else {}
    chain = Chain(store, JobOptions(key_template=run.key_template, timeout=run.timeout,
                                    force=run.force, preview=run.preview),
                  guard, doubts=[], slot=await _slots(plans, run.provider_limit, balances),
                  article="its")
    results = await _run_shots(chain, plans, routes, run.concurrency, settings if review else None,
                               run.progress, run.continuity)
    return await _finish(results, cost_plan, chain.doubts or [],
                         len({p.chain_key for p in plans}), store)


async def _plan(
    shots: list[Shot | dict[str, Any]] | str, credentials: ProviderCredentials | str | None,
    still: StoryboardStill, video: StoryboardVideo, run: StoryboardRun, review: bool = False,
) -> tuple[list[ShotPlan], dict[int, ShotRoutes]]:
    """Every shot read and checked (and its fallback providers), before anything is sent."""
    source = shots if isinstance(shots, str) else None
    shot_list = await load_shots(shots, continuity=run.continuity)
    router = ShotRouter(  # every shot's fallback providers checked, too
        image_fallback=still.fallback, video_fallback=video.fallback,
        policy=FallbackPolicy.parse(run.fallback_on), source=source,
    )
    plans = await plan_storyboard(  # each shot planned where its route starts
        shot_list, credentials=credentials, image_credentials=still.credentials,
        video_credentials=video.credentials, source=source, router=router.plan_on,
        continuity=run.continuity,
        key_template=run.key_template,
    )
    stillless = next((p for p in plans if p.chain.still is None), None)
    if review and stillless is not None:  # a person approves stills before videos are paid
        why = ("it starts on the previous shot's last frame"
               if stillless.chain.mode == "continued" else "it is text-to-video")
        raise InvalidRequest(
            "review", f"shot {stillless.name!r} (row {stillless.row}) has no still to review: "
            f"{why}", allowed="review=False, or a still_prompt on every shot and "
            "run.continuity off")
    unused = [p.row for p in plans if p.chain.mode == "continued" and p.shot.still_prompt]
    if unused:
        get_run_logger().warning("With continuity, the still prompts of rows %s are not used: "
                                 "each starts on the shot before it", unused)
    get_run_logger().info(
        "Storyboard of %d shot(s), %d distinct; all checked; %s", len(plans),
        len({p.chain_key for p in plans}),
        "one after another, each from the last frame of the one before" if run.continuity
        else f"running {run.concurrency} at a time",
    )
    return plans, router.routes


async def _check(plans: list[ShotPlan], routes: dict[int, ShotRoutes], store: OutputStorage,
                 run: StoryboardRun) -> None:
    """Every setting the run needs (:func:`check_run`), and with continuity, how each frame
    reaches its provider."""
    await check_run(
        store, [(step, p.name) for p in plans for step in (p.chain.still, p.chain.video_check)
                if step is not None], key_template=run.key_template, preview=run.preview,
    )
    if run.continuity:
        await check_handoff(plans, routes, store)


async def _price(
    plans: list[ShotPlan], routes: dict[int, ShotRoutes], store: OutputStorage,
    cap: Budget | None, run: StoryboardRun, variants: int, review: bool,
) -> tuple[CostPlan, Any]:
    """The plan priced (the ``cost-plan`` artifact) and checked against the budgets; the
    guard every submit of the run is priced against."""
    logger = get_run_logger()
    cost_plan = plan_costs(
        plans, cached=() if run.force or variants > 1 else await cached_steps(
            plans, submission_cache_key, submit_generation),
        routes=[(routes[p.row].still, routes[p.row].video) for p in plans],
        attempts=Attempts(variants=variants, review=review),
    )
    await publish_cost_plan(cost_plan)
    logger.info("Cost plan:\n%s\n%s", cost_plan.table(), "\n".join(cost_plan.worst_case()))
    providers = {id(c): c for r in routes.values() for step in (r.still, r.video)
                 for c in step.providers}.values()
    return cost_plan, await guard_run(cost_plan, cap, providers, store, plans)


async def _slots(plans: list[ShotPlan], provider_limit: str | None,
                 balances: dict[str, Any]) -> Any:
    """The places each job holds: its provider's global concurrency limit (where active),
    else the account's per-model limit (Runway's maxConcurrentGenerations)."""
    logger = get_run_logger()
    providers = {p.image_credentials.provider_name for p in plans}
    providers |= {p.video_credentials.provider_name for p in plans}
    slots = ProviderSlots(providers, provider_limit)
    await slots.lookup()
    for provider, name in sorted(slots.limit_of.items()):
        if slots.active(provider):
            logger.info("Each %s job holds a slot of global concurrency limit %r", provider, name)
        else:
            logger.info("No active global concurrency limit %r: %s jobs are bounded by this "
                        "run's concurrency only", name, provider)
    model_slots = ModelSlots.from_balances(balances, slots)
    for (provider, model), bound in sorted(model_slots.bounds.items()):
        logger.info("At most %d %s %s job(s) at once in this run: the account's "
                    "maxConcurrentGenerations", bound, provider, model)

    @contextlib.asynccontextmanager
    async def slot(provider: str, model: str) -> AsyncIterator[None]:
        async with slots.slot(provider), model_slots.slot(provider, model):
            yield

    return slot


async def _run_shots(
    chain: Chain, plans: list[ShotPlan], routes: dict[int, ShotRoutes], concurrency: int,
    review: Any, progress: bool, continuity: bool = False,
) -> list[ShotResult]:
    """Every distinct chain once (identical shots share it; shots that share a still share
    its job), at most ``concurrency`` at a time (``continuity``: one after another, each
    from the video before it); each shot's result, in order."""
    groups: dict[str, list[ShotPlan]] = {}
    for plan in plans:
        groups.setdefault(plan.chain_key, []).append(plan)
    semaphore = asyncio.Semaphore(concurrency)
    stills: dict[str, asyncio.Task[Any]] = {}
    tracker = (BatchProgress(len(plans), key="storyboard-progress", description="storyboard")
               if progress else None)
    if tracker is not None:
        await tracker.start()
    announce_chains(groups.values())  # to a watcher in this process (the CLI's live display)

    async def make_still(plan: ShotPlan, request: Any = None, image: Any = None,
                         label: str = "still") -> tuple[Any, StoredOutput]:
        return await chain.still(plan.chain, plan.name, routes[plan.row].still, request, image,
                                 label)

    async def still_of(plan: ShotPlan) -> tuple[Any, StoredOutput]:
        if plan.chain_key in reviewed:  # the still a person approved (or asked for)
            return reviewed_still(reviewed[plan.chain_key])
        if plan.still_key not in stills:
            stills[plan.still_key] = asyncio.ensure_future(make_still(plan))
        return await stills[plan.still_key]

    async def run_group(group: list[ShotPlan],
                        previous: StoredOutput | None = None) -> list[ShotResult]:
        async with semaphore:
            results = await _shot(chain, group, routes[group[0].row], still_of, previous)
        try:
            if tracker is not None:
                await tracker.advance(len(group), failed=any(r.error for r in results))
        except Exception as exc:  # progress is for people; never fail a shot over it
            get_run_logger().debug("Could not update the progress artifact: %s", exc)
        return results

    reviewed: dict[str, ReviewOutcome] = {}
    if review is not None:  # every still first, then a person's decision, then the videos
        async def reused(plan: ShotPlan, still: StoredOutput) -> None:  # made before a suspend
            if chain.guard is not None:  # this run paid for it, in its first process
                await chain.guard.settle(still.provider, 0.0, output_cost(still))

        reviewed = await review_storyboard(list(groups.values()), make_still, chain.store,
                                           review, reused)
    if continuity:  # each shot needs the video before it
        chained, previous = [], None
        for group in groups.values():
            chained.append(await run_group(group, previous))
            previous = chained[-1][0].video
    else:
        chained = await asyncio.gather(*(run_group(group) for group in groups.values()))
    return sorted((r for group in chained for r in group), key=lambda r: r.row)


async def _shot(chain: Chain, group: list[ShotPlan], routes: ShotRoutes, still_of: Any,
                previous: StoredOutput | None = None) -> list[ShotResult]:
    """One distinct shot's chain (its still, then its video; or its video from its prompt
    alone, or from the last frame of ``previous``); the result of every shot of ``group``.
    Its failure is reported, not raised."""
    logger = get_run_logger()
    plan = group[0]
    still: StoredOutput | None = None
    video: StoredOutput | None = None
    finished: StoredOutput | None = None
    error: str | None = None
    skipped = False
    rejected: ShotRejected | None = None  # at review: carries the still that was shown
    try:
        if plan.chain.mode == "text":
            video = await chain.text_video(plan.chain, plan.name, routes.video)
        elif plan.chain.mode == "continued":
            video = await continue_from(chain, plan, routes.video, previous)
        else:
            still_result, still = await still_of(plan)
            video = await chain.video(plan.chain, plan.name, (routes.still, routes.video),
                                      still_result, still)
        finished = await chain.finish(plan.chain, plan.name, video)
    except NotStarted as exc:
        error, skipped = str(exc), True
        logger.warning("Shot %s (row %d) %s", plan.name, plan.row, error)
    except ShotRejected as exc:
        rejected = exc
        logger.info("Shot %s (row %d) was rejected at review", plan.name, plan.row)
    except Exception as exc:  # one shot's failure is reported, not raised
        error = f"{type(exc).__name__}: {exc}"
        logger.warning("Shot %s (row %d) failed: %s", plan.name, plan.row, error)
    return [
        ShotResult(
            row=p.row, name=p.name,
            status="not_started" if skipped else "rejected" if rejected
            else "failed" if error else "completed",
            still=rejected.still if rejected else still, video=video, finished=finished,
            error=error,
            same_as=None if p is plan else plan.name,
        )
        for p in group
    ]


async def _finish(results: list[ShotResult], cost_plan: CostPlan, doubts: list[Doubt],
                  generated: int, store: OutputStorage) -> StoryboardSummary:
    """The summary (an artifact); the run's state: Completed, or Failed with the summary."""
    logger = get_run_logger()
    summary = StoryboardSummary.of(results, generated=generated)
    summary.not_started = sum(1 for r in results if r.status == "not_started")
    summary.costs = spending([o for r in results for o in (r.still, r.video, r.finished)],
                             cost_plan)
    summary.doubts = doubts
    await publish_summary(summary, store)
    if summary.ok:
        logger.info("Storyboard done: %s", summary.describe())
        return summary
    message = f"Storyboard failed: {summary.describe()}"
    logger.error("%s", message)
    return Failed(message=message, data=StoryboardFailed(message, summary))  # type: ignore[return-value]
