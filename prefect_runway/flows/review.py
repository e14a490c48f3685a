"""The review gate: a person looks at the stills and decides which are animated.

``image_to_video(..., review=True)`` and ``storyboard(..., review=True)`` stop between the
still and the video:

1. **The stills are made** (``storyboard(variants=N)``: N seeds per shot, each a distinct
   still) and **published** as a markdown artifact, ``review-stills``, the pictures inline
   (a presigned URL on S3, a small ``data:`` thumbnail elsewhere: see
   :func:`prefect_runway.artifacts.picture`), so they render on every storage.
2. **The flow run waits** for a :class:`ReviewDecision`, Prefect's interactive input: the
   UI shows a *Resume* form, one row per shot (``approve`` / ``reject`` / ``regenerate``,
   which variant, an optional new seed and an edited still prompt); from code,
   ``prefect.flow_runs.resume_flow_run(flow_run_id, run_input={"shots": [...]})``. A shot
   not named in the answer is rejected: nothing is spent without a yes.
3. **Only approved and regenerated shots are animated.** A regenerated still (the new seed
   and/or prompt) is made and animated at once, without a second review round: the person
   already said what they want; to look at it first, reject the shot and run it again with
   that seed. Rejected shots are reported as ``rejected``, not failed.

How it waits (``review_mode``):

* ``"pause"``: :func:`prefect.flow_runs.apause_flow_run` keeps the process (and so a worker)
  while it waits; the timeout policy is applied by this process.
* ``"suspend"``: :func:`prefect.flow_runs.asuspend_flow_run` ends the process, so no worker
  is held; on resume Prefect runs the flow **again from the start**. That second run finds
  the stills of the first in a flow-run input it saved before suspending
  (:data:`STILLS_INPUT_KEY`): nothing is submitted, polled or downloaded again for them (the
  cached submit task and the submission ledger would also refuse to pay twice). The
  suspension's timeout is kept by the Prefect server, which fails a run nobody resumed in
  time; no process is left to apply another policy, so ``suspend`` needs
  ``on_timeout="fail"``.
* ``"auto"`` (default): ``suspend`` when the flow run comes from a deployment (it has a
  ``deployment_id``) and ``on_timeout="fail"``, otherwise ``pause``.

The timeout policy (``on_timeout``) when nobody answers within ``review_timeout`` seconds:
``"fail"`` (default: the run fails with :class:`ReviewTimedOut`; nothing is animated),
``"reject"`` (every shot rejected; the run completes) or ``"approve"`` (every shot approved,
its first variant; the run goes on). In ``pause`` mode the policy's answer is recorded as
the run's input, as if a person had sent it.

After the wait a still's provider URL may have expired: the video step is handed the still
from storage (:func:`prefect_runway.flows.generation.still_reference`: a presigned S3 URL, a
URL refreshed from the provider, or a data URI of the stored copy), never the old URL.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pydantic
from prefect.input.actions import acreate_flow_run_input, aread_flow_run_input
from prefect.logging import get_run_logger
from pydantic import BaseModel

from prefect_runway.blocks.credentials import ProviderCredentials
from prefect_runway.blocks.requests import prepare
from prefect_runway.errors import BudgetExceeded, ReviewFailed, ShotRejected
from prefect_runway.flows.artifacts import publish_review, review_markdown
from prefect_runway.flows.review_form import (
    ReviewSettings,
    ShotDecision,
    flow_run_context,
    review_form,
    wait_for_review,
)
from prefect_runway.models import (
    GenerationResult,
    ImageRequest,
    StoredOutput,
)
from prefect_runway.providers.base import PreparedRequest
from prefect_runway.storage import OutputStorage

__all__ = [
    "MAX_DESCRIPTION_CHARS", "STILLS_INPUT_KEY", "MakeStill", "ReviewItem", "ReviewOutcome",
    "regenerate", "review_one", "review_stills", "review_storyboard", "reviewed_still",
]

#: The flow-run input holding the stills made before the wait (read again after a suspend).
STILLS_INPUT_KEY = "prefect-runway-review-stills"
#: A run-input description with inline pictures longer than this refers to the artifact.
MAX_DESCRIPTION_CHARS = 400_000


@dataclass
class ReviewItem:
    """A shot to review: its still's request and the provider that makes it.

    Attributes:
        name: The shot's name (how the form and the artifact call it).
        request: The still's request.
        credentials: The still's provider.
    """

    name: str
    request: ImageRequest
    credentials: ProviderCredentials

    def variant_requests(self, variants: int) -> list[PreparedRequest]:
        """The still's variants, prepared (see :meth:`variant_images`)."""
        return [prepare(image, self.credentials) for image in self.variant_images(variants)]

    def variant_images(self, variants: int) -> list[ImageRequest]:
        """The still's variants: the request itself when ``variants`` is 1; else
        ``variants`` distinct seeds (the shot's seed, then the next ones; without a seed,
        seeds derived from the request's fingerprint, so a re-run makes the same ones)."""
        if variants == 1:
            return [self.request]
        base = prepare(self.request, self.credentials)
        lo, hi = base.spec.seed_range
        span = hi - lo + 1
        out = []
        for i in range(variants):
            if self.request.seed is not None:
                seed = lo + (self.request.seed - lo + i) % span
            else:
                digest = hashlib.sha256(f"{base.fingerprint}|{i}".encode()).hexdigest()
                seed = lo + int(digest, 16) % span
            out.append(self.rebuilt(seed=seed))
        return out

    def rebuilt(self, seed: int | None = None, still_prompt: str | None = None) -> ImageRequest:
        """The still's request with another seed and/or prompt, checked.

        Raises:
            InvalidRequest: the edited request is invalid; nothing was sent.
        """
        fields = self.request.model_dump()
        if seed is not None:
            fields["seed"] = seed
        if still_prompt:
            fields["prompt"] = still_prompt
        return ImageRequest(**fields)

    def rebuild(self, seed: int | None = None, still_prompt: str | None = None) -> PreparedRequest:
        """:meth:`rebuilt`, prepared for the still's provider.

        Raises:
            InvalidRequest: the edited request is invalid for the provider; nothing was sent.
        """
        return prepare(self.rebuilt(seed, still_prompt), self.credentials)

    def random_seed(self) -> int:
        lo, hi = prepare(self.request, self.credentials).spec.seed_range
        return lo + secrets.randbelow(hi - lo + 1)


@dataclass
class ReviewOutcome:
    """What the review decided for one shot, and the still to animate.

    Attributes:
        name: The shot's name.
        status: ``approved``, ``regenerated`` (a new still was made; animate it),
            ``rejected`` or ``failed`` (its still could not be made).
        still: The still to animate (approved / regenerated), else the first one made.
        result: The still's job, for the handoff to the video step; its provider URLs are
            dropped (they may have expired during the wait), so the still is handed over
            from storage or by a URL refreshed from the provider.
        stills: Every still shown for the shot (its variants).
        error: Why the shot failed.
        refused: A budget's refusal of its still or its regeneration (nothing was sent).
    """

    name: str
    status: Literal["approved", "regenerated", "rejected", "failed"]
    still: StoredOutput | None = None
    result: GenerationResult | None = None
    stills: list[StoredOutput] = field(default_factory=list)
    error: str | None = None
    refused: BudgetExceeded | None = None

    @property
    def animate(self) -> bool:
        """Whether the shot goes on to the video step."""
        return self.status in ("approved", "regenerated")


#: ``(shot name, prepared still, its request, label) -> (its job, its stored still)``: how the
#: flow makes a still (the request is what a provider fallback prepares again; the label,
#: ``still``, ``still (variant 2)`` or ``regenerated still``, is how a budget's refusal
#: names it).
MakeStill = Callable[
    [str, PreparedRequest, ImageRequest, str], Awaitable[tuple[GenerationResult, StoredOutput]]
]


class _Made(BaseModel):
    """One still made before the wait (what :data:`STILLS_INPUT_KEY` holds, per variant)."""

    name: str
    variant: int
    result: GenerationResult | None = None
    still: StoredOutput | None = None
    error: str | None = None
    _exc: BaseException | None = pydantic.PrivateAttr(default=None)


async def _made_stills(
    items: Sequence[ReviewItem], make_still: MakeStill, variants: int,
    reused: Callable[[str, StoredOutput], Awaitable[None]] | None = None,
) -> list[_Made]:
    """The stills of every item: read back after a suspend, else made now (concurrently)."""
    logger = get_run_logger()
    flow_run_id = flow_run_context().flow_run.id  # type: ignore[union-attr]
    saved = await aread_flow_run_input(STILLS_INPUT_KEY, flow_run_id=flow_run_id)
    if saved is not None:
        made = [_Made.model_validate(m) for m in saved]
        logger.info(
            "Resumed review: %d still(s) made before the wait are reused from this flow run's "
            "input %r; nothing is submitted again", len(made), STILLS_INPUT_KEY,
        )
        if reused is not None:  # e.g. count what they cost against this run's budget
            for m in made:
                if m.still is not None:
                    await reused(m.name, m.still)
        return made

    async def one(item: ReviewItem, variant: int, image: ImageRequest) -> _Made:
        try:
            label = "still" if variants == 1 else f"still (variant {variant})"
            result, still = await make_still(
                item.name, prepare(image, item.credentials), image, label)
        except Exception as exc:  # one shot's failure is reported, not raised
            logger.warning("Shot %s: its still (variant %d) failed: %s", item.name, variant, exc)
            failed = _Made(name=item.name, variant=variant, error=f"{type(exc).__name__}: {exc}")
            failed._exc = exc
            return failed
        return _Made(name=item.name, variant=variant, result=result, still=still)

    jobs = [
        one(item, i, image)
        for item in items
        for i, image in enumerate(item.variant_images(variants), start=1)
    ]
    made = list(await asyncio.gather(*jobs))
    await acreate_flow_run_input(
        key=STILLS_INPUT_KEY, value=[m.model_dump(mode="json") for m in made],
        flow_run_id=flow_run_id,
    )
    return made


async def review_stills(
    items: Sequence[ReviewItem],
    make_still: MakeStill,
    store: OutputStorage,
    settings: ReviewSettings,
    *,
    title: str,
    raise_errors: bool = False,
    reused: Callable[[str, StoredOutput], Awaitable[None]] | None = None,
) -> dict[str, ReviewOutcome]:
    """Make the stills, publish them, wait for a decision, then regenerate what was asked.

    Call it inside a flow, after every request and setting was checked. See the module's
    docstring for the modes, the timeout policy and what happens on resume.

    Args:
        items: The shots to review, each named once.
        make_still: How the flow makes (and stores) one still.
        store: The run's storage (the artifact's pictures come from it).
        settings: From :func:`review_settings`.
        title: What is reviewed, for the artifact.
        raise_errors: Raise a still's failure (one chain) instead of reporting the shot
            as failed (a storyboard).
        reused: Called with ``(shot name, still)`` for each still made before a suspension
            and reused after it (not made again, so ``make_still`` does not see it).

    Returns:
        Shot name -> its outcome.

    Raises:
        ReviewTimedOut: nobody answered in time and ``on_timeout="fail"``.
    """
    made = await _made_stills(items, make_still, settings.variants, reused)
    failure = next((m._exc for m in made if m._exc is not None), None)
    if raise_errors and failure is not None:
        raise failure
    by_shot: dict[str, list[_Made]] = {}
    for m in made:
        by_shot.setdefault(m.name, []).append(m)
    outcomes = {item.name: _outcome_before(item, by_shot.get(item.name, [])) for item in items}
    reviewable = [item for item in items if outcomes[item.name].status != "failed"]
    if not reviewable:
        return outcomes
    decisions = await _ask(made, reviewable, outcomes, store, settings, title)
    regenerations = []
    for item in reviewable:
        decision = decisions.get(item.name)
        if decision is None or decision.decision == "reject":
            continue
        if decision.decision == "regenerate":
            regenerations.append(regenerate(item, decision, outcomes[item.name], make_still,
                                             raise_errors))
            continue
        _approve(outcomes[item.name], by_shot[item.name], decision)
    await asyncio.gather(*regenerations)
    return outcomes


def _outcome_before(item: ReviewItem, variants: Sequence[_Made]) -> ReviewOutcome:
    """A shot's outcome before the decision: rejected (its stills shown, nothing said yet),
    or failed when none of its stills was made."""
    stills = [m.still for m in variants if m.still is not None]
    if stills:
        return ReviewOutcome(item.name, "rejected", still=stills[0], stills=stills)
    error = next((m.error for m in variants if m.error), "no still was made")
    refused = next((m._exc for m in variants if isinstance(m._exc, BudgetExceeded)),
                   None)  # not sent: the shot is not started
    return ReviewOutcome(item.name, "failed", error=error, refused=refused)


async def _ask(
    made: Sequence[_Made], reviewable: Sequence[ReviewItem], outcomes: dict[str, ReviewOutcome],
    store: OutputStorage, settings: ReviewSettings, title: str,
) -> dict[str, ShotDecision]:
    """Publish the stills, wait for the answer (see :func:`wait_for_review`), log it.

    Returns:
        Shot name -> its decision (a shot not named is rejected).
    """
    text = await publish_review(made, store, title)
    names = [item.name for item in reviewable]
    if len(text) > MAX_DESCRIPTION_CHARS:
        text = await review_markdown(made, store, title, inline=False)
        text += "\nThe pictures are in the run's `review-stills` artifact.\n"
    form = review_form(names, settings.variants, description=text)
    all_stills = [s for o in outcomes.values() for s in o.stills]
    answer = await wait_for_review(form, names, settings, all_stills)
    decisions = answer.decisions()
    get_run_logger().info("Review decision: %s", ", ".join(
        f"{n}: {decisions[n].decision if n in decisions else 'reject (not named)'}"
        for n in names))
    return decisions


def _approve(outcome: ReviewOutcome, variants: Sequence[_Made], decision: ShotDecision) -> None:
    """The approved variant becomes the still to animate (failed when it has none)."""
    chosen = next((m for m in variants
                   if m.variant == decision.variant and m.still is not None), None)
    if chosen is None:
        outcome.status = "failed"
        outcome.error = f"variant {decision.variant} was approved but it has no still"
        return
    outcome.status, outcome.still = "approved", chosen.still
    outcome.result = _handoff(chosen.result)


async def regenerate(
    item: ReviewItem, decision: ShotDecision, outcome: ReviewOutcome, make_still: MakeStill,
    raise_errors: bool,
) -> None:
    """The review regeneration (one of :class:`prefect_runway.flows.retries.Retries`): make
    the shot's new still (the decision's seed and prompt); it is animated without another
    review. Its failure fails the shot (raised with ``raise_errors``)."""
    logger = get_run_logger()
    seed = decision.seed if decision.seed is not None else item.random_seed()
    try:
        image = item.rebuilt(seed=seed, still_prompt=decision.still_prompt)
        result, still = await make_still(item.name, item.rebuild(seed, decision.still_prompt),
                                         image, "regenerated still")
    except Exception as exc:  # this shot fails; the others go on
        if raise_errors:
            raise
        outcome.status, outcome.error = "failed", f"{type(exc).__name__}: {exc}"
        if isinstance(exc, BudgetExceeded):  # not sent: the shot is not started
            outcome.refused = exc
        logger.warning("Shot %s: its regenerated still failed: %s", item.name, exc)
        return
    logger.info("Shot %s: regenerated with seed %d; animating it without another review",
                item.name, seed)
    outcome.status, outcome.still, outcome.result = "regenerated", still, _handoff(result)
    outcome.stills.append(still)


def _handoff(result: GenerationResult | None) -> GenerationResult | None:
    """The still's job without its provider URLs: after a wait they may have expired, so the
    video step gets the stored still (presigned, refreshed from the provider, or a data URI)."""
    return None if result is None else result.model_copy(update={"outputs": []})


def reviewed_still(outcome: ReviewOutcome) -> tuple[GenerationResult, StoredOutput]:
    """The still to animate for a reviewed shot.

    Raises:
        ShotRejected: the shot was rejected (it carries the still shown).
        BudgetExceeded: its still (or its regeneration) would have passed a budget; it was
            not sent.
        ReviewFailed: the shot's still could not be made.
    """
    if outcome.refused is not None:
        raise outcome.refused
    if outcome.status == "rejected":
        raise ShotRejected(outcome.name, outcome.still)
    if outcome.status == "failed" or outcome.still is None or outcome.result is None:
        raise ReviewFailed(outcome.error or "no still to animate")
    return outcome.result, outcome.still


async def review_one(
    name: str,
    request: ImageRequest,
    credentials: ProviderCredentials,
    make_still: MakeStill,
    store: OutputStorage,
    settings: ReviewSettings,
) -> tuple[GenerationResult, StoredOutput]:
    """One chain's review (``image_to_video``): its still made, shown, decided on.

    Returns:
        The still to animate and its job (provider URLs dropped: see :func:`review_stills`).

    Raises:
        ShotRejected: the still was rejected.
        ReviewTimedOut: nobody answered in time and ``on_timeout="fail"``.
        Exception: the still (or its regeneration) failed, as ``make_still`` raised it.
    """
    outcomes = await review_stills(
        [ReviewItem(name, request, credentials)], make_still, store, settings,
        title="image-to-video", raise_errors=True,
    )
    return reviewed_still(outcomes[name])


async def review_storyboard(
    groups: Sequence[Sequence[Any]],
    make_still: Callable[
        [Any, PreparedRequest, ImageRequest, str],
        Awaitable[tuple[GenerationResult, StoredOutput]],
    ],
    store: OutputStorage,
    settings: ReviewSettings,
    reused: Callable[[Any, StoredOutput], Awaitable[None]] | None = None,
) -> dict[str, ReviewOutcome]:
    """A storyboard's review: one item per distinct shot (identical shots are reviewed once,
    under the first one's name; a name two different shots share gets ``#row``).

    Args:
        groups: The storyboard's groups of identical :class:`~prefect_runway.plan.ShotPlan`.
        make_still: ``(plan, prepared still, its request, label) -> (job, stored still)``.
        store: The run's storage.
        settings: From :func:`review_settings`.
        reused: ``(plan, still)`` for each still reused after a suspension.

    Returns:
        Chain key -> the outcome of its shot.
    """
    firsts = [group[0] for group in groups]
    counts: dict[str, int] = {}
    for plan in firsts:
        counts[plan.name] = counts.get(plan.name, 0) + 1
    by_name = {}
    items = []
    for plan in firsts:
        name = plan.name if counts[plan.name] == 1 else f"{plan.name}#{plan.row}"
        by_name[name] = plan
        items.append(ReviewItem(name, plan.shot.still_request(), plan.image_credentials))

    async def make(
        name: str, request: PreparedRequest, image: ImageRequest, label: str,
    ) -> tuple[GenerationResult, StoredOutput]:
        return await make_still(by_name[name], request, image, label)

    async def on_reused(name: str, still: StoredOutput) -> None:
        if reused is not None:
            await reused(by_name[name], still)

    outcomes = await review_stills(items, make, store, settings, title="storyboard",
                                   reused=on_reused)
    return {by_name[name].chain_key: outcome for name, outcome in outcomes.items()}
