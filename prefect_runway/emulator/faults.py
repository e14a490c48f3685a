"""Injected faults: what production shows, on demand.

A `FaultPlan` says which faults to inject; `FaultMiddleware` consults it before every
provider route and media download (never the `/_emulator/*` control routes). Set it with
`Emulator.set_faults(...)` or `POST /_emulator/faults` (JSON of the same shape); clear it
with `DELETE /_emulator/faults` or `Emulator.clear_faults()`.

Fault kinds:

    "429", "500", "502", "503", "504", ... any HTTP status >= 400: an error in the provider's
        own error shape (429 and 503 carry `Retry-After`); the route's handler does not run.
    "reset"        the connection is dropped (TCP reset) before any answer; the handler does
                   not run, so nothing happened (e.g. no job was created).
    "reset_after"  the handler runs (a submit DOES create the job), then the connection is
                   dropped before the answer: the ambiguous outcome of a timed-out POST.
    "truncate"     the full headers (with the full Content-Length) and half the body are
                   sent, then the connection is dropped (a broken download).

One switch per provider, consulted first:

    providers           {"segmind": "unavailable", "aimlapi": "empty"}: per provider one of
        "unavailable"          every API route of the provider answers 503 (provider's error
                               shape, Retry-After) - an outage; media downloads still work;
        "submits_unavailable"  only its job-creating routes (segmind.submit, segmind.sync,
                               aimlapi.submit, runway.submit, runway.uploads) answer 503;
        "empty"                its accounts read 0 and every submit answers the provider's
                               insufficient-credits error (Segmind 406, AIMLAPI 403, Runway
                               400), as the backend would when a balance cannot pay.
                        Other providers serve normally. From the start:
                        `Emulator(faults={"providers": {...}})` or `--faults '{"providers":
                        {"segmind": "unavailable"}}'`; at run time: POST /_emulator/faults.

Three more sources, consulted in this order:

    scripted            [{"route": "segmind.status", "nth": 2, "fault": "503"}, ...] - the
                        nth call (1-based, counted from when the plan was set) to a route,
                        and the `times - 1` calls after it. `route` may be a glob
                        ("runway.*", "*"). Optional `delay` seconds before the fault.
    rate_limit_per_key  requests per second per (provider, API key), a token bucket of
                        `rate_limit_burst` (default: the rate, at least 1); over it: 429 with
                        Retry-After. Applies to the API routes, not to media downloads.
    random              {"429": 0.1, "502": 0.05, "reset": 0.03, "truncate": 0.02}: a
                        probability per request, from a generator seeded with `seed`, over
                        the routes matching `random_routes` (default all).

Route names: segmind.submit, segmind.status, segmind.result, segmind.sync, aimlapi.submit,
aimlapi.status, aimlapi.billing, runway.submit, runway.status, runway.cancel,
runway.uploads, runway.upload (the presigned form target), runway.organization,
segmind.credits, media.download.
"""

from __future__ import annotations

import asyncio
import fnmatch
import math
import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .backend import Backend
from .clock import Clock

SPECIAL_FAULTS = ("reset", "reset_after", "truncate")

ROUTES = (
    "segmind.submit",
    "segmind.status",
    "segmind.result",
    "segmind.sync",
    "aimlapi.submit",
    "aimlapi.status",
    "aimlapi.billing",
    "runway.submit",
    "runway.status",
    "runway.cancel",
    "runway.uploads",
    "runway.upload",
    "runway.organization",
    "segmind.credits",
    "media.download",
)
SUBMIT_ROUTES = frozenset(
    {"segmind.submit", "segmind.sync", "aimlapi.submit", "runway.submit", "runway.uploads"}
)
ProviderMode = Literal["up", "unavailable", "submits_unavailable", "empty"]

FAULT_MESSAGES = {
    429: "Too many requests",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service temporarily unavailable",
    504: "Gateway timeout",
}


def _check_kind(kind: str) -> str:
    if kind in SPECIAL_FAULTS:
        return kind
    if kind.isdigit() and 400 <= int(kind) <= 599:
        return kind
    raise ValueError(f"unknown fault {kind!r}: an HTTP status 400-599 or one of {SPECIAL_FAULTS}")


class ScriptedFault(BaseModel):
    """Inject `fault` on calls nth .. nth+times-1 of `route`."""

    model_config = ConfigDict(extra="forbid")

    route: str = Field(description="Route name or glob, e.g. 'segmind.status' or 'runway.*'.")
    fault: str = Field(description="HTTP status (e.g. '503') or reset / reset_after / truncate.")
    nth: int = Field(default=1, ge=1, description="First call (1-based) that gets the fault.")
    times: int = Field(default=1, ge=1, description="How many consecutive calls get it.")
    delay: float = Field(default=0.0, ge=0, description="Seconds to stall before the fault.")

    @field_validator("fault")
    @classmethod
    def _check_fault(cls, value: str) -> str:
        return _check_kind(value)


class FaultPlan(BaseModel):
    """Which faults to inject (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    providers: dict[Literal["segmind", "aimlapi", "runway"], ProviderMode] = Field(
        default_factory=dict,
        description="One switch per provider (see the module docstring).",
    )
    scripted: list[ScriptedFault] = Field(default_factory=list)
    rate_limit_per_key: float | None = Field(default=None, gt=0)
    rate_limit_burst: int | None = Field(default=None, ge=1)
    random: dict[str, float] = Field(default_factory=dict)
    random_routes: list[str] = Field(default_factory=lambda: ["*"])
    seed: int = 0
    retry_after: float = Field(
        default=1.0, ge=0,
        description="Retry-After of 429/503 faults, in whole seconds (rounded up; 0 is sent as 0).",
    )

    @field_validator("random")
    @classmethod
    def _check_random(cls, value: dict[str, float]) -> dict[str, float]:
        for kind, probability in value.items():
            _check_kind(kind)
            if not 0 <= probability <= 1:
                raise ValueError(f"probability of {kind!r} must be within 0..1")
        if sum(value.values()) > 1:
            raise ValueError("random fault probabilities add up to more than 1")
        return value

    @property
    def empty(self) -> bool:
        return not (
            self.scripted or self.rate_limit_per_key or any(self.random.values())
            or any(mode != "up" for mode in self.providers.values())
        )


@dataclass(frozen=True)
class Fault:
    """A decision to misbehave on one request."""

    kind: str
    source: str
    retry_after: float | None = None
    delay: float = 0.0

    @property
    def status(self) -> int | None:
        return int(self.kind) if self.kind.isdigit() else None


class FaultState:
    """The active plan and its counters (thread-safe)."""

    def __init__(self, clock: Clock, backend: Backend | None = None) -> None:
        """`backend` (if given) learns which providers the plan switches `empty`."""
        self._clock = clock
        self._backend = backend
        self._lock = threading.Lock()
        self.set(FaultPlan())

    def set(self, plan: FaultPlan) -> None:
        if self._backend is not None:
            self._backend.empty_providers = frozenset(
                provider for provider, mode in plan.providers.items() if mode == "empty"
            )
        with self._lock:
            self.plan = plan
            self._calls: Counter[str] = Counter()
            self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
            self._rng = random.Random(plan.seed)
            self.injected: Counter[str] = Counter()

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "plan": self.plan.model_dump(mode="json"),
                "calls": dict(self._calls),
                "injected": dict(self.injected),
            }

    def decide(self, route: str, key: str | None) -> Fault | None:
        """Count a call to `route` and say whether (and how) it should fail."""
        with self._lock:
            self._calls[route] += 1
            plan = self.plan
            if plan.empty:
                return None
            count = self._calls[route]
            fault = None
            modes: dict[str, str] = {str(k): v for k, v in plan.providers.items()}
            mode = modes.get(route.split(".")[0], "up")
            if mode == "unavailable" or (
                mode == "submits_unavailable" and route in SUBMIT_ROUTES
            ):
                fault = Fault("503", "provider", plan.retry_after)
            for scripted in [] if fault else plan.scripted:
                if fnmatch.fnmatchcase(route, scripted.route) and (
                    scripted.nth <= count < scripted.nth + scripted.times
                ):
                    fault = Fault(scripted.fault, "scripted", plan.retry_after, scripted.delay)
                    break
            if fault is None and plan.rate_limit_per_key and route != "media.download":
                fault = self._rate_limit(plan, route.split(".")[0], key or "")
            if fault is None and plan.random and any(
                fnmatch.fnmatchcase(route, pattern) for pattern in plan.random_routes
            ):
                draw = self._rng.random()
                total = 0.0
                for kind, probability in plan.random.items():
                    total += probability
                    if draw < total:
                        fault = Fault(kind, "random", plan.retry_after)
                        break
            if fault is not None:
                self.injected[fault.kind] += 1
            return fault

    def _rate_limit(self, plan: FaultPlan, provider: str, key: str) -> Fault | None:
        rate = plan.rate_limit_per_key
        assert rate is not None
        capacity = float(plan.rate_limit_burst or max(1, math.floor(rate)))
        now = self._clock.monotonic()
        tokens, last = self._buckets.get((provider, key), (capacity, now))
        tokens = min(capacity, tokens + (now - last) * rate)
        if tokens >= 1:
            self._buckets[(provider, key)] = (tokens - 1, now)
            return None
        self._buckets[(provider, key)] = (tokens, now)
        wait = (1 - tokens) / rate
        return Fault("429", "rate_limit", retry_after=wait)


ErrorFactory = Callable[..., Response]


def _api_key(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-api-key":
            return value.decode("latin-1")
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return None


async def abort_connection(send: Send, *, graceful: bool = False) -> None:
    """Drop the client's connection now.

    By default with a TCP reset (anything unsent is discarded); `graceful` flushes what was
    already sent and then closes (FIN), so a client sees a body cut short.
    """
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise ConnectionAbortedError("fault injection: connection dropped")
    if graceful:
        transport.close()
    else:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:  # linger 0: close with RST instead of FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        transport.abort()
    # Let the server notice the connection is gone before the app returns (else it logs).
    for _ in range(200):
        await asyncio.sleep(0 if not graceful else 0.005)
        if getattr(cycle, "disconnected", True):
            break


class FaultMiddleware:
    """Pure ASGI middleware that injects the faults the `FaultState` decides on."""

    def __init__(
        self,
        app: ASGIApp,
        routes: list,
        backend: Backend,
        state: FaultState,
        error_factories: dict[str, ErrorFactory],
    ) -> None:
        self.app = app
        self.routes = routes
        self.backend = backend
        self.state = state
        self.error_factories = error_factories

    def _route(self, scope: Scope) -> tuple[str | None, dict[str, Any]]:
        for route in self.routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                return route.name, child.get("path_params", {})
        return None, {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        name, params = self._route(scope)
        if name is None or name.startswith("emulator."):
            await self.app(scope, receive, send)
            return
        fault = self.state.decide(name, _api_key(scope))
        if fault is None:
            await self.app(scope, receive, send)
            return
        if name == "media.download":
            provider = self.backend.provider_of_media(params.get("media_id", "")) or "segmind"
        else:
            provider = name.split(".")[0]
        self.backend.record_fault(provider, fault.kind)
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.status is not None:
            await self._error(scope, receive, send, provider, fault)
        elif fault.kind == "reset":
            await abort_connection(send)
        elif fault.kind == "reset_after":
            await self.app(scope, receive, _discard)
            await abort_connection(send)
        elif fault.kind == "truncate":
            await self._truncate(scope, receive, send)

    async def _error(
        self, scope: Scope, receive: Receive, send: Send, provider: str, fault: Fault
    ) -> None:
        status = fault.status
        assert status is not None
        headers = {}
        if status in (429, 503) and fault.retry_after is not None:
            headers["Retry-After"] = str(math.ceil(fault.retry_after))
        message = FAULT_MESSAGES.get(status, f"Injected fault {status}")
        if provider in self.error_factories and not scope["path"].startswith("/_emulator/"):
            response = self.error_factories[provider](
                status, message, path=scope["path"], headers=headers
            )
        else:
            response = Response(message, status_code=status, headers=headers,
                                media_type="text/plain")
        self.backend.record_error(provider, status)
        await response(scope, receive, send)

    async def _truncate(self, scope: Scope, receive: Receive, send: Send) -> None:
        messages: list[Message] = []

        async def collect(message: Message) -> None:
            messages.append(message)

        await self.app(scope, receive, collect)
        start = next((m for m in messages if m["type"] == "http.response.start"), None)
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        if start is None:
            await abort_connection(send)
            return
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body[: len(body) // 2],
                    "more_body": True})
        await abort_connection(send, graceful=True)


async def _discard(message: Message) -> None:
    return None
