"""A review's settings, its form (one decision per shot) and the wait for the answer."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pydantic
from prefect.context import FlowRunContext
from prefect.exceptions import NotPausedError
from prefect.flow_runs import apause_flow_run, aresume_flow_run, asuspend_flow_run
from prefect.input import RunInput, keyset_from_base_key
from prefect.logging import get_run_logger
from pydantic import BaseModel, Field

from prefect_runway.errors import InvalidRequest, ReviewTimedOut
from prefect_runway.models import SEED_MAX, StoredOutput, seconds_value

__all__ = [
    "DEFAULT_REVIEW_TIMEOUT", "MAX_VARIANTS", "ON_TIMEOUT", "REVIEW_KEY", "REVIEW_MODES",
    "ReviewDecision", "ReviewSettings", "ShotDecision", "check_review_parameters",
    "flow_run_context", "plain_optional", "review_form", "review_settings", "timeout_answer", "wait_for_review",
    "wait_mode",
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
#: In ``pause`` mode the Prefect pause outlives this process's own timer by this much, so
#: that the policy's answer can still resume the run when the time is up.
PAUSE_GRACE_SECONDS = 60

Decision = Literal["approve", "reject", "regenerate"]


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


def plain_optional(schema: dict[str, Any]) -> None:
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
        json_schema_extra=plain_optional,
    )
    still_prompt: str | None = Field(
        default=None, description="regenerate: the new still's prompt (empty: the shot's own).",
        json_schema_extra=plain_optional,
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


def flow_run_context() -> FlowRunContext:
    """The flow run's context (a review runs inside a flow run)."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise RuntimeError("a review runs inside a flow run")
    return context


def wait_mode(settings: ReviewSettings) -> str:
    """``"pause"`` or ``"suspend"``: the mode asked for, or what ``auto`` picks for this run."""
    if settings.mode != "auto":
        return settings.mode
    flow_run = flow_run_context().flow_run
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
        flow_run_context().flow_run, "deployment_id", None
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
    flow_run_id = flow_run_context().flow_run.id  # type: ignore[union-attr]
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
