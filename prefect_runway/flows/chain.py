"""The one still -> video (-> finished video) chain, run by ``image_to_video`` and every
storyboard shot: the run's money checked once, then per chain each step's input handed on
(a still, a prompt alone, a given frame, a made video) and each job through ``run_generation``."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from prefect.logging import get_run_logger

from prefect_runway.blocks.credentials import ProviderCredentials
from prefect_runway.blocks.requests import prepare, reseeder, upload_images
from prefect_runway.errors import (
    GenerationExpired,
    InsufficientCredits,
    InvalidRequest,
    PrefectRunwayError,
)
from prefect_runway.flows.doubts import Doubt
from prefect_runway.flows.fallback import Route, balance_covered, same_request
from prefect_runway.flows.plan import ChainPlan
from prefect_runway.flows.retries import run_generation
from prefect_runway.models import (
    GenerationResult,
    ImageRequest,
    Request,
    StoredOutput,
    bytes_to_data_uri,
)
from prefect_runway.money.balances import check_balances as read_balances
from prefect_runway.money.budget import Budget, BudgetGuard
from prefect_runway.money.cost_plan import CostPlan
from prefect_runway.money.daily import budget_guard
from prefect_runway.providers.base import PreparedRequest, Provider
from prefect_runway.providers.runway import MAX_UPLOAD_BYTES
from prefect_runway.providers.wire import PendingUpload, data_uri_length
from prefect_runway.storage import OutputStorage, resolve_storage
from prefect_runway.tasks.runs import flow_run_id

__all__ = ["FRESH_URL_SECONDS", "HANDOFF_URL_SECONDS", "Chain", "JobOptions", "check_balances",
           "guard_run", "still_reference", "video_reference"]

#: How old a provider output URL may be before it is refreshed from the provider.
FRESH_URL_SECONDS = 600
#: How long a presigned URL handing a stored still to the video provider stays valid.
HANDOFF_URL_SECONDS = 900

#: ``(provider, model) -> async context``: a place a job holds while it runs.
Slot = Callable[[str, str], AbstractAsyncContextManager[Any]]


@dataclass(frozen=True)
class JobOptions:
    """What every job of a flow run is run with (see :func:`run_generation`)."""

    key_template: str | None = None
    timeout: float | None = None
    force: bool = False
    preview: str | None = "gif"
    queue_timeout: float | None = None
    retry_unsafe_output: int = 0
    resubmit_internal: bool = True
    upload: bool = False


@dataclass
class Chain:
    """What the chains of one flow run share (storage, options, budget guard, slots), and
    how each runs: :meth:`still`, then :meth:`video` of it.

    Attributes:
        store: The run's resolved storage.
        options: The jobs' options.
        guard: The run's budget guard (:func:`guard_run`).
        doubts: Where submissions in doubt are noted (a storyboard's summary); None: each
            published as the run's ``submission-doubts`` artifact.
        slot: A place each job holds while it runs (a storyboard's provider and model
            limits); None: none.
        article: How a budget's refusal names a step: ``the still``, ``its video``.
    """

    store: OutputStorage
    options: JobOptions
    guard: BudgetGuard | None
    doubts: list[Doubt] | None = None
    slot: Slot | None = None
    article: str = "the"

    def _held(self, provider: str, model: str) -> AbstractAsyncContextManager[Any]:
        return self.slot(provider, model) if self.slot else contextlib.nullcontext()

    async def still(
        self, plan: ChainPlan, name: str | None, route: Route,
        prepared: PreparedRequest | None = None, request: ImageRequest | None = None,
        label: str = "still",
    ) -> tuple[GenerationResult, StoredOutput]:
        """Make and store the chain's still (or, from a review, a variant or its
        regeneration: ``prepared`` and ``request``, named by ``label``)."""
        prepared = prepared or plan.still
        request = request or plan.still_request  # type: ignore[assignment]
        assert request is not None and prepared is not None
        credentials, options = plan.image_credentials, self.options
        async with self._held(credentials.provider_name, prepared.model):
            result, stored = await run_generation(
                prepared, credentials, storage=self.store, key_template=options.key_template,
                name=name, timeout=options.timeout, force=options.force,
                reseed=reseeder(request, credentials), queue_timeout=options.queue_timeout,
                retry_unsafe_output=options.retry_unsafe_output,
                resubmit_internal=options.resubmit_internal,
                fallback=route.runtime(same_request(request), name), guard=self.guard,
                what=f"{self.article} {label}", doubts=self.doubts,
            )
        return result, stored[0]

    async def video(
        self, plan: ChainPlan, name: str | None, routes: tuple[Route, Route],
        still_result: GenerationResult, still: StoredOutput,
    ) -> StoredOutput:
        """Hand the stored still to the video provider (:func:`still_reference`), then make
        and store the video; ``routes``: the still's and the video's."""
        made_on = routes[0].credentials_for(still.provider)  # where the still was made

        async def handed(creds: ProviderCredentials) -> str:
            return await still_reference(still, still_result, made_on, creds, self.store,
                                         upload=self.options.upload)

        return await self.animate(plan, name, routes[1], handed, still.sha256, after=still_result)

    async def animate(
        self, plan: ChainPlan, name: str | None, route: Route,
        handed: Callable[[ProviderCredentials], Awaitable[str]], image_sha256: str | None,
        after: GenerationResult | None = None,
    ) -> StoredOutput:
        """Make and store the video of a first frame whose bytes hash to ``image_sha256``:
        ``handed(credentials)`` is how each provider of ``route`` receives it (a URL or a
        data URI, uploaded where needed: :func:`upload_images`)."""
        credentials, upload = plan.video_credentials, self.options.upload

        async def video_for(creds: ProviderCredentials) -> Request:  # a fallback's request
            return await upload_images(plan.video_request(await handed(creds), image_sha256),
                                       creds, upload=upload)

        step = await plan.video_request_uploading(await handed(credentials), image_sha256,
                                                  upload=upload)
        return await self._video_job(plan, prepare(step, credentials), step,
                                     route.runtime(video_for, name), name, after)

    async def text_video(self, plan: ChainPlan, name: str | None, route: Route) -> StoredOutput:
        """Make and store a text-to-video chain's video (its request is whole: no still)."""
        request = plan.text_request
        assert request is not None
        return await self._video_job(plan, plan.video_check, request,
                                     route.runtime(same_request(request), name), name)

    async def _video_job(
        self, plan: ChainPlan, prepared: PreparedRequest, request: Request, fallback: Any,
        name: str | None, after: GenerationResult | None = None,
    ) -> StoredOutput:
        credentials, options = plan.video_credentials, self.options
        async with self._held(credentials.provider_name, prepared.model):
            _, stored = await run_generation(
                prepared, credentials, storage=self.store, key_template=options.key_template,
                name=name, timeout=options.timeout, force=options.force,
                preview=options.preview, reseed=reseeder(request, credentials),
                queue_timeout=options.queue_timeout,
                retry_unsafe_output=options.retry_unsafe_output,
                resubmit_internal=options.resubmit_internal, fallback=fallback, after=after,
                guard=self.guard, what=f"{self.article} video", doubts=self.doubts,
            )
        return stored[0]

    async def finish(self, plan: ChainPlan, name: str | None,
                     video: StoredOutput) -> StoredOutput | None:
        """The chain's finishing step, if it has one: the stored video handed to Runway
        (:func:`video_reference`), finished, and stored beside it, its sidecar naming the
        video it was made from (``lineage``)."""
        if plan.finish_request is None or plan.finish_credentials is None:
            return None
        credentials, options = plan.finish_credentials, self.options
        source = await video_reference(video, credentials, self.store, upload=options.upload)
        request = plan.finish_request(source, video.sha256, video.request.get("duration"))
        prepared = prepare(request, credentials)
        async with self._held(credentials.provider_name, prepared.model):
            _, stored = await run_generation(
                prepared, credentials, storage=self.store, key_template=options.key_template,
                name=name, timeout=options.timeout, force=options.force,
                preview=options.preview, queue_timeout=options.queue_timeout,
                resubmit_internal=options.resubmit_internal, guard=self.guard,
                what=f"{self.article} finished video", doubts=self.doubts,
            )
        return await self.store.annotated(stored[0], lineage={
            "key": video.key, "location": video.location, "sha256": video.sha256})


async def video_reference(
    video: StoredOutput, credentials: ProviderCredentials, storage: OutputStorage, *,
    upload: bool = False,
) -> str:
    """How Runway should receive a stored video for its finishing step: a presigned URL of
    it (S3 storage; valid :data:`HANDOFF_URL_SECONDS`), else a data URI where it fits one
    (unless ``upload``), else an ephemeral ``runway://`` upload (at most Runway's upload
    limit).

    Raises:
        InvalidRequest: the video is larger than an upload takes, or cannot be read back.
    """
    provider = credentials.provider()
    presigned = None if upload else await storage.presigned_url(video.key, HANDOFF_URL_SECONDS)
    if presigned:
        return presigned
    if video.size > MAX_UPLOAD_BYTES:
        raise InvalidRequest("finish.video", f"the video is {video.size} bytes",
                             allowed=f"at most {MAX_UPLOAD_BYTES} bytes, or store outputs in "
                             "S3 (storage='s3://bucket/prefix') to hand it on as a URL")
    data = await storage.read_bytes(video.key)
    if data is None:
        raise InvalidRequest("finish.video", f"the stored video {video.location} cannot be "
                             "read back", allowed="a storage the run can read")
    fits = data_uri_length(len(data), video.media_type) <= provider.max_data_uri_bytes
    if fits and not upload:
        return bytes_to_data_uri(data, video.media_type)
    pending = PendingUpload(field="video", data=data, media_type=video.media_type,
                            sha256=video.sha256, filename=video.key.rsplit("/", 1)[-1])
    async with credentials.get_client() as client:
        return await client.upload(pending)


async def guard_run(
    cost_plan: CostPlan, cap: Budget | None, providers: Iterable[ProviderCredentials],
    store: OutputStorage, chains: Sequence[Any],
) -> BudgetGuard | None:
    """The run's money before its first submit: the plan within ``cap`` and within each
    block's daily budget; returns the guard every submit of the run is priced against.

    Raises:
        BudgetExceeded: the plan costs more than ``cap`` or a block has left today.
    """
    if cap is not None:
        cap.check(cost_plan)
    guard = budget_guard(cap, providers, store, flow_run_id())
    if guard is not None and guard.daily:  # each block's cap per UTC day, with today's spend
        await guard.daily.check(cost_plan, chains)
    return guard


async def check_balances(
    cost_plan: CostPlan, credentials: Iterable[ProviderCredentials],
    routes: Iterable[Route | None] = (),
) -> dict[str, Any]:
    """Refuse a plan a provider's balance cannot pay (unless its steps have a fallback); a
    balance that cannot be read is skipped.

    Returns:
        The balances read, per provider (their per-model limits bound a storyboard's jobs).

    Raises:
        InsufficientCredits: a balance cannot pay the plan, and its steps have no fallback.
    """
    logger = get_run_logger()
    try:
        balances = await read_balances(cost_plan, list(credentials))
    except InsufficientCredits as exc:
        if balance_covered(exc, routes, logger):
            return {}
        raise
    except (PrefectRunwayError, OSError) as exc:
        logger.warning("Could not read a provider's balance; not checked: %s", exc)
        return {}
    for provider, balance in sorted(balances.items()):
        logger.info("%s balance: %s %s", provider, balance.credits, balance.unit)
    return dict(balances)


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
    return type(credentials.provider()).upload_call is not Provider.upload_call


def _age(result: GenerationResult) -> timedelta:
    return datetime.now(timezone.utc) - result.completed_at

