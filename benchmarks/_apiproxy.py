"""A counting reverse proxy in front of a Prefect server, in a process of its own.

``python -m benchmarks._apiproxy --upstream http://127.0.0.1:PORT --port N`` listens on
127.0.0.1:N and forwards every HTTP request and websocket to the upstream server unchanged
(bodies and encodings passed through as bytes), counting on the way:

* REST requests under ``/api`` by kind (:func:`prefect_runway.testing.api_calls.http_kind`,
  the same kinds as the in-process counter) and by ``METHOD /path``, and the seconds each kind
  waited for the server (from the request forwarded to the response's headers);
* responses by status code (429 and 5xx are what a refusing server answers);
* events sent on ``/api/events/in`` (one websocket text message each, the auth handshake not
  counted), by kind (:func:`~prefect_runway.testing.api_calls.event_kind`).

This counts what *several processes* send (workers and the flow-run processes they start),
where the in-process counter sees only its own process. ``GET /_proxy/counts`` reads the
counts, ``POST /_proxy/reset`` zeroes them; neither is forwarded or counted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import time
from collections import Counter
from typing import Any

import httpx

from prefect_runway.testing.api_calls import _UUID, event_kind, http_kind

HOP = {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
       b"trailers", b"transfer-encoding", b"upgrade", b"host", b"content-length"}


class Counts:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.http: Counter[str] = Counter()
        self.paths: Counter[str] = Counter()
        self.status: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        self.seconds: Counter[str] = Counter()
        self.websockets = 0

    def as_dict(self) -> dict[str, Any]:
        return {"http": dict(self.http), "paths": dict(self.paths.most_common()),
                "status": dict(self.status), "events": dict(self.events),
                "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
                "requests": sum(self.http.values()), "events_total": sum(self.events.values()),
                "websockets": self.websockets}


class Proxy:
    """The ASGI application: forward and count."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.counts = Counts()
        self.http: httpx.AsyncClient | None = None

    def _client(self) -> httpx.AsyncClient:
        if self.http is None:
            self.http = httpx.AsyncClient(
                base_url=self.upstream, timeout=httpx.Timeout(300.0, connect=30.0),
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=100))
        return self.http

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        elif scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if self.http is not None:
                        await self.http.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    async def _reply(self, send: Any, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    async def _http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path: str = scope["path"]
        if path == "/_proxy/counts":
            await self._reply(send, 200, self.counts.as_dict())
            return
        if path == "/_proxy/reset":
            self.counts.reset()
            await self._reply(send, 200, {"reset": True})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        method: str = scope["method"]
        kind = None
        if path.startswith("/api"):
            sub = path[len("/api"):] or "/"
            kind = http_kind(method, sub)
            self.counts.http[kind] += 1
            self.counts.paths[f"{method} {re.sub(_UUID, '{id}', sub)}"] += 1
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]
                   if k.lower() not in HOP]
        query = scope.get("query_string", b"").decode("latin-1")
        request = self._client().build_request(method, path + (f"?{query}" if query else ""),
                                               headers=headers, content=body)
        started = time.perf_counter()
        try:
            response = await self._client().send(request, stream=True)
        except httpx.HTTPError as exc:
            self.counts.status["proxy-error"] += 1
            await self._reply(send, 502, {"detail": f"proxy: {type(exc).__name__}"})
            return
        finally:
            if kind is not None:
                self.counts.seconds[kind] += time.perf_counter() - started
        try:
            self.counts.status[str(response.status_code)] += 1
            out = [(k.encode("latin-1"), v.encode("latin-1"))
                   for k, v in response.headers.multi_items() if k.lower().encode() not in HOP]
            await send({"type": "http.response.start", "status": response.status_code,
                        "headers": out})
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()

    async def _websocket(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        from websockets.asyncio.client import connect
        from websockets.typing import Subprotocol

        path: str = scope["path"]
        counting = path.rstrip("/").endswith("/events/in")
        self.counts.websockets += 1
        query = scope.get("query_string", b"").decode("latin-1")
        url = self.upstream.replace("http://", "ws://", 1) + path + (f"?{query}" if query else "")
        protocols = [Subprotocol(p) for p in scope.get("subprotocols", [])]
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]
                   if k.lower() == b"authorization"]
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        try:
            upstream = await connect(url, subprotocols=protocols or None,
                                     additional_headers=headers, max_size=None,
                                     open_timeout=30)
        except Exception:  # noqa: BLE001 - refused upstream: refuse the client too
            await send({"type": "websocket.close", "code": 1011})
            return
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})

        async def client_to_upstream() -> None:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    await upstream.close()
                    return
                text = message.get("text")
                if text is not None:
                    if counting:
                        self._count_event(text)
                    await upstream.send(text)
                elif message.get("bytes") is not None:
                    await upstream.send(message["bytes"])

        async def upstream_to_client() -> None:
            with contextlib.suppress(Exception):
                async for data in upstream:
                    if isinstance(data, str):
                        await send({"type": "websocket.send", "text": data})
                    else:
                        await send({"type": "websocket.send", "bytes": data})
            with contextlib.suppress(Exception):
                await send({"type": "websocket.close", "code": upstream.close_code or 1000})

        tasks = [asyncio.ensure_future(client_to_upstream()),
                 asyncio.ensure_future(upstream_to_client())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(Exception):
                await upstream.close()

    def _count_event(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            self.counts.events["unparsed"] += 1
            return
        if isinstance(message, dict) and message.get("type") == "auth":
            return
        name = message.get("event") if isinstance(message, dict) else None
        self.counts.events[event_kind(name) if isinstance(name, str) else "other"] += 1


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m benchmarks._apiproxy")
    parser.add_argument("--upstream", required=True, help="the Prefect server, http://127.0.0.1:PORT")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    uvicorn.run(Proxy(args.upstream), host="127.0.0.1", port=args.port, log_level="warning",
                ws="websockets-sansio", lifespan="on", ws_max_size=2**26)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
