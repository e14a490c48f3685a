"""The ``storyboard`` flow: many shots, each a gen4_image still then that still animated.

How a storyboard runs:

1. **Read and check every shot** (a list, or a JSON / CSV / YAML file, local or in S3), then
   plan each as a chain (:func:`prefect_runway.plan.plan_storyboard`: the still prepared,
   the video checked against the provider it will go to). One bad shot stops the storyboard
   with an :class:`~prefect_runway.errors.InvalidShot` naming its row and field, *before
   anything is submitted*; so does a bad run setting (:func:`prefect_runway.plan.check_run`).
2. **Generate each distinct shot once.** Shots are keyed by their request fingerprints (still
   and video, provider and API); identical shots share one generation, and shots that share a
   still share its one job.
3. **Run the chains concurrently**, at most ``concurrency`` at a time in this flow run. Each
   job also holds a slot of the Prefect global concurrency limit named for its provider
   (``segmind-jobs``, ...) when one exists, so several workers share a provider's
   concurrency; every request draws from the credentials block's rate limits.
4. **Report per shot.** One failed shot does not stop the others. The flow returns a
   :class:`StoryboardSummary` (each shot's stored outputs, or the reason it failed, and each
   submission in doubt with the commands that settle it), shows it as a markdown artifact,
   and ends Completed when every shot succeeded — otherwise Failed, with the summary in the
   state's message and in its :class:`StoryboardFailed` result.

The chains call :func:`~prefect_runway.flows.generation.run_generation` directly inside this
one flow run rather than running ``image_to_video`` as a subflow per shot: a subflow costs a
flow run (and its API traffic) per shot, where a storyboard may have hundreds, and a shared
still could not be shared across subflows. The steps are the same (a cached submit task run
per job, then the wait and the download in the flow run), with the same caching: a re-run of
the storyboard finds every job already submitted.
"""

from __future__ import annotations

import asyncio
from typing import Any

from prefect.logging import get_run_logger
from prefect.states import Failed

from prefect_runway.blocks.credentials import ProviderCredentials
from prefect_runway.errors import InvalidRequest, NotStarted, ShotRejected, StoryboardFailed
from prefect_runway.flows.artifacts import publish_cost_plan, publish_summary
from prefect_runway.flows.cancellation import cancel_remote_jobs
from prefect_runway.flows.doubts import Doubt
from prefect_runway.flows.fallback import FallbackPolicy, balance_covered, same_request
from prefect_runway.flows.generation import run_generation, still_reference
from prefect_runway.flows.parameters import runway_flow
from prefect_runway.flows.plan import ShotPlan, check_run, plan_storyboard
from prefect_runway.flows.progress import BatchProgress
from prefect_runway.flows.results import ShotResult, StoryboardSummary
from prefect_runway.flows.review import ReviewOutcome, review_storyboard, reviewed_still
from prefect_runway.flows.review_form import DEFAULT_REVIEW_TIMEOUT, review_settings
from prefect_runway.flows.routing import ShotRouter, ShotRoutes
from prefect_runway.flows.shots import load_shots
from prefect_runway.flows.watch import announce_chains
from prefect_runway.models import Shot, StoredOutput
from prefect_runway.money.balances import check_balances
from prefect_runway.money.budget import Budget
from prefect_runway.money.cost_plan import Attempts, CostPlan, plan_costs, spending
from prefect_runway.money.costs import output_cost
from prefect_runway.money.daily import budget_guard
from prefect_runway.storage import STORYBOARD_KEY_TEMPLATE, resolve_storage
from prefect_runway.tasks.generation import cached_steps, submission_cache_key, submit_generation
from prefect_runway.tasks.limits import DEFAULT_PROVIDER_LIMIT, ModelSlots, ProviderSlots
from prefect_runway.tasks.runs import flow_run_id

#: Chains in flight at once in one flow run. Runway runs only a few jobs per key at once
#: (more wait THROTTLED), and Segmind and AIMLAPI queue the rest: more buys little.
DEFAULT_CONCURRENCY = 4


@runway_flow(name="storyboard", on_cancellation=[cancel_remote_jobs])
async def storyboard(
    # Mappings are accepted as they are and checked by load_shots, whose errors name the
    # row and field (1-based), where Prefect's parameter validation would not.
    shots: list[Shot | dict[str, Any]] | str,
    credentials: ProviderCredentials | str | None = None,
    image_credentials: ProviderCredentials | str | None = None,
    video_credentials: ProviderCredentials | str | None = None,
    storage: Any = None,
    key_template: str = STORYBOARD_KEY_TEMPLATE,
    concurrency: int = DEFAULT_CONCURRENCY,
    provider_limit: str | None = DEFAULT_PROVIDER_LIMIT,
    timeout: float | None = None,
    force: bool = False,
    preview: str | None = "gif",
    progress: bool = True,
    budget: float | str | None = None,
    dry_run: bool = False,
    check_balance: bool = True,
    image_fallback: list[ProviderCredentials | str] | None = None,
    video_fallback: list[ProviderCredentials | str] | None = None,
    fallback_on: list[str] | str | None = None,
    review: bool = False,
    variants: int = 1,
    review_timeout: float = DEFAULT_REVIEW_TIMEOUT,
    on_timeout: str = "fail",
    review_mode: str = "auto",
) -> StoryboardSummary | CostPlan:
    """Generate a storyboard: for every shot a gen4_image still, then that still animated.

    Every shot is checked against its provider before anything is submitted; identical shots
    are generated once; the chains run concurrently; one failed shot does not stop the
    others. The run ends Completed when every shot succeeded, else Failed with the summary.

    Args:
        shots: The shots (``Shot`` objects or mappings of their fields), or the path or
            ``s3://bucket/key`` of a JSON, CSV or YAML shots file (see
            :mod:`prefect_runway.shots`).
        credentials: Credentials for both steps of every shot that names none itself: a block
            or a saved block's name (``"segmind-credentials/nightly"``).
        image_credentials: Credentials for the stills (default ``credentials``).
        video_credentials: Credentials for the videos (default ``credentials``).
        storage: Directory, ``s3://bucket/prefix`` or filesystem block for the outputs
            (default ``./runway-outputs``; on a worker, give an absolute directory or S3).
        key_template: Storage key template; ``{name}`` is the shot's name.
        concurrency: How many shots run at once in this flow run. Where a provider has no
            active global concurrency limit, its jobs of each model are also bounded by what
            the account allows at once (Runway's ``maxConcurrentGenerations``, read with the
            balance when ``check_balance``).
        provider_limit: Name of the Prefect global concurrency limit each job holds a slot
            of while it runs, ``{provider}`` replaced by the provider's name; used where it
            exists, so that every worker shares it. Empty to use none.
        timeout: Wait deadline per job, in seconds (default: the block's).
        force: Submit new jobs even where the same requests are cached.
        preview: Each video's preview stored beside it: ``"gif"``, ``"png"`` (contact
            sheet) or None (none: saves the CPU time of decoding every video).
        progress: Keep a ``storyboard-progress`` artifact up to date as shots finish (a
            Prefect API call per update, coalesced); False for none.
        budget: This run's cap: a number in the provider's unit (``300`` Runway credits) or
            a currency (``"USD 5.00"``). A plan over it is refused before anything is sent;
            during the run no new job starts once spent + in flight would pass it (running
            jobs finish; the summary names the shots not started).
        dry_run: Plan and price the run (the ``cost-plan`` artifact), submit nothing, and
            return the :class:`~prefect_runway.costs.CostPlan`.
        check_balance: Before the run, read each provider's balance (where it has an
            endpoint) and refuse a plan it cannot pay (unless its steps have a fallback).
        image_fallback: Where every still goes, in order, when its provider provably does
            not take the job (see :mod:`prefect_runway.fallback`); a shot's own
            ``image_fallback`` replaces it.
        video_fallback: The same for every video (a shot's ``video_fallback`` replaces it).
        fallback_on: The reasons that allow a fallback (default: all); never after
            ``SubmissionUncertain``.
        review: Make every still, then wait for a person to approve, reject or regenerate
            each shot before any video is paid for (see :mod:`prefect_runway.review`);
            identical shots are reviewed once, under the first one's name.
        variants: With ``review``: stills per shot, each with its own seed (1-8).
        review_timeout: How long the review waits, in seconds.
        on_timeout: When nobody answers in time: ``"fail"``, ``"reject"`` or ``"approve"``.
        review_mode: ``"auto"``, ``"pause"`` (keep the process) or ``"suspend"`` (free the
            worker; deployments only).

    A credentials block's ``daily_budget`` is enforced too (see :mod:`prefect_runway.spend`):
    a plan over what the block has left today (UTC) is refused before anything is sent, and
    no new job starts once the block's spend today plus this run's jobs in flight would
    pass it.

    Returns:
        The per-shot summary (shots rejected at review: ``rejected``, not failed). When
        any shot failed, the run ends Failed: calling the flow raises
        :class:`~prefect_runway.errors.StoryboardFailed`, whose ``summary`` is this.

    Raises:
        InvalidShot: a shot is invalid (names the row and field); nothing was submitted.
        StoryboardFailed: some shots failed (the others were stored).
        BudgetExceeded: the plan costs more than ``budget``, or than what a credentials
            block's ``daily_budget`` has left today (UTC); nothing was sent.
        InsufficientCredits: a provider's balance cannot pay the plan; nothing was sent.

    Example:
        ```python
                from prefect_runway import SegmindCredentials, storyboard

        @flow
        async def nightly():
            credentials = await SegmindCredentials.load("BLOCK_NAME")
            return await storyboard(
                shots="s3://my-bucket/storyboards/tonight.yaml",
                credentials=credentials,
                storage="s3://my-bucket/outputs",
                concurrency=4,
            )
        ```
    """
    logger = get_run_logger()
    if concurrency < 1:
        raise InvalidRequest("concurrency", f"{concurrency} is too small", allowed="1 or more")
    if isinstance(storage, str) and not storage.strip():
        raise InvalidRequest("storage", "is empty", allowed="a directory, s3://bucket/prefix or a block")
    cap = Budget.parse(budget)
    settings = review_settings(review_timeout, on_timeout, review_mode, variants, review=review)
    source = shots if isinstance(shots, str) else None
    shot_list = await load_shots(shots)
    router = ShotRouter(  # every shot's fallback providers checked, too
        image_fallback=image_fallback, video_fallback=video_fallback,
        policy=FallbackPolicy.parse(fallback_on), source=source,
    )
    plans = await plan_storyboard(  # each shot planned where its route starts
        shot_list, credentials=credentials, image_credentials=image_credentials,
        video_credentials=video_credentials, source=source, router=router.plan_on,
    )
    routes = router.routes
    groups: dict[str, list[ShotPlan]] = {}
    for plan in plans:
        groups.setdefault(plan.chain_key, []).append(plan)
    logger.info(
        "Storyboard of %d shot(s), %d distinct; all checked; running %d at a time",
        len(plans), len(groups), concurrency,
    )

    store = resolve_storage(storage)
    await check_run(
        store, [(step, p.name) for p in plans for step in (p.chain.still, p.chain.video_check)],
        key_template=key_template, preview=preview,
    )

    # Money before the first submit: the plan priced (an artifact), the budget, the balances.
    cost_plan = plan_costs(
        plans, cached=() if force or settings.variants > 1 else await cached_steps(
            plans, submission_cache_key, submit_generation),
        routes=[(routes[p.row].still, routes[p.row].video) for p in plans],
        attempts=Attempts(variants=settings.variants, review=review),
    )
    await publish_cost_plan(cost_plan)
    logger.info("Cost plan:\n%s\n%s", cost_plan.table(), "\n".join(cost_plan.worst_case()))
    if cap is not None:
        cap.check(cost_plan)
    # Every submit of the run, whichever route leads to it, is priced against this guard
    # (the run's budget, each block's cap per UTC day); its chains share it.
    guard = budget_guard(cap, {id(c): c for r in routes.values() for step in (r.still, r.video)
                               for c in step.providers}.values(), store, flow_run_id())
    if guard is not None and guard.daily:
        await guard.daily.check(cost_plan, plans)
    if dry_run:
        logger.info("Dry run: nothing submitted")
        return cost_plan
    balances = (await _check_balances(cost_plan, plans, logger, routes)
                if check_balance else {})

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
    # Without the user's own limit, the account's per-model limit (Runway's
    # maxConcurrentGenerations, read with the balance) bounds this run's jobs of that model.
    model_slots = ModelSlots.from_balances(balances, slots)
    for (provider, model), bound in sorted(model_slots.bounds.items()):
        logger.info("At most %d %s %s job(s) at once in this run: the account's "
                    "maxConcurrentGenerations", bound, provider, model)

    semaphore = asyncio.Semaphore(concurrency)
    stills: dict[str, asyncio.Task[Any]] = {}
    doubts: list[Doubt] = []  # submissions in doubt, for the summary
    # Progress artifact (prefect_runway.artifacts.BatchProgress), advanced as shots finish.
    tracker = (BatchProgress(len(plans), key="storyboard-progress", description="storyboard")
               if progress else None)
    if tracker is not None:
        await tracker.start()
    announce_chains(groups.values())  # to a watcher in this process (the CLI's live display)

    async def make_still(
        plan: ShotPlan, request: Any = None, image: Any = None, label: str = "still",
    ) -> tuple[Any, StoredOutput]:
        request = request or plan.chain.still
        provider = plan.image_credentials.provider_name
        async with slots.slot(provider), model_slots.slot(provider, request.model):
            result, stored = await run_generation(
                request, plan.image_credentials, storage=store,
                key_template=key_template, name=plan.name, timeout=timeout, force=force,
                fallback=routes[plan.row].still.runtime(
                    same_request(image or plan.shot.still_request()), plan.name),
                guard=guard, what=f"its {label}", doubts=doubts,
            )
        return result, stored[0]

    async def run_chain(group: list[ShotPlan]) -> list[ShotResult]:
        plan = group[0]
        still: StoredOutput | None = None
        video: StoredOutput | None = None
        error: str | None = None
        skipped = False
        rejected: ShotRejected | None = None  # at review: carries the still that was shown
        async with semaphore:
            try:
                if plan.chain_key in reviewed:  # the still a person approved (or asked for)
                    still_result, still = reviewed_still(reviewed[plan.chain_key])
                else:
                    if plan.still_key not in stills:
                        stills[plan.still_key] = asyncio.ensure_future(make_still(plan))
                    still_result, still = await stills[plan.still_key]
                made_on = routes[plan.row].still.credentials_for(still.provider)
                image = await still_reference(
                    still, still_result, made_on, plan.video_credentials, store,
                )

                async def video_for(creds: ProviderCredentials) -> Any:  # a fallback's request
                    handed = await still_reference(still, still_result, made_on, creds, store)
                    return plan.chain.video_request(handed, still.sha256)

                video_step = plan.chain.video(image, still.sha256)
                provider = plan.video_credentials.provider_name
                async with slots.slot(provider), model_slots.slot(provider, video_step.model):
                    _, stored = await run_generation(
                        video_step, plan.video_credentials, storage=store,
                        key_template=key_template, name=plan.name, timeout=timeout,
                        force=force, preview=preview,
                        fallback=routes[plan.row].video.runtime(video_for, plan.name),
                        after=still_result, guard=guard, what="its video", doubts=doubts,
                    )
                video = stored[0]
            except NotStarted as exc:
                error, skipped = str(exc), True
                logger.warning("Shot %s (row %d) %s", plan.name, plan.row, error)
            except ShotRejected as exc:
                rejected = exc
                logger.info("Shot %s (row %d) was rejected at review", plan.name, plan.row)
            except Exception as exc:  # one shot's failure is reported, not raised
                error = f"{type(exc).__name__}: {exc}"
                logger.warning("Shot %s (row %d) failed: %s", plan.name, plan.row, error)
        results = [
            ShotResult(
                row=p.row, name=p.name,
                status="not_started" if skipped else "rejected" if rejected
                else "failed" if error else "completed",
                still=rejected.still if rejected else still, video=video, error=error,
                same_as=None if p is plan else plan.name,
            )
            for p in group
        ]
        try:
            if tracker is not None:
                await tracker.advance(len(group), failed=error is not None)
        except Exception as exc:  # progress is for people; never fail a shot over it
            logger.debug("Could not update the progress artifact: %s", exc)
        return results

    reviewed: dict[str, ReviewOutcome] = {}
    if review:  # every still first, then a person's decision, then only the chosen videos
        async def reused(plan: ShotPlan, still: StoredOutput) -> None:  # made before a suspend
            if guard is not None:  # this run paid for it, in its first process
                await guard.settle(still.provider, 0.0, output_cost(still))

        reviewed = await review_storyboard(list(groups.values()), make_still, store, settings,
                                           reused)
    chained = await asyncio.gather(*(run_chain(group) for group in groups.values()))
    results = sorted((r for group in chained for r in group), key=lambda r: r.row)
    summary = StoryboardSummary.of(results, generated=len(groups))
    summary.not_started = sum(1 for r in results if r.status == "not_started")
    summary.costs = spending(
        [o for r in results for o in (r.still, r.video)], cost_plan,
    )
    summary.doubts = doubts
    await publish_summary(summary)
    if summary.ok:
        logger.info("Storyboard done: %s", summary.describe())
        return summary
    message = f"Storyboard failed: {summary.describe()}"
    logger.error("%s", message)
    return Failed(message=message, data=StoryboardFailed(message, summary))  # type: ignore[return-value]


async def _check_balances(cost_plan: CostPlan, plans: list[ShotPlan], logger: Any,
                          routes: dict[int, ShotRoutes] | None = None) -> dict[str, Any]:
    """Refuse a plan a provider's balance cannot pay (unless its steps have a fallback); a
    balance that cannot be read is skipped.

    Returns the balances read, per provider (their per-model limits bound the run's jobs).
    """
    from prefect_runway.errors import InsufficientCredits, PrefectRunwayError

    credentials = [p.image_credentials for p in plans] + [p.video_credentials for p in plans]
    try:
        balances = await check_balances(cost_plan, credentials)
    except InsufficientCredits as exc:
        steps = [r for shot in (routes or {}).values() for r in (shot.still, shot.video)]
        if balance_covered(exc, steps, logger):
            return {}
        raise
    except (PrefectRunwayError, OSError) as exc:
        logger.warning("Could not read a provider's balance; not checked: %s", exc)
        return {}
    for provider, balance in sorted(balances.items()):
        logger.info("%s balance: %s %s", provider, balance.credits, balance.unit)
    return dict(balances)


__all__ = ["DEFAULT_CONCURRENCY", "storyboard"]
