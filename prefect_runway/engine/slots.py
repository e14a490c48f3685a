"""Places per event loop, their number read from an environment variable.

Two bounds of one process's work use it: output bodies streaming at once
(``PREFECT_RUNWAY_MAX_DOWNLOADS``, :mod:`prefect_runway.engine.download`) and this package's
Prefect task runs open at once (``PREFECT_RUNWAY_MAX_TASK_RUNS``, :mod:`prefect_runway.limits`).
Each event loop (a flow run's) has its own places; a changed setting makes new ones, and
what holds an old one finishes under it.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref

from prefect_runway.errors import InvalidRequest

__all__ = ["LoopSlots"]

#: The largest value any of these settings accepts.
MAXIMUM = 10_000


class LoopSlots:
    """At most ``os.environ[env]`` (1 to 10000; ``default`` when unset) holders at once per
    event loop.

    Args:
        env: The environment variable that sets the number.
        default: The number when it is unset or empty.
        what: What is counted, for the error (``"downloads"``).
    """

    def __init__(self, env: str, default: int, what: str) -> None:
        self.env, self.default, self.what = env, default, what
        self._lock = threading.Lock()
        self._held: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[int, asyncio.Semaphore]
        ] = weakref.WeakKeyDictionary()

    def limit(self) -> int:
        """The setting's value.

        Raises:
            InvalidRequest: the variable holds anything but a whole number from 1 to 10000
                (named, with what it allows).
        """
        raw = os.environ.get(self.env, "").strip()
        if not raw:
            return self.default
        value = int(raw) if raw.isdigit() else 0
        if not 1 <= value <= MAXIMUM:
            raise InvalidRequest(self.env, f"{raw!r} is not a number of {self.what}",
                                 allowed=f"1 to {MAXIMUM}")
        return value

    def semaphore(self) -> asyncio.Semaphore:
        """The running event loop's places, :meth:`limit` of them."""
        loop = asyncio.get_running_loop()
        limit = self.limit()
        with self._lock:
            held = self._held.get(loop)
            if held is None or held[0] != limit:
                held = self._held[loop] = (limit, asyncio.Semaphore(limit))
            return held[1]
