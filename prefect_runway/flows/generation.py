"""The chain ``image_to_video``: a still, then that still animated (and finished). The flows of
one generation each live in :mod:`prefect_runway.flows.single` (still importable from here)."""

from typing import Any

from prefect_runway.blocks.credentials import ProviderCredentials
from prefect_runway.blocks.requests import load_credentials
from prefect_runway.errors import BudgetExceeded, NotStarted, ShotRejected
from prefect_runway.flows.artifacts import publish_outputs, publish_still, publish_video_preview
from prefect_runway.flows.cancellation import cancel_remote_jobs
from prefect_runway.flows.chain import Chain, JobOptions, check_balances, guard_run
from prefect_runway.flows.fallback import FallbackPolicy, Route
from prefect_runway.flows.options import (
    FinishOptions,
    ImageToVideoRun,
    ReviewOptions,
    StillOptions,
    VideoOptions,
)
from prefect_runway.flows.parameters import runway_flow
from prefect_runway.flows.plan import ChainPlan, check_run, plan_chain, plan_finish
from prefect_runway.flows.progress import BatchProgress, advance_quietly, note_progress
from prefect_runway.flows.results import ImageToVideoResult
from prefect_runway.flows.review import review_one
from prefect_runway.flows.review_form import ReviewSettings, review_settings
from prefect_runway.flows.routing import load_route
from prefect_runway.flows.watch import announce
from prefect_runway.models import (
    PLACEHOLDER_IMAGE,
    FinishRequest,
    GenerationResult,
    ImageRequest,
    StoredOutput,
    VideoRequest,
)
from prefect_runway.money.budget import Budget, BudgetGuard
from prefect_runway.money.cost_plan import Attempts, CostPlan, plan_costs
from prefect_runway.providers.base import PreparedRequest
from prefect_runway.storage import OutputStorage, resolve_storage

__all__ = ["image_to_video"]

#: The flows of one generation each, importable from here as before: loaded on first use, so
#: a run of ``image_to_video`` (a deployment's entrypoint is this file) builds only its own flow.
_SINGLE = ("animate_image", "generate_image", "text_to_video")


def __getattr__(name: str) -> Any:
    if name in _SINGLE:
        from prefect_runway.flows import single

        return getattr(single, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@runway_flow(name="image-to-video", on_cancellation=[cancel_remote_jobs])
async def image_to_video(
    still_prompt: str,
    motion_prompt: str,
    credentials: ProviderCredentials | str | None = None,
    name: str | None = None,
    seed: int | None = None,
    storage: Any = None,
    budget: float | str | None = None,
    review: bool = False,
    still: StillOptions = StillOptions(),  # noqa: B008 - an immutable default, shown in the form
    video: VideoOptions = VideoOptions(),  # noqa: B008
    run: ImageToVideoRun = ImageToVideoRun(),  # noqa: B008
    review_options: ReviewOptions = ReviewOptions(),  # noqa: B008
) -> ImageToVideoResult:
    """A gen4_image still, then that still animated (and finished, if asked): the chain.

    The options come in groups (``still``, ``video``, ``run``, ``review_options``: see
    :mod:`prefect_runway.flows.options`); their old flat keywords still work
    (``video_model="gen3a_turbo"`` is ``video={"model": "gen3a_turbo"}``).

    Args:
        still_prompt: The still's prompt; refer to reference images as ``@tag``.
        motion_prompt: The animation's prompt.
        credentials: Credentials for both steps (unless ``still`` or ``video`` name their own).
        name: Value of ``{name}`` in the storage key template.
        seed: Seed for both steps.
        storage: Directory, ``s3://bucket/prefix`` or filesystem block.
        budget: This run's cap: a number in the provider's unit or a currency
            (``"USD 5.00"``); a plan over it is refused before anything is sent.
        review: Wait for a person to approve, reject or regenerate the still before the
            video is paid for.
        still: The still: reference images, ratio, its own credentials and fallback.
        video: The video: model, ratio, duration, its own credentials and fallback, and
            its ``finish``: a finishing step on Runway's API (see ``FinishOptions``), e.g.
            ``{"model": "magnific_video_upscaler_creative", "options": {"resolution": "4k"}}``.
        run: How the jobs run: key template, deadlines, caching, preview, retries, checks.
        review_options: How the review waits, and what happens when nobody answers.

    Returns:
        The stored still, video and finished video (with ``review``: ``status="rejected"``
        and no video when the still was rejected).

    Raises:
        BudgetExceeded: the plan costs more than ``budget``; nothing was sent.
        InsufficientCredits: a provider's balance cannot pay the plan; nothing was sent.
    """
    settings = review_settings(review_options.timeout, review_options.on_timeout,
                               review_options.mode)
    store = resolve_storage(storage)
    still_request = ImageRequest(prompt=still_prompt, reference_images=still.reference_images,
                                 ratio=still.ratio, seed=seed, options=still.options)

    def video_request(image: str, image_sha256: str | None) -> VideoRequest:
        return VideoRequest(
            image=image, image_sha256=image_sha256, prompt=motion_prompt, model=video.model,
            ratio=video.ratio or still.ratio, duration=video.duration, seed=seed,
            options=video.options,
        )

    plan, routes = await _plan_chain(credentials, still, video, run, still_request, video_request)
    assert plan.still is not None  # a still, then that still animated
    steps = [(step, name) for step in (plan.still, plan.video_check, plan.finish_check) if step]
    await check_run(store, steps, key_template=run.key_template, preview=run.preview)
    cost_plan = plan_costs(  # priced, not published: two steps need no artifact
        [plan], routes=[routes],
        attempts=Attempts(run.retry_unsafe_output, run.resubmit_internal, review=review))
    guard = await _guard_chain(plan, routes, cost_plan, Budget.parse(budget), store,
                               run.check_balance)
    announce(name, "image", plan.image_credentials.provider_name, plan.still.model)
    announce(name, "video", plan.video_credentials.provider_name, plan.video_check.model)
    chain = Chain(store, JobOptions(
        key_template=run.key_template, timeout=run.timeout, force=run.force,
        preview=run.preview, queue_timeout=run.queue_timeout,
        retry_unsafe_output=run.retry_unsafe_output,
        resubmit_internal=run.resubmit_internal, upload=run.upload), guard)
    return await _run_chain(chain, plan, routes, name, still_request,
                            settings if review else None, run.progress)


async def _plan_chain(
    credentials: ProviderCredentials | str | None, still: StillOptions, video: VideoOptions,
    run: ImageToVideoRun, still_request: ImageRequest,
    video_request: Any,
) -> tuple[ChainPlan, tuple[Route, Route]]:
    """The chain planned (both steps checked against every provider of their routes, and
    its finishing step, before anything is sent), and its two routes."""
    image_creds = await load_credentials(
        still.credentials or credentials, "image_credentials" if still.credentials else "credentials",
    )
    video_given = video.credentials or credentials
    still_given = still.credentials or credentials
    video_creds = image_creds if isinstance(video_given, str) and video_given == still_given \
        else await load_credentials(  # one block for both steps: read once
            video_given, "video_credentials" if video.credentials else "credentials")
    policy = FallbackPolicy.parse(run.fallback_on)
    image_route = await load_route("still", image_creds, still.fallback, "image_fallback", policy)
    video_route = await load_route("video", video_creds, video.fallback, "video_fallback", policy)
    image_creds = image_route.check(still_request).primary
    video_creds = video_route.check(video_request(PLACEHOLDER_IMAGE, None)).primary
    plan = plan_chain(still_request, video_request, image_creds, video_creds)
    if video.finish is not None:
        await _plan_finish(plan, video.finish, video, credentials, run.key_template)
    return plan, (image_route, video_route)


async def _guard_chain(
    plan: ChainPlan, routes: tuple[Route, Route], cost_plan: CostPlan, cap: Budget | None,
    store: OutputStorage, check_balance: bool,
) -> BudgetGuard | None:
    """The chain's money checked (budget, daily budgets, balances) before anything is sent;
    the guard every submit of the run is priced against, whichever route leads to it."""
    finishing = [plan.finish_credentials] if plan.finish_credentials else []
    guard = await guard_run(cost_plan, cap, [*routes[0].providers, *routes[1].providers,
                                             *finishing], store, [plan])
    if check_balance:
        await check_balances(cost_plan, [plan.image_credentials, plan.video_credentials,
                                         *finishing], routes)
    return guard


async def _plan_finish(plan: ChainPlan, finish: FinishOptions, video: VideoOptions,
                       credentials: ProviderCredentials | str | None,
                       key_template: str | None) -> None:
    """The chain's finishing step, checked (model, options, provider) before anything is
    sent: on ``finish.credentials``, else the video's, else the flow's."""
    given = finish.credentials or video.credentials or credentials
    creds = await load_credentials(given, "video.finish.credentials" if finish.credentials else
                                   "video_credentials" if video.credentials else "credentials")

    def finish_request(uri: str, sha256: str | None, duration: float | None) -> FinishRequest:
        return FinishRequest(model=finish.model, video=uri, video_sha256=sha256,
                             options=finish.options, duration=duration)

    plan_finish(plan, finish_request, creds, key_template, field="video.finish")


async def _run_chain(
    chain: Chain, plan: ChainPlan, routes: tuple[Route, Route], name: str | None,
    still_request: ImageRequest, review: ReviewSettings | None, progress: bool,
) -> ImageToVideoResult:
    """The chain's still (reviewed, when asked), then its video; the artifacts."""
    steps = ("still", "video", "finish") if plan.finish_check else ("still", "video")
    tracker = await BatchProgress.begin(
        len(steps), key="image-to-video-progress",
        description=f"image-to-video{f' {name!r}' if name else ''}", steps=steps,
    ) if progress else None

    async def make_still(
        shot: str | None, prepared: PreparedRequest, request: ImageRequest, label: str = "still",
    ) -> tuple[GenerationResult, StoredOutput]:
        return await chain.still(plan, name, routes[0], prepared, request, label)

    if review is not None:  # the still is made, shown, and animated only once a person says so
        try:
            still_result, still = await review_one(
                name or "still", still_request, plan.image_credentials, make_still, chain.store,
                review,
            )
        except ShotRejected as rejected:
            assert rejected.still is not None  # a rejected shot had its still shown
            await note_progress(tracker)  # the still is done; its video will not start
            return ImageToVideoResult(still=rejected.still, video=None, status="rejected")
        await note_progress(tracker)
    else:
        assert plan.still is not None
        still_result, still = await advance_quietly(
            tracker, make_still(name, plan.still, still_request))
    await publish_still(still, chain.store, name)
    try:
        video = await advance_quietly(tracker, chain.video(plan, name, routes, still_result, still))
    except NotStarted as exc:  # the still may have cost more than its estimate
        raise _over_budget(exc, still, "still") from None
    await publish_video_preview(video, chain.store, name)
    finished = None
    try:  # the finishing step, if the chain has one
        if plan.finish_check is not None:
            finished = await advance_quietly(tracker, chain.finish(plan, name, video))
    except NotStarted as exc:  # the steps before it may have cost more than their estimates
        raise _over_budget(exc, video, "video") from None
    await publish_outputs([o for o in (still, video, finished) if o], "image-to-video",
                          chain.store, name)
    return ImageToVideoResult(still=still, video=video, finished=finished)


def _over_budget(exc: NotStarted, made: StoredOutput, label: str) -> Exception:
    """A step not started once the step before it was paid for (it may have cost more than
    its estimate): the error saying what that step cost and where its output is stored."""
    if exc.unpriced:
        return exc
    cost = "an unknown amount" if made.cost is None else f"{made.cost:g} {made.cost_unit}"
    return BudgetExceeded(
        f"{exc.what} was not started: the {label} cost {cost} and it would pass "
        f"{exc.limit}; the {label} is stored at {made.location}",
        planned=exc.planned, budget=exc.budget,
    )
