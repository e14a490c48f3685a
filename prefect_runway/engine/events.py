"""Where the engine's messages go: the caller's logger while it says so, else the module's.

The engine imports nothing from Prefect, yet what it has to say (a state change, a retry and
its reason, a download resumed with HTTP Range, a cancellation, progress while waiting)
belongs in the run's logs. Each engine module logs through an :class:`EngineLogger`; inside
:func:`log_to` (the tasks pass Prefect's run logger) its records go to that logger, and
outside it to the stdlib logger of the module's name (``prefect_runway.engine.*``).

The target is held in a context variable, so concurrent tasks of one process (a storyboard
runs many chains at once) each log to their own run, and asyncio tasks started inside
:func:`log_to` inherit it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = ["EngineLogger", "current_target", "log_to"]

_TARGET: ContextVar[Any] = ContextVar("prefect_runway_engine_log", default=None)


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


def current_target() -> Any:
    """The logger set by the innermost :func:`log_to`, or None."""
    return _TARGET.get()


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
