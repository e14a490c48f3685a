"""Where the engine's messages go (the caller's logger, else the module's), and job events."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "JOB_STATES",
    "EngineLogger",
    "JobEvent",
    "emit_job",
    "job_scope",
    "log_to",
    "subscribe",
    "subscribed",
]

_TARGET: ContextVar[Any] = ContextVar("prefect_runway_engine_log", default=None)

#: What a watcher is told of a job, in the order a job goes through them.
JOB_STATES = ("queued", "submitted", "running", "throttled", "downloading", "stored", "failed")


@dataclass(frozen=True)
class JobEvent:
    """One step of one job, as a watcher in the same process sees it.

    Attributes:
        state: One of :data:`JOB_STATES`.
        kind: ``image`` or ``video``.
        name: The shot's name (the flows' ``name``), where there is one.
        provider: ``segmind``, ``aimlapi`` or ``runway``.
        model: The Runway model.
        job_id: The provider's job id, once submitted.
        fingerprint: The request's fingerprint, once prepared.
        progress: The provider's own progress, 0-1, where it reports one.
        age: Seconds since the job was submitted, at ``at``.
        expected: ``(low, high)``: the seconds such a job usually takes (the latency book).
        detail: A short note (the provider's raw status, an error, the stored key).
        at: ``time.monotonic()`` when the event was made.
    """

    state: str
    kind: str | None = None
    name: str | None = None
    provider: str | None = None
    model: str | None = None
    job_id: str | None = None
    fingerprint: str | None = None
    progress: float | None = None
    age: float | None = None
    expected: tuple[float, float] | None = None
    detail: str | None = None
    at: float = field(default_factory=time.monotonic)

    @property
    def slot(self) -> tuple[str, str]:
        """What the event is about, across resubmits: ``(shot name, kind)``."""
        return (self.name or "", self.kind or "job")


_SCOPE: ContextVar[dict[str, Any] | None] = ContextVar("prefect_runway_job_scope", default=None)
_SUBSCRIBERS: list[Callable[[JobEvent], Any]] = []
_SUBSCRIBERS_LOCK = threading.Lock()


def subscribe(callback: Callable[[JobEvent], Any]) -> Callable[[], None]:
    """Call ``callback`` with every :class:`JobEvent` of this process; returns the unsubscribe.

    The callback runs in the thread (and event loop) of the job that made the event: keep it
    short and do not block. What it raises is logged at DEBUG and otherwise ignored.
    """
    with _SUBSCRIBERS_LOCK:
        _SUBSCRIBERS.append(callback)

    def unsubscribe() -> None:
        with _SUBSCRIBERS_LOCK:
            if callback in _SUBSCRIBERS:
                _SUBSCRIBERS.remove(callback)

    return unsubscribe


@contextmanager
def subscribed(callback: Callable[[JobEvent], Any]) -> Iterator[None]:
    """:func:`subscribe` inside the block."""
    unsubscribe = subscribe(callback)
    try:
        yield
    finally:
        unsubscribe()


@contextmanager
def job_scope(**fields: Any) -> Iterator[None]:
    """Events made inside the block (by the engine, in the tasks) carry these fields where
    they give none themselves: the flows name the shot and kind of the job they run."""
    token = _SCOPE.set({**(_SCOPE.get() or {}), **fields})
    try:
        yield
    finally:
        _SCOPE.reset(token)


def emit_job(state: str, generation: Any = None, **fields: Any) -> None:
    """Tell every subscriber that a job reached ``state``; never raises.

    Args:
        state: One of :data:`JOB_STATES`.
        generation: A :class:`~prefect_runway.models.Generation` (or anything with its
            ``provider``, ``model``, ``kind``, ``job_id`` and ``fingerprint``), if known.
        **fields: Further :class:`JobEvent` fields; they win over the generation's.
    """
    if not _SUBSCRIBERS:
        return
    try:
        values: dict[str, Any] = dict(_SCOPE.get() or {})
        if generation is not None:
            for name in ("provider", "model", "kind", "job_id", "fingerprint"):
                value = getattr(generation, name, None)
                if value is not None:
                    values[name] = value
        values.update({k: v for k, v in fields.items() if v is not None})
        event = JobEvent(state=state, **{k: v for k, v in values.items()
                                          if k in JobEvent.__dataclass_fields__})
    except Exception:  # noqa: BLE001 - watching never fails a job
        logging.getLogger(__name__).debug("Could not make a job event", exc_info=True)
        return
    with _SUBSCRIBERS_LOCK:
        subscribers = list(_SUBSCRIBERS)
    for callback in subscribers:
        try:
            callback(event)
        except Exception:  # noqa: BLE001 - watching never fails a job
            logging.getLogger(__name__).debug("A job event subscriber failed", exc_info=True)


@contextmanager
def log_to(logger: logging.Logger | logging.LoggerAdapter[Any] | None) -> Iterator[None]:
    """Send the engine's messages to ``logger`` (e.g. a Prefect run logger) inside the block.

    Args:
        logger: A logger or logger adapter; None leaves the engine's own loggers in place.
    """
    token = _TARGET.set(logger)
    try:
        yield
    finally:
        _TARGET.reset(token)


class EngineLogger:
    """A stdlib-logger lookalike that writes to the :func:`log_to` target when one is set.

    Args:
        name: The stdlib logger used outside :func:`log_to`.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.fallback = logging.getLogger(name)

    def _target(self) -> Any:
        return _TARGET.get() or self.fallback

    def log(self, level: int, msg: str, *args: Any, **kwargs: Any) -> None:
        self._target().log(level, msg, *args, **kwargs)

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._target().debug(msg, *args, **kwargs)

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._target().info(msg, *args, **kwargs)

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._target().warning(msg, *args, **kwargs)

    def error(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._target().error(msg, *args, **kwargs)

    def exception(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._target().exception(msg, *args, **kwargs)

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - the stdlib's name
        return bool(self._target().isEnabledFor(level))
