"""A catalogue of bad inputs and bad answers: each gives its typed error, nothing crashes,
and nothing is billed.

Bad answers come from a scripted HTTP server on 127.0.0.1 (real sockets, real httpx): each
case sets what the next calls answer. Bad inputs must not reach any server at all.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import pytest
import uvicorn
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from prefect_runway import ImageRequest, VideoRequest
from prefect_runway.engine import GenerationClient, PollSchedule, RetryPolicy
from prefect_runway.errors import (
    AuthenticationError,
    BadResponse,
    DownloadError,
    GenerationCancelled,
    GenerationExpired,
    GenerationFailed,
    GenerationTimedOut,
    InsufficientCredits,
    InvalidRequest,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    SubmissionUncertain,
)
from prefect_runway.models import Generation
from prefect_runway.providers import get_provider

KEY = "sk-catalogue-SECRET-4242"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
HTML = b"<html><head><style>body{}</style></head><body><h1>502 Bad Gateway</h1></body></html>"


class Scripted:
    """A loopback HTTP server answering every request from a script (method+path -> answer)."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, bytes, dict[str, str]]] = {}
        self.seen: list[str] = []
        app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["GET", "POST", "DELETE"])])
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: Request) -> Response:
        path = "/" + request.path_params["path"]
        self.seen.append(f"{request.method} {path}")
        status, body, headers = self.answers.get(
            f"{request.method} {path}", (404, b'{"error": "no such route"}', {})
        )
        return Response(body, status_code=status, headers=headers)

    def answer(self, method: str, path: str, status: int, body: bytes | str | dict | list,
               content_type: str = "application/json", **headers: str) -> None:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.answers[f"{method} {path}"] = (status, body, {"content-type": content_type, **headers})

    def posts(self) -> int:
        return sum(1 for s in self.seen if s.startswith("POST"))


@pytest.fixture(scope="module")
def scripted():
    server = Scripted()
    server.thread.start()
    deadline = time.monotonic() + 10
    while not server.server.started:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    yield server
    server.server.should_exit = True
    server.thread.join(5)


@pytest.fixture()
def srv(scripted):
    scripted.answers.clear()
    scripted.seen.clear()
    return scripted


def client_for(provider: str, url: str) -> GenerationClient:
    return GenerationClient(
        get_provider(provider), SecretStr(KEY), url,
        retry=RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.01, deadline=5),
        poll=PollSchedule(interval=0.01, max_interval=0.02, timeout=0.5),
    )


def segmind_video() -> VideoRequest:
    return VideoRequest(image="https://example.com/a.png", prompt="move", seed=3)


def segmind_job(url: str) -> Generation:
    return Generation(provider="segmind", model="gen4_turbo", kind="video", job_id="J1",
                      fingerprint="f" * 64, base_url=url,
                      status_url=f"{url}/v2/requests/J1/status", result_url=f"{url}/v2/requests/J1")


def _no_key(exc: BaseException) -> None:
    assert KEY not in str(exc) and KEY not in repr(exc)


SUBMIT = "/v2/runway-gen4-turbo"
STATUS = "/v2/requests/J1/status"
RESULT = "/v2/requests/J1"

SUBMIT_CASES = [
    ("html page with 200", 200, HTML, "text/html", SubmissionUncertain),
    ("malformed json", 200, b'{"request_id": ', "application/json", SubmissionUncertain),
    ("json without request_id", 200, {"status": "QUEUED"}, "application/json", SubmissionUncertain),
    ("json array", 200, [1, 2], "application/json", SubmissionUncertain),
    ("oversized body", 200, b"{" + b" " * (5 * 1024 * 1024) + b"}", "application/json", SubmissionUncertain),
    ("html 400", 400, HTML, "text/html", ProviderRejected),
    ("401", 401, {"error": "Invalid API key"}, "application/json", AuthenticationError),
    ("403", 403, {"error": "Forbidden"}, "application/json", AuthenticationError),
    ("406 credits", 406, {"error": "Insufficient credits"}, "application/json", InsufficientCredits),
    ("429 forever", 429, {"error": "slow down"}, "application/json", RateLimited),
    ("503 forever", 503, HTML, "text/html", ProviderUnavailable),
    ("500 after sending", 500, {"error": "boom"}, "application/json", SubmissionUncertain),
    ("502 after sending", 502, HTML, "text/html", SubmissionUncertain),
    ("504 after sending", 504, HTML, "text/html", SubmissionUncertain),
]


@pytest.mark.parametrize("name, status, body, ctype, error", SUBMIT_CASES, ids=[c[0] for c in SUBMIT_CASES])
async def test_bad_submit_answers(srv, name, status, body, ctype, error):
    srv.answer("POST", SUBMIT, status, body, ctype, **({"retry-after": "0"} if status in (429, 503) else {}))
    async with client_for("segmind", srv.url) as client:
        with pytest.raises(error) as info:
            await client.submit(segmind_video())
    _no_key(info.value)
    if error is SubmissionUncertain:
        assert srv.posts() == 1, "an uncertain submit must never be resent"
        assert len(info.value.fingerprint) == 64
    if error in (AuthenticationError, InsufficientCredits, ProviderRejected):
        assert srv.posts() == 1, "a refusal is final"


STATUS_CASES = [
    ("html 200", 200, HTML, "text/html", BadResponse),
    ("malformed json", 200, b"{nope", "application/json", BadResponse),
    ("json without status", 200, {"request_id": "J1"}, "application/json", BadResponse),
    ("oversized", 200, b"[" + b"0," * (3 * 1024 * 1024) + b"0]", "application/json", BadResponse),
    ("404 expired", 404, {"error": "not found"}, "application/json", GenerationExpired),
    ("500 forever", 500, HTML, "text/html", ProviderUnavailable),
    ("401", 401, {"error": "bad key"}, "application/json", AuthenticationError),
    ("redirect", 302, b"", "text/plain", ProviderRejected),
    ("422 html", 422, HTML, "text/html", ProviderRejected),
    ("failed as 422", 422, {"status": "FAILED", "error": "NSFW content"}, "application/json", GenerationFailed),
]


@pytest.mark.parametrize("name, status, body, ctype, error", STATUS_CASES, ids=[c[0] for c in STATUS_CASES])
async def test_bad_status_answers(srv, name, status, body, ctype, error):
    srv.answer("GET", STATUS, status, body, ctype)
    async with client_for("segmind", srv.url) as client:
        with pytest.raises(error) as info:
            await client.wait(segmind_job(srv.url))
    _no_key(info.value)
    assert srv.posts() == 0


async def test_completed_without_any_output_is_a_bad_response(srv):
    srv.answer("GET", STATUS, 200, {"status": "COMPLETED"})
    srv.answer("GET", RESULT, 200, {"status": "COMPLETED", "metrics": {}})
    async with client_for("segmind", srv.url) as client:
        with pytest.raises(BadResponse):
            await client.wait(segmind_job(srv.url))


async def test_unknown_status_forever_times_out_with_the_job_id(srv):
    srv.answer("GET", "/v2/video/generations", 200, {"id": "J1", "status": "thinking-hard"})
    gen = Generation(provider="aimlapi", model="gen4_turbo", kind="video", job_id="J1",
                     fingerprint="f" * 64, base_url=srv.url,
                     status_url=f"{srv.url}/v2/video/generations?generation_id=J1")
    async with client_for("aimlapi", srv.url) as client:
        with pytest.raises(GenerationTimedOut) as info:
            await client.wait(gen, timeout=0.3)
    assert info.value.job_id == "J1"


@pytest.mark.parametrize(
    "body, error",
    [
        ({"id": "J1", "status": "FAILED", "failure": "Content moderated", "failureCode": "SAFETY.INPUT"},
         GenerationFailed),
        ({"id": "J1", "status": "CANCELLED"}, GenerationCancelled),
    ],
)
async def test_runway_terminal_failures(srv, body, error):
    srv.answer("GET", "/v1/tasks/J1", 200, body)
    gen = Generation(provider="runway", model="gen4_turbo", kind="video", job_id="J1",
                     fingerprint="f" * 64, base_url=srv.url)
    async with client_for("runway", srv.url) as client:
        with pytest.raises(error) as info:
            await client.wait(gen)
    if error is GenerationFailed:
        assert info.value.failure_code == "SAFETY.INPUT"
        assert "Content moderated" in str(info.value)


async def test_runway_submit_without_an_id_is_uncertain(srv):
    srv.answer("POST", "/v1/image_to_video", 200, {"status": "ok"})
    async with client_for("runway", srv.url) as client:
        with pytest.raises(SubmissionUncertain):
            await client.submit(VideoRequest(image="https://e.com/a.png", prompt="p", ratio="1280:720"))
    assert srv.posts() == 1


DOWNLOAD_CASES = [
    ("html instead of media", 200, HTML, "text/html"),
    ("empty body", 200, b"", "image/png"),
    ("json instead of media", 200, b'{"error": "expired"}', "application/json"),
    ("404", 404, b"gone", "text/plain"),
    ("403 expired signature", 403, b"<Error>AccessDenied</Error>", "application/xml"),
    ("image where a video was expected", 200, PNG, "image/png"),
]


@pytest.mark.parametrize("name, status, body, ctype", DOWNLOAD_CASES, ids=[c[0] for c in DOWNLOAD_CASES])
async def test_bad_downloads_store_nothing(srv, tmp_path, name, status, body, ctype):
    srv.answer("GET", "/media/out.mp4", status, body, ctype)
    async with client_for("segmind", srv.url) as client:
        with pytest.raises(DownloadError) as info:
            await client.download(f"{srv.url}/media/out.mp4", tmp_path, expected_media=("video/",))
    _no_key(info.value)
    assert list(tmp_path.iterdir()) == [], "nothing half-written may stay behind"


async def test_a_body_shorter_than_its_length_is_never_stored(tmp_path):
    """A server that always breaks off mid-body: retried, then a DownloadError, no file."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: 1000\r\n\r\n"
                     + b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with client_for("segmind", f"http://127.0.0.1:{port}") as client:
            with pytest.raises(DownloadError):
                await client.download(f"http://127.0.0.1:{port}/v.mp4", tmp_path, expected_media=("video/",))
    finally:
        server.close()
    assert list(tmp_path.iterdir()) == []


BAD_INPUTS = [
    ("segmind", dict(kind="video", image="https://e.com/a.png", prompt="p", seed=0), "seed"),
    ("segmind", dict(kind="video", image="https://e.com/a.png", prompt="p", ratio="1:2"), "ratio"),
    ("segmind", dict(kind="video", image="data:image/png;base64,iVBORw0KGgo=", prompt="p"), "image"),
    ("segmind", dict(kind="image", prompt="p"), "reference_images"),
    ("aimlapi", dict(kind="image", prompt="p"), "model"),
    ("aimlapi", dict(kind="video", image="https://e.com/a.png", prompt="p", ratio="5:4"), "ratio"),
    ("aimlapi", dict(kind="video", image="https://e.com/a.png", model="gen3a_turbo", prompt="p",
                     ratio="1280:720", last_image="ftp://x/y.png"), "last_image"),
    ("runway", dict(kind="video", image="https://e.com/a.png", model="gen3a_turbo", prompt="p"), "model"),
    ("runway", dict(kind="video", image="gopher://e.com/a.png", prompt="p"), "image"),
    ("runway", dict(kind="video", image="/no/such/file.png", prompt="p"), "image"),
    ("runway", dict(kind="video", image="https://e.com/a.png", prompt="p", last_image="https://e.com/b.png"),
     "last_image"),
]


@pytest.mark.parametrize("provider, spec, field", BAD_INPUTS)
async def test_bad_inputs_reach_no_server(srv, provider, spec, field):
    spec = dict(spec)
    kind = spec.pop("kind")
    async with client_for(provider, srv.url) as client:
        with pytest.raises(InvalidRequest) as info:
            request = ImageRequest(**spec) if kind == "image" else VideoRequest(**spec)
            await client.submit(request)
    assert info.value.field == field
    assert srv.seen == []
