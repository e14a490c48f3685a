"""Count what a flow costs the orchestrator: the Prefect API requests and events it sends."""

from __future__ import annotations

import inspect
import re
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

#: (method or "*", path pattern under the API root, kind), first match wins.
HTTP_KINDS: tuple[tuple[str, str, str], ...] = (
    ("POST", rf"/(flow|task)_runs/{_UUID}/set_state", "state transitions"),
    ("POST", r"/(flow|task)_runs/?", "runs created"),
    ("*", r"/logs/?", "logs"),
    ("*", r"/artifacts(/.*)?", "artifacts"),
    ("*", r"/(v2/)?concurrency_limits(/.*)?", "concurrency"),
    ("*", r"/block_(documents|types|schemas)(/.*)?", "blocks"),
    ("*", r"/(flow|task)_runs/.*", "run reads and updates"),
    ("*", r"/flows(/.*)?", "flows"),
    ("*", r"/(deployments|work_pools|work_queues)(/.*)?", "deployments and pools"),
    ("*", r"/(health|admin/version|csrf-token)(/.*)?", "health and version"),
)


def http_kind(method: str, path: str) -> str:
    """The kind of a Prefect API request, from its method and path under the API root."""
    for wanted, pattern, kind in HTTP_KINDS:
        if wanted in ("*", method) and re.fullmatch(pattern, path):
            return kind
    return "other"


def event_kind(name: str) -> str:
    """The kind of a Prefect event, from its name."""
    if re.fullmatch(r"prefect\.(task|flow)-run\..*", name):
        return "state transitions"
    if name.startswith("prefect.concurrency-limit."):
        return "concurrency"
    if name.startswith("prefect.artifact"):
        return "artifacts"
    return name.rsplit(".", 1)[0] if name.count(".") > 1 else name


@dataclass
class ApiCalls:
    """What the process sent to the Prefect API while counting.

    Attributes:
        http: REST requests by kind (see :data:`HTTP_KINDS`).
        events: Events by kind (task and flow run state changes, concurrency, ...).
        paths: REST requests by ``METHOD /path`` with ids replaced by ``{id}``.
    """

    http: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    paths: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def requests(self) -> int:
        """REST requests in all."""
        return sum(self.http.values())

    @property
    def total(self) -> int:
        """REST requests plus events: every message the orchestrator had to take."""
        return self.requests + sum(self.events.values())

    def by_kind(self) -> dict[str, int]:
        """REST requests and events added up per kind, largest first."""
        merged = Counter(self.http)
        merged.update(self.events)
        return dict(merged.most_common())

    def per_generation(self, generations: int) -> float:
        """Messages per generation (REST requests + events)."""
        return self.total / max(generations, 1)

    def table(self, generations: int | None = None) -> str:
        """A plain-text table: kind, REST requests, events (and per generation)."""
        kinds = sorted(set(self.http) | set(self.events), key=lambda k: -(self.http[k] + self.events[k]))
        head = ["kind", "requests", "events"] + (["per generation"] if generations else [])
        rows = [[k, str(self.http[k]), str(self.events[k])] + (
            [f"{(self.http[k] + self.events[k]) / generations:.2f}"] if generations else []
        ) for k in kinds]
        rows.append(["total", str(self.requests), str(sum(self.events.values()))] + (
            [f"{self.per_generation(generations):.2f}"] if generations else []))
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [head, *rows])

    def _count_request(self, request: httpx.Request, api_path: str) -> None:
        path = request.url.path
        if not path.startswith(api_path):
            return
        sub = path[len(api_path):] or "/"
        kind = http_kind(request.method, sub)
        shape = re.sub(_UUID, "{id}", sub)
        with self._lock:
            self.http[kind] += 1
            self.paths[f"{request.method} {shape}"] += 1

    def _count_event(self, name: str) -> None:
        with self._lock:
            self.events[event_kind(name)] += 1


async def flush_prefect_workers(timeout: float = 60) -> None:
    """Send what Prefect's background workers still hold (events, log batches), so that a
    count read right after a run is complete."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (EventsWorker, APILogWorker):
        pending = worker.drain_all(timeout=timeout)
        if inspect.isawaitable(pending):  # drain_all is awaitable when called on a loop
            await pending


@contextmanager
def count_prefect_api_calls(api_url: str | None = None) -> Iterator[ApiCalls]:
    """Count the Prefect API requests and events this process sends inside the block.

    Args:
        api_url: The Prefect API URL (default: the current ``PREFECT_API_URL`` setting, read
            when the first request is sent, so a temporary server started later counts too).

    Yields:
        The running :class:`ApiCalls`, filled in as requests and events go out.
    """
    from prefect.events.worker import EventsWorker
    from prefect.settings import get_current_settings

    calls = ApiCalls()

    def targets() -> list[tuple[str, int | None, str]]:
        urls = [api_url or get_current_settings().api.url]
        if not api_url:  # Prefect's temporary server, started on first use
            from prefect.server.api.server import SubprocessASGIServer

            urls += [server.api_url for server in list(SubprocessASGIServer._instances.values())
                     if getattr(server, "running", False)]
        parsed = [httpx.URL(url) for url in urls if url]
        return [(p.host, p.port, p.path.rstrip("/")) for p in parsed]

    def counted(request: httpx.Request) -> None:
        for host, port, path in targets():
            if (request.url.host, request.url.port) == (host, port):
                calls._count_request(request, path)
                return

    original_async, original_sync = httpx.AsyncClient.send, httpx.Client.send
    original_handle = EventsWorker._handle

    async def async_send(self: httpx.AsyncClient, request: httpx.Request, *args: Any, **kw: Any) -> Any:
        counted(request)
        return await original_async(self, request, *args, **kw)

    def sync_send(self: httpx.Client, request: httpx.Request, *args: Any, **kw: Any) -> Any:
        counted(request)
        return original_sync(self, request, *args, **kw)

    async def handle(self: EventsWorker, event: Any) -> Any:
        calls._count_event(event.event)
        return await original_handle(self, event)

    httpx.AsyncClient.send = async_send  # type: ignore[method-assign]
    httpx.Client.send = sync_send  # type: ignore[method-assign]
    EventsWorker._handle = handle  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        httpx.AsyncClient.send = original_async  # type: ignore[method-assign]
        httpx.Client.send = original_sync  # type: ignore[method-assign]
        EventsWorker._handle = original_handle  # type: ignore[method-assign]


__all__ = ["ApiCalls", "count_prefect_api_calls", "event_kind", "flush_prefect_workers", "http_kind"]
