"""The emulator's ASGI app: the three protocols at the server root, plus ``/_emulator/*``."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from . import aimlapi, runway, segmind
from .backend import Backend, MediaForbidden, MediaNotFound, key_id
from .faults import FaultMiddleware, FaultPlan, FaultState

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str, total: int) -> tuple[int, int] | None | str:
    """A single `bytes=` range as (start, end inclusive); None to ignore the header;
    "unsatisfiable" when it asks for nothing we have."""
    match = _RANGE.match(header.strip().replace(" ", ""))
    if not match or "," in header:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        suffix = int(last)
        if suffix == 0:
            return "unsatisfiable"
        return max(0, total - suffix), total - 1
    start = int(first)
    end = int(last) if last else total - 1
    if start >= total:
        return "unsatisfiable"
    if end < start:
        return None
    return start, min(end, total - 1)


class ControlRoutes:
    """`/_emulator/*`: media downloads and the emulator's own controls."""

    def __init__(self, backend: Backend, faults: FaultState) -> None:
        self.backend = backend
        self.faults = faults

    def routes(self) -> list[Route]:
        return [
            Route("/_emulator/media/{media_id}", self.media, methods=["GET", "HEAD"],
                  name="media.download"),
            Route("/_emulator/stats", self.stats, methods=["GET"], name="emulator.stats"),
            Route("/_emulator/charges", self.charges, methods=["GET"], name="emulator.charges"),
            Route("/_emulator/reset", self.reset, methods=["POST"], name="emulator.reset"),
            Route("/_emulator/config", self.config, methods=["GET", "POST"],
                  name="emulator.config"),
            Route("/_emulator/faults", self.fault_plan, methods=["GET", "POST", "DELETE"],
                  name="emulator.faults"),
            Route("/_emulator/jobs", self.jobs, methods=["GET"], name="emulator.jobs"),
            Route("/_emulator/health", self.health, methods=["GET"], name="emulator.health"),
        ]

    async def media(self, request: Request) -> Response:
        media_id = request.path_params["media_id"]
        provider = self.backend.provider_of_media(media_id)
        try:
            entry = self.backend.media_for_download(media_id, request.url.query)
        except MediaNotFound:
            if provider:
                self.backend.record_error(provider, 404)
            return Response("Not Found", status_code=404, media_type="text/plain")
        except MediaForbidden as exc:
            if provider:
                self.backend.record_error(provider, 403)
            return Response(f"Forbidden: {exc}", status_code=403, media_type="text/plain")
        data = entry.data
        assert data is not None
        if entry.served_size > len(data):
            return self._oversized(request, entry, data)
        total = len(data)
        headers = {"Accept-Ranges": "bytes", "ETag": entry.etag, "Cache-Control": "private"}
        wanted: tuple[int, int] | None | str = None
        range_header = request.headers.get("range")
        if range_header:
            if_range = request.headers.get("if-range")
            if if_range is None or if_range == entry.etag:
                wanted = parse_range(range_header, total)
        if wanted == "unsatisfiable":
            self.backend.record_error(entry.provider, 416)
            return Response(status_code=416, headers={**headers,
                                                      "Content-Range": f"bytes */{total}"})
        if isinstance(wanted, tuple):
            start, end = wanted
            part = data[start : end + 1]
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{total}"
        else:
            part, status = data, 200
        if request.method == "GET":
            self.backend.record(entry.provider, "downloads")
            self.backend.record(entry.provider, "download_bytes", len(part))
        return Response(part, status_code=status, media_type=entry.content_type, headers=headers)

    def _oversized(self, request: Request, entry: Any, data: bytes) -> Response:
        """An oversized output: the media, then zeros up to ``served_size``, streamed (never
        held whole), with a Content-Length unless ``oversize_chunked``; no ranges."""
        total = entry.served_size
        headers = {"ETag": entry.etag, "Cache-Control": "private"}
        if not self.backend.config.oversize_chunked:
            headers["Content-Length"] = str(total)
        if request.method == "HEAD":
            return Response(status_code=200, media_type=entry.content_type, headers=headers)
        self.backend.record(entry.provider, "downloads")
        backend, provider = self.backend, entry.provider

        async def body() -> AsyncIterator[bytes]:
            sent = 0
            zeros = bytes(1 << 20)
            while sent < total:
                if sent and await request.is_disconnected():
                    return  # the client stopped reading
                chunk = data if sent == 0 else zeros[: min(len(zeros), total - sent)]
                yield chunk
                sent += len(chunk)
                backend.record(provider, "download_bytes", len(chunk))

        return StreamingResponse(body(), media_type=entry.content_type, headers=headers)

    async def stats(self, request: Request) -> Response:
        return JSONResponse(self.backend.stats())

    async def charges(self, request: Request) -> Response:
        return JSONResponse(self.backend.charges())

    async def reset(self, request: Request) -> Response:
        self.backend.reset()
        self.faults.set(FaultPlan())
        return JSONResponse({"ok": True})

    async def config(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                changes = await request.json()
                if not isinstance(changes, dict):
                    raise ValueError("body must be a JSON object of config fields")
                self.backend.configure(**changes)
            except (ValueError, ValidationError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        shown = self.backend.config.to_json()
        keys = shown.pop("api_keys")
        shown["api_key_ids"] = None if keys is None else sorted(key_id(k) for k in keys)
        return JSONResponse(shown)

    async def fault_plan(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.faults.set(FaultPlan())
        elif request.method == "POST":
            try:
                self.faults.set(FaultPlan.model_validate(await request.json()))
            except (ValueError, ValidationError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(self.faults.describe())

    async def jobs(self, request: Request) -> Response:
        result: dict[str, Any] = {}
        for provider in ("segmind", "aimlapi", "runway"):
            result[provider] = [
                {
                    "id": view.id,
                    "model": view.job.model,
                    "phase": view.phase.value,
                    "key_id": key_id(view.job.api_key),
                    "fingerprint": view.job.fingerprint,
                    "created_at": view.created_iso,
                    "latency": round(view.job.latency, 3),
                    # On the emulator's monotonic clock (CLOCK_MONOTONIC: the same in every
                    # process of this machine), for benchmarks: when the job started and
                    # when it is done (None while not known).
                    "started_at_monotonic": view.job.started_at,
                    "done_at_monotonic": view.job.done_at(),
                }
                for view in self.backend.jobs(provider)
            ]
        return JSONResponse(result)

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True})


_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _hostname(authority: str) -> str:
    """``host`` of ``host[:port]`` (``[::1]`` keeps its brackets), lower case."""
    authority = authority.strip().lower()
    if authority.startswith("["):
        return authority[: authority.find("]") + 1]
    return authority.rpartition(":")[0] if ":" in authority else authority


class LocalOnly:
    """Pure ASGI middleware: answer only requests addressed to this machine, and on the
    control routes, no browser's cross-site request and no body that is not JSON."""

    def __init__(self, app: ASGIApp, routes: list[Route]) -> None:
        self.app = app
        self.routes = routes

    def _is_control(self, scope: Scope) -> bool:
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return bool(route.name and route.name.startswith("emulator."))
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, list[str]] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.lower(), []).append(value.decode("latin-1"))
        hosts = headers.get(b"host", [])
        refused: tuple[int, str] | None = None
        if len(hosts) != 1 or _hostname(hosts[0]) not in _LOOPBACK_HOSTS:
            refused = (403, "the emulator answers requests addressed to 127.0.0.1, localhost "
                            "or [::1] only (the Host header)")
        elif self._is_control(scope):
            origin = headers.get(b"origin", [None])[0]
            if origin is not None and not (
                origin.lower().startswith("http://")
                and _hostname(origin[len("http://"):]) in _LOOPBACK_HOSTS
            ):
                refused = (403, "the emulator's controls refuse cross-site requests (Origin)")
            elif scope["method"] in _WRITES and (
                headers.get(b"content-length", ["0"])[0].strip() not in ("", "0")
                or b"transfer-encoding" in headers
            ):
                media_type = headers.get(b"content-type", [""])[0].split(";")[0].strip().lower()
                if media_type != "application/json":
                    refused = (415, "the emulator's controls take JSON bodies only "
                                    "(Content-Type: application/json)")
        if refused is None:
            await self.app(scope, receive, send)
            return
        status, message = refused
        await JSONResponse({"error": message}, status_code=status)(scope, receive, send)


def build_app(backend: Backend, faults: FaultState | None = None) -> LocalOnly:
    """The whole emulator as one ASGI app over `backend`."""
    faults = faults or FaultState(backend.clock, backend)
    protocols = (
        runway.RunwayProtocol(backend),  # before Segmind: /v1/{slug} would shadow /v1/tasks
        aimlapi.AimlapiProtocol(backend),
        segmind.SegmindProtocol(backend),
    )
    routes: list[Route] = []
    for protocol in protocols:
        routes.extend(protocol.routes())
    routes.extend(ControlRoutes(backend, faults).routes())
    app = Starlette(routes=routes)
    return LocalOnly(FaultMiddleware(
        app,
        routes,
        backend,
        faults,
        {
            "segmind": segmind.error_response,
            "aimlapi": aimlapi.error_response,
            "runway": runway.error_response,
        },
    ), routes)
