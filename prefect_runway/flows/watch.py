"""What the flows tell a watcher in the same process about their jobs."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, ParamSpec, TypeVar

from prefect_runway.engine.events import emit_job, job_scope

__all__ = ["announce", "announce_chains", "watched_generation"]

P = ParamSpec("P")
R = TypeVar("R")


def announce(name: str | None, kind: str, provider: str, model: str) -> None:
    """A job this run will make, before anything is sent: ``queued``."""
    emit_job("queued", name=name, kind=kind, provider=provider, model=model)


def announce_chains(groups: Iterable[Sequence[Any]]) -> None:
    """A storyboard's jobs before any is sent: each distinct still once (named for the first
    shot that uses it, as it runs) and each distinct chain's video (its first shot's name).

    Args:
        groups: The shot plans (:class:`prefect_runway.flows.plan.ShotPlan`), grouped by chain.
    """
    stills: set[str] = set()
    for group in groups:
        plan = group[0]
        if plan.chain.still is not None and plan.still_key not in stills:
            stills.add(plan.still_key)
            announce(plan.name, "image", plan.image_credentials.provider_name, plan.chain.still.model)
        announce(plan.name, "video", plan.video_credentials.provider_name,
                 plan.chain.video_check.model)


def watched_generation(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Wrap :func:`prefect_runway.flows.generation.run_generation`: its events carry the shot's
    name and the job's kind, and it reports ``queued`` on entry, ``stored`` (with the stored
    key) on return and ``failed`` (with the error) when it raises."""

    @functools.wraps(fn)
    async def watched(*args: P.args, **kwargs: P.kwargs) -> R:
        prepared: Any = args[0] if args else kwargs.get("prepared")
        credentials: Any = args[1] if len(args) > 1 else kwargs.get("credentials")
        scope = {
            "name": kwargs.get("name"),
            "kind": getattr(prepared, "kind", None),
            "provider": getattr(credentials, "provider_name", None),
            "model": getattr(prepared, "model", None),
        }
        with job_scope(**{k: v for k, v in scope.items() if v is not None}):
            emit_job("queued", fingerprint=getattr(prepared, "fingerprint", None))
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                emit_job("failed", detail=f"{type(exc).__name__}: {exc}"[:300])
                raise
            stored = result[1] if isinstance(result, tuple) and len(result) > 1 else None
            first = stored[0] if stored else None
            emit_job("stored", first, detail=getattr(first, "key", None))
            return result

    return watched
