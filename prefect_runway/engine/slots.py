"""Places per event loop, their number a setting read when places are taken (the downloads
streaming at once, this package's task runs open at once)."""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable

__all__ = ["LoopSlots"]


class LoopSlots:
    """At most ``limit()`` holders at once per event loop.

    Args:
        limit: The number of places (a setting, read when places are taken: a changed
            setting makes new places, and what holds an old one finishes under it).
    """

    def __init__(self, limit: Callable[[], int]) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._held: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[int, asyncio.Semaphore]
        ] = weakref.WeakKeyDictionary()

    def semaphore(self) -> asyncio.Semaphore:
        """The running event loop's places, :meth:`limit` of them."""
        loop = asyncio.get_running_loop()
        limit = self.limit()
        with self._lock:
            held = self._held.get(loop)
            if held is None or held[0] != limit:
                held = self._held[loop] = (limit, asyncio.Semaphore(limit))
            return held[1]
