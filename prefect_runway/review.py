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
import math
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pydantic
from prefect.context import FlowRunContext
from prefect.exceptions import NotPausedError
from prefect.flow_runs import apause_flow_run, aresume_flow_run, asuspend_flow_run
from prefect.input import RunInput, keyset_from_base_key
from prefect.input.actions import acreate_flow_run_input, aread_flow_run_input
from prefect.logging import get_run_logger
from pydantic import BaseModel, Field

from prefect_runway.artifacts import _code, _md, picture
from prefect_runway.blocks.credentials import ProviderCredentials
from prefect_runway.errors import BudgetExceeded, InvalidRequest, PrefectRunwayError
from prefect_runway.models import (
    SEED_MAX,
    GenerationResult,
    ImageRequest,
    StoredOutput,
    seconds_value,
)
from prefect_runway.plan import PreparedRequest, prepare
from prefect_runway.storage import OutputStorage

__all__ = [
    "DEFAULT_REVIEW_TIMEOUT", "ON_TIMEOUT", "REVIEW_MODES", "ReviewDecision", "ReviewItem",
    "ReviewFailed", "ReviewOutcome", "ReviewSettings", "ReviewTimedOut", "ShotDecision",
    "ShotRejected", "review_form", "review_one", "review_settings", "review_stills",
    "review_storyboard",
    "reviewed_still",
]

#: How long a review waits by default, in seconds.
DEFAULT_REVIEW_TIMEOUT = 3600.0
#: The allowed ``on_timeout`` policies.
ON_TIMEOUT = ("fail", "reject", "approve")
#: The allowed ``review_mode`` values.
REVIEW_MODES = ("auto", "pause", "suspend")
#: The most stills per shot (``variants``).
MAX_VARIANTS = 8
#: The pause key of the review (the run input's keys derive from it).
REVIEW_KEY = "prefect-runway-review"
#: The flow-run input holding the stills made before the wait (read again after a suspend).
STILLS_INPUT_KEY = "prefect-runway-review-stills"
#: The artifact showing the stills.
REVIEW_ARTIFACT_KEY = "review-stills"
#: In ``pause`` mode the Prefect pause outlives this process's own timer by this much, so
#: that the policy's answer can still resume the run when the time is up.
PAUSE_GRACE_SECONDS = 60
#: A run-input description with inline pictures longer than this refers to the artifact.
MAX_DESCRIPTION_CHARS = 400_000

Decision = Literal["approve", "reject", "regenerate"]


class ReviewTimedOut(PrefectRunwayError):
    """Nobody answered the review within ``review_timeout`` and ``on_timeout="fail"``.

    Attributes:
        stills: The stills that were waiting for a decision (stored; nothing was animated).
    """

    def __init__(self, message: str, stills: Sequence[StoredOutput] = ()) -> None:
        super().__init__(message)
        self.stills = list(stills)


@dataclass(frozen=True)
class ReviewSettings:
    """A review's checked settings (see :func:`review_settings`)."""

    timeout: float = DEFAULT_REVIEW_TIMEOUT
    on_timeout: str = "fail"
    mode: str = "auto"
    variants: int = 1


def review_settings(
    review_timeout: Any = DEFAULT_REVIEW_TIMEOUT,
    on_timeout: Any = "fail",
    review_mode: Any = "auto",
    variants: Any = 1,
    *,
    review: Any = True,
) -> ReviewSettings:
    """Check a review's settings, before anything is sent.

    ``review`` says whether the run reviews at all: ``variants`` other than 1 need it.

    Raises:
        InvalidRequest: naming the field and the allowed values.
    """
    seconds = seconds_value("review_timeout", review_timeout)
    if on_timeout not in ON_TIMEOUT:
        raise InvalidRequest("on_timeout", f"{on_timeout!r} is not a policy", allowed=ON_TIMEOUT)
    if review_mode not in REVIEW_MODES:
        raise InvalidRequest("review_mode", f"{review_mode!r} is not a mode", allowed=REVIEW_MODES)
    if review_mode == "suspend" and on_timeout != "fail":
        raise InvalidRequest(
            "on_timeout", f"{on_timeout!r} cannot be applied to a suspended run (no process is "
            "left to apply it; the Prefect server fails a suspension that times out)",
            allowed="'fail' with review_mode='suspend'; 'reject' or 'approve' with "
                    "review_mode='pause' or 'auto'",
        )
    if isinstance(variants, bool) or not isinstance(variants, int) and not (
        isinstance(variants, str) and variants.strip().isdigit()
    ):
        raise InvalidRequest("variants", f"{variants!r} is not a whole number",
                             allowed=f"1-{MAX_VARIANTS}")
    count = int(variants)
    if not 1 <= count <= MAX_VARIANTS:
        raise InvalidRequest("variants", f"{count} is out of range", allowed=f"1-{MAX_VARIANTS}")
    if count != 1 and review is False:
        raise InvalidRequest("variants", f"{count} stills per shot are only made for a review",
                             allowed=f"1 without review; 1-{MAX_VARIANTS} with review=True")
    return ReviewSettings(timeout=seconds, on_timeout=on_timeout, mode=review_mode,
                          variants=count)


def check_review_parameters(parameters: Mapping[str, Any]) -> None:
    """:func:`review_settings` on a flow's parameters, where present (see
    :func:`prefect_runway.flows.parameters.check_parameters`)."""
    names = ("review_timeout", "on_timeout", "review_mode", "variants", "review")
    if any(name in parameters for name in names):
        review_settings(**{name: parameters[name] for name in names if name in parameters})


# --- the form -------------------------------------------------------------------------


def _plain_optional(schema: dict[str, Any]) -> None:
    """Show an optional field in Prefect's form as a plain input, left empty to leave it out.

    Pydantic describes ``int | None`` as ``anyOf: [integer, null]`` with ``default: null``,
    which the UI renders as a type switch (``int`` / ``None``) reading *Property is type
    "None"*. Dropping the ``null`` branch and the null default gives a plain input; an empty
    input is not sent, and the model still reads a missing value as None.
    """
    branches = [b for b in schema.pop("anyOf", []) if b.get("type") != "null"]
    if len(branches) == 1:
        schema.update(branches[0])
    if "default" in schema and schema["default"] is None:
        del schema["default"]


class ShotDecision(BaseModel):
    """One shot's decision."""

    shot: str = Field(description="The shot's name, as in the review-stills artifact.")
    decision: Decision = Field(
        default="approve",
        description="approve: animate the chosen still; reject: animate nothing; "
                    "regenerate: make a new still (new seed and/or prompt), then animate it.",
    )
    variant: int = Field(default=1, ge=1, description="Which still to animate (1 = the first).")
    seed: int | None = Field(
        default=None, ge=0, le=SEED_MAX,
        description="regenerate: the new still's seed (empty: a new random seed).",
        json_schema_extra=_plain_optional,
    )
    still_prompt: str | None = Field(
        default=None, description="regenerate: the new still's prompt (empty: the shot's own).",
        json_schema_extra=_plain_optional,
    )


class ReviewDecision(RunInput):
    """The review's answer: one decision per shot; a shot not named is rejected."""

    shots: list[ShotDecision] = Field(description="One decision per shot.")

    def decisions(self) -> dict[str, ShotDecision]:
        """Shot name -> its decision (a shot named twice: the last one)."""
        return {d.shot: d for d in self.shots}


def review_form(
    names: Sequence[str], variants: int = 1, description: str | None = None
) -> type[ReviewDecision]:
    """The :class:`ReviewDecision` form for these shots: the shot names as a choice, the
    variant bounded, every shot pre-filled as ``approve`` in the UI.

    The answer must name its shots (``shots`` is required), so resuming the run without an
    answer is refused by the Prefect server rather than taken as a yes.
    """
    if not names:
        raise ValueError("a review needs at least one shot")
    choice: Any = Literal[tuple(names)]  # type: ignore[valid-type]
    shot_model = pydantic.create_model(
        "ShotDecision",
        __base__=ShotDecision,
        shot=(choice, Field(description="The shot's name, as in the review-stills artifact.")),
        variant=(int, Field(default=1, ge=1, le=variants,
                            description=f"Which still to animate, 1-{variants}.")),
    )
    prefill: list[Any] = [{"shot": name, "decision": "approve", "variant": 1} for name in names]
    form: type[ReviewDecision] = pydantic.create_model(
        "ReviewDecision",
        __base__=ReviewDecision,
        shots=(list[shot_model], Field(  # type: ignore[valid-type]
            description="One decision per shot; a shot not named is rejected.",
            json_schema_extra={"default": prefill},
        )),
    )
    if description is not None:
        form._description = description  # type: ignore[assignment]
    return form


def timeout_answer(names: Sequence[str], policy: str) -> dict[str, Any]:
    """The answer a timeout policy gives: every shot approved (first variant) or rejected."""
    decision = "approve" if policy == "approve" else "reject"
    return {"shots": [{"shot": name, "decision": decision, "variant": 1} for name in names]}


# --- the stills -----------------------------------------------------------------------


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


def _flow_run_context() -> FlowRunContext:
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise RuntimeError("a review runs inside a flow run")
    return context


async def _made_stills(
    items: Sequence[ReviewItem], make_still: MakeStill, variants: int,
    reused: Callable[[str, StoredOutput], Awaitable[None]] | None = None,
) -> list[_Made]:
    """The stills of every item: read back after a suspend, else made now (concurrently)."""
    logger = get_run_logger()
    flow_run_id = _flow_run_context().flow_run.id  # type: ignore[union-attr]
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


async def review_markdown(
    made: Sequence[_Made], store: OutputStorage, title: str, *, inline: bool = True
) -> str:
    """The stills as markdown: per shot, each variant's picture, seed and stored key."""
    lines = [f"# Review: {_md(title)}", "",
             "Approve, reject or regenerate each shot in the flow run's **Resume** form "
             "(or with `resume_flow_run(flow_run_id, run_input={\"shots\": [...]})`); "
             "a shot not named is rejected.", ""]
    by_shot: dict[str, list[_Made]] = {}
    for m in made:
        by_shot.setdefault(m.name, []).append(m)
    for name, variants in by_shot.items():
        lines += [f"## {_md(name)}", ""]
        for m in variants:
            if m.still is None:
                lines.append(f"- variant {m.variant}: failed: {_md(m.error)}")
                continue
            seed = m.still.request.get("seed")
            label = f"variant {m.variant}" + (f", seed {seed}" if seed is not None else "")
            shown = await picture(store, m.still.key, m.still.media_type, m.still.size) if inline else None
            if shown is not None:
                lines.append(f"**{label}**\n\n![{_md(name)} {label}]({shown[0]})\n")
            # A blank line after the item: the next variant's label is not read as its
            # continuation (indented under it).
            lines.append(f"- {label}: {_code(m.still.key)} ({m.still.provider} job "
                         f"{_code(m.still.job_id)})\n")
        lines.append("")
    return "\n".join(lines)


async def publish_review(made: Sequence[_Made], store: OutputStorage, title: str) -> str:
    """Publish the stills for review (the ``review-stills`` artifact); returns its markdown."""
    from prefect.artifacts import acreate_markdown_artifact

    text = await review_markdown(made, store, title)
    shots = len({m.name for m in made})
    await acreate_markdown_artifact(
        markdown=text, key=REVIEW_ARTIFACT_KEY,
        description=f"{title}: {len(made)} still(s) of {shots} shot(s) for review",
    )
    return text


# --- the wait -------------------------------------------------------------------------


def wait_mode(settings: ReviewSettings) -> str:
    """``"pause"`` or ``"suspend"``: the mode asked for, or what ``auto`` picks for this run."""
    if settings.mode != "auto":
        return settings.mode
    flow_run = _flow_run_context().flow_run
    if getattr(flow_run, "deployment_id", None) and settings.on_timeout == "fail":
        return "suspend"
    return "pause"


def _poll_seconds(timeout: float) -> int:
    return max(1, min(10, int(timeout // 30)))


async def wait_for_review(
    form: type[ReviewDecision], names: Sequence[str], settings: ReviewSettings,
    stills: Sequence[StoredOutput] = (),
) -> ReviewDecision:
    """Wait for the review's answer, as ``settings`` say (see the module's docstring).

    Raises:
        ReviewTimedOut: nobody answered in time and the policy is ``fail`` (pause mode; in
            suspend mode the Prefect server fails the run).
    """
    logger = get_run_logger()
    mode = wait_mode(settings)
    seconds = int(math.ceil(settings.timeout))
    if mode == "pause" and settings.mode == "auto" and getattr(
        _flow_run_context().flow_run, "deployment_id", None
    ):
        logger.info("This run holds its worker while it waits: on_timeout=%r needs a live "
                    "process (on_timeout='fail' would suspend instead)", settings.on_timeout)
    if mode == "suspend":
        logger.info("Suspending for review: nothing runs (no worker is held) until the run is "
                    "resumed with a decision, for at most %d s", seconds)
        return await asuspend_flow_run(wait_for_input=form, timeout=seconds, key=REVIEW_KEY)
    logger.info("Pausing for review for at most %d s (then: %s)", seconds, settings.on_timeout)
    try:
        return await asyncio.wait_for(
            apause_flow_run(wait_for_input=form, timeout=seconds + PAUSE_GRACE_SECONDS,
                            poll_interval=_poll_seconds(settings.timeout), key=REVIEW_KEY),
            settings.timeout,
        )
    except asyncio.TimeoutError:
        pass
    flow_run_id = _flow_run_context().flow_run.id  # type: ignore[union-attr]
    if settings.on_timeout == "fail":
        message = (f"no review decision within {seconds} s (on_timeout='fail'); nothing was "
                   f"animated; {len(stills)} still(s) are stored")
        logger.error("%s", message)
        raise ReviewTimedOut(message, stills)
    answer = timeout_answer(names, settings.on_timeout)
    try:
        await aresume_flow_run(flow_run_id, run_input=answer)
    except NotPausedError:  # a person answered just now: theirs holds
        logger.info("The review was answered as its time ran out; taking that answer")
        keyset = keyset_from_base_key(f"paused-{REVIEW_KEY}")
        return await form.aload(keyset, flow_run_id=flow_run_id)
    logger.warning("No review decision within %d s: every shot %s (on_timeout=%r)", seconds,
                   "approved" if settings.on_timeout == "approve" else "rejected",
                   settings.on_timeout)
    return form(**answer)


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
    logger = get_run_logger()
    made = await _made_stills(items, make_still, settings.variants, reused)
    failure = next((m._exc for m in made if m._exc is not None), None)
    if raise_errors and failure is not None:
        raise failure
    outcomes: dict[str, ReviewOutcome] = {}
    by_shot: dict[str, list[_Made]] = {}
    for m in made:
        by_shot.setdefault(m.name, []).append(m)
    reviewable = []
    for item in items:
        variants = by_shot.get(item.name, [])
        stills = [m.still for m in variants if m.still is not None]
        if not stills:
            error = next((m.error for m in variants if m.error), "no still was made")
            refused = next((m._exc for m in variants if isinstance(m._exc, BudgetExceeded)),
                           None)  # not sent: the shot is not started
            outcomes[item.name] = ReviewOutcome(item.name, "failed", error=error,
                                                refused=refused)
        else:
            reviewable.append(item)
            outcomes[item.name] = ReviewOutcome(item.name, "rejected", still=stills[0],
                                                stills=stills)
    if not reviewable:
        return outcomes

    text = await publish_review(made, store, title)
    names = [item.name for item in reviewable]
    if len(text) > MAX_DESCRIPTION_CHARS:
        text = await review_markdown(made, store, title, inline=False)
        text += "\nThe pictures are in the run's `review-stills` artifact.\n"
    form = review_form(names, settings.variants, description=text)
    all_stills = [s for o in outcomes.values() for s in o.stills]
    answer = await wait_for_review(form, names, settings, all_stills)
    decisions = answer.decisions()
    logger.info("Review decision: %s", ", ".join(
        f"{n}: {decisions[n].decision if n in decisions else 'reject (not named)'}"
        for n in names))

    async def regenerate(item: ReviewItem, decision: ShotDecision) -> None:
        outcome = outcomes[item.name]
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

    regenerations = []
    for item in reviewable:
        decision = decisions.get(item.name)
        outcome = outcomes[item.name]
        if decision is None or decision.decision == "reject":
            continue
        if decision.decision == "regenerate":
            regenerations.append(regenerate(item, decision))
            continue
        chosen = next((m for m in by_shot[item.name]
                       if m.variant == decision.variant and m.still is not None), None)
        if chosen is None:
            outcome.status = "failed"
            outcome.error = f"variant {decision.variant} was approved but it has no still"
            continue
        outcome.status, outcome.still = "approved", chosen.still
        outcome.result = _handoff(chosen.result)
    await asyncio.gather(*regenerations)
    return outcomes


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


class ShotRejected(PrefectRunwayError):
    """A shot was rejected at review (not a failure: nothing was animated, as asked)."""

    def __init__(self, name: str, still: StoredOutput | None) -> None:
        super().__init__(f"shot {name!r} was rejected at review; nothing was animated")
        self.still = still


class ReviewFailed(PrefectRunwayError):
    """A reviewed shot's still (or its regeneration) could not be made."""


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
