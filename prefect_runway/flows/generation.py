"""Flows: ``generate_image``, ``animate_image``, ``text_to_video`` and the chain
``image_to_video``."""

from typing import Any

from prefect_runway.blocks.credentials import ProviderCredentials
from prefect_runway.blocks.requests import load_credentials, prepare, reseeder, upload_images
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
from prefect_runway.flows.retries import run_generation
from prefect_runway.flows.review import review_one
from prefect_runway.flows.review_form import ReviewSettings, review_settings
from prefect_runway.flows.routing import load_route
from prefect_runway.flows.watch import announce
from prefect_runway.models import (
    PLACEHOLDER_IMAGE,
    FinishRequest,
    GenerationResult,
    ImageRequest,
    ReferenceImage,
    Request,
    StoredOutput,
    TextToVideoRequest,
    VideoRequest,
)
from prefect_runway.money.budget import Budget, BudgetGuard
from prefect_runway.money.cost_plan import Attempts, CostPlan, plan_costs
from prefect_runway.money.daily import budget_guard
from prefect_runway.providers.base import PreparedRequest
from prefect_runway.storage import OutputStorage, resolve_storage
from prefect_runway.tasks.runs import flow_run_id

__all__ = ["animate_image", "generate_image", "image_to_video", "text_to_video"]


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
    options: dict[str, Any] | None = None,
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
        options: The model's own options (Runway's API), e.g. ``{"output_format": "png"}``.

    Returns:
        The stored, verified still.
    """
    credentials = await load_credentials(credentials)
    store = resolve_storage(storage)
    request: Request = ImageRequest(
        prompt=prompt, reference_images=reference_images or [], ratio=ratio, seed=seed,
        options=options or {},
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
    options: dict[str, Any] | None = None,
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
        options: The model's own options (Runway's API), e.g. ``{"audio": True}`` for veo3.1.

    Returns:
        The stored, verified video.
    """
    credentials = await load_credentials(credentials)
    store = resolve_storage(storage)
    request: Request = VideoRequest(
        image=image, prompt=prompt, model=model, ratio=ratio, duration=duration, seed=seed,
        last_image=last_image, options=options or {},
    )
    stored = await _one_request(
        request, credentials, store, key_template=key_template, name=name, preview=preview,
        upload=upload, timeout=timeout, force=force, queue_timeout=queue_timeout,
        retry_unsafe_output=retry_unsafe_output, resubmit_internal=resubmit_internal,
    )
    await publish_video_preview(stored[0], store, name)
    await publish_outputs(stored, f"{model} video", store, name)
    return stored[0]


@runway_flow(name="text-to-video", on_cancellation=[cancel_remote_jobs])
async def text_to_video(
    prompt: str,
    credentials: ProviderCredentials | str,
    model: str = "gen4.5",
    ratio: str | None = None,
    duration: int = 5,
    seed: int | None = None,
    options: dict[str, Any] | None = None,
    storage: Any = None,
    budget: float | str | None = None,
    key_template: str | None = None,
    name: str | None = None,
    timeout: float | None = None,
    force: bool = False,
    preview: str | None = "gif",
    queue_timeout: float | None = None,
    retry_unsafe_output: int = 0,
    resubmit_internal: bool = True,
) -> StoredOutput:
    """A video from a prompt alone, no still (Runway's ``text_to_video``: gen4.5, veo3.1, ...).

    Args:
        prompt: What the video shows.
        credentials: Runway's credentials block (or ``"block-type/name"``).
        model: A text_to_video model of Runway's API (``gen4.5``: 1280:720 or 720:1280).
        ratio: Output ratio, one the model takes (the model's default when None).
        duration: Seconds, as the model takes them (gen4.5: 2-10; veo3.1: 4, 6 or 8).
        seed: Seed (provider's random when None).
        options: The model's own options, e.g. ``{"audio": False}`` for veo3.1.
        storage: Directory, ``s3://bucket/prefix`` or filesystem block.
        budget: This run's cap (a number in the provider's unit or ``"USD 5.00"``): a job
            that would pass it, or whose price is unknown, is not sent.
        key_template: Storage key template.
        name: Value of ``{name}`` in the key template.
        timeout: Wait deadline in seconds.
        force: Submit a new job even if the same request is cached.
        preview: The video's preview stored beside it: ``"gif"``, ``"png"`` or None.
        queue_timeout: How long a job may sit THROTTLED, in seconds (not counted against
            ``timeout``; default: the block's).
        retry_unsafe_output: How many times an output rejected by moderation is retried
            with a new random seed (each a new, billed job); 0: never.
        resubmit_internal: Resubmit a job that failed internally once (not when the
            provider says it was charged).

    Returns:
        The stored, verified video.

    Raises:
        NotStarted: the job would pass ``budget`` or has no known price; nothing was sent.
    """
    credentials = await load_credentials(credentials)
    store = resolve_storage(storage)
    request: Request = TextToVideoRequest(
        prompt=prompt, model=model, ratio=ratio, duration=duration, seed=seed,
        options=options or {},
    )
    guard = budget_guard(Budget.parse(budget), [credentials], store, flow_run_id())
    stored = await _one_request(
        request, credentials, store, key_template=key_template, name=name, preview=preview,
        upload=False, timeout=timeout, force=force, queue_timeout=queue_timeout,
        retry_unsafe_output=retry_unsafe_output, resubmit_internal=resubmit_internal,
        guard=guard, what="the video",
    )
    await publish_video_preview(stored[0], store, name)
    await publish_outputs(stored, f"{model} text-to-video", store, name)
    return stored[0]


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
