"""What the tasks share: their runs' names, their logs in the run, the current flow run."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from prefect.context import FlowRunContext
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger

from prefect_runway.engine.events import log_to
from prefect_runway.models import GenerationResult
from prefect_runway.models.runway_api import RUNWAY_API

__all__ = [
    "describe_job", "failure_of", "flow_run_id", "generation_run_name", "kind_label",
    "logs_to_run", "provider_of", "run_logger",
]

P = ParamSpec("P")
R = TypeVar("R")


def kind_label(kind: str | None) -> str:
    """``still`` for an image, ``video`` for a video."""
    return {"image": "still", "video": "video"}.get(kind or "", kind or "job")


def describe_job(kind: str | None, name: str | None, provider: str | None,
                 model: str | None = None) -> str:
    """What a job is, for a task run's name: ``still 'harbour' on segmind``; a finishing
    step's (an upscale's ``model``) is ``finish 'harbour' on runway``."""
    label = "finish" if model in RUNWAY_API["video_upscale"] else kind_label(kind)
    if name:
        label += f" {name!r}"
    return f"{label} on {provider}" if provider else label


def provider_of(credentials: Any) -> str | None:
    """The provider of a credentials block (None for anything else)."""
    return getattr(credentials, "provider_name", None)


def generation_run_name(verb: str, key: str) -> Callable[..., str]:
    """A task run name from the job in parameter ``key``: ``f"{verb} still 'harbour' on segmind"``."""
    def name(parameters: dict[str, Any]) -> str:
        generation = parameters.get(key)
        if isinstance(generation, GenerationResult):
            generation = generation.generation
        return f"{verb} " + describe_job(
            getattr(generation, "kind", None), parameters.get("name"),
            getattr(generation, "provider", None) or provider_of(parameters.get("credentials")),
            getattr(generation, "model", None),
        )

    return name


def logs_to_run(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Run ``fn`` with the engine's messages (state changes, retries, resumed downloads,
    progress) going to the task run's logger (see :mod:`prefect_runway.engine.events`)."""

    @functools.wraps(fn)
    async def logged(*args: P.args, **kwargs: P.kwargs) -> R:
        with log_to(run_logger()):
            return await fn(*args, **kwargs)

    return logged


def run_logger() -> Any:
    """The current run's logger, or None outside a run (the engine keeps its own loggers)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return None


async def failure_of(state: Any) -> BaseException | None:
    """The exception a failed task run's state holds, or None."""
    if isinstance(state.data, BaseException):
        return state.data
    try:
        await state.aresult()
    except BaseException as exc:  # noqa: BLE001 - we only classify it
        return exc
    return None


def flow_run_id() -> str | None:
    """The current flow run's id, or None outside a flow run."""
    ctx = FlowRunContext.get()
    return str(ctx.flow_run.id) if ctx and ctx.flow_run else None
