"""Large downloads hash and write on a worker thread while the next bytes arrive
(``prefect_runway.engine.download._Sink``): every byte lands once, in order, and hashed, also across a
broken connection that is resumed, and when the kernel writes only part of a batch."""

from __future__ import annotations

import hashlib
import os

import httpx
import pytest
from pydantic import SecretStr

import prefect_runway.engine.download as client_module
from prefect_runway.engine import GenerationClient
from prefect_runway.engine.download import _Sink
from prefect_runway.providers.segmind import SegmindProvider

URL = "https://cdn.example.com/out/big.mp4?X-Amz-Signature=sig"
BIG = b"\x00\x00\x00\x18ftypmp42" + b"\x00\x00\x00\x00mp42isom" + os.urandom(20 * 1024 * 1024)
CHUNK = 64 * 1024


class Chunked(httpx.AsyncByteStream):
    """The body in 64 KiB chunks, like a socket gives it; optionally breaking off."""

    def __init__(self, data: bytes, stop_at: int | None = None) -> None:
        self.data, self.stop_at = data, stop_at

    async def __aiter__(self):
        for start in range(0, len(self.data), CHUNK):
            if self.stop_at is not None and start >= self.stop_at:
                raise httpx.RemoteProtocolError("peer closed connection")
            yield self.data[start : start + CHUNK]


def server(data: bytes, break_at: int | None = None):
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        total = len(data)
        if "range" in request.headers:
            start = int(request.headers["range"].split("=")[1].rstrip("-"))
            return httpx.Response(206, stream=Chunked(data[start:]), headers={
                "content-type": "video/mp4", "content-length": str(total - start),
                "content-range": f"bytes {start}-{total - 1}/{total}",
            })
        return httpx.Response(200, stream=Chunked(data, break_at), headers={
            "content-type": "video/mp4", "content-length": str(total),
        })

    return handler, requests


async def _download(handler, tmp_path):
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    client = GenerationClient(SegmindProvider(), SecretStr("k"), http=http,
                          retry=client_module.RetryPolicy(base_delay=0.001, max_delay=0.01))
    async with client:
        try:
            return await client.download(URL, tmp_path)
        finally:
            await http.aclose()


async def test_a_large_download_is_written_and_hashed_in_order(tmp_path):
    handler, _ = server(BIG)
    got = await _download(handler, tmp_path)
    assert got.size == len(BIG)
    assert got.sha256 == hashlib.sha256(BIG).hexdigest()
    assert got.path.read_bytes() == BIG


async def test_a_broken_large_download_resumes_after_every_counted_byte_is_on_disk(tmp_path):
    cut = _Sink.INLINE + 5 * 1024 * 1024 + 3 * CHUNK  # several batches in flight when it breaks
    handler, requests = server(BIG, break_at=cut)
    got = await _download(handler, tmp_path)
    assert got.path.read_bytes() == BIG
    assert got.sha256 == hashlib.sha256(BIG).hexdigest()
    assert requests[1].headers["range"] == f"bytes={cut}-"


async def test_partial_writes_are_completed(tmp_path, monkeypatch):
    real = os.writev

    def stingy(fd, buffers):  # the kernel may write less than asked
        first = bytes(buffers[0])
        return real(fd, [first[: max(1, len(first) // 3)]])

    monkeypatch.setattr(client_module.os, "writev", stingy)
    size = _Sink.INLINE + 3 * 1024 * 1024
    handler, _ = server(BIG[:size])
    got = await _download(handler, tmp_path)
    assert got.path.read_bytes() == BIG[:size]


async def test_a_small_download_never_starts_a_thread_nor_holds_its_bytes(tmp_path, monkeypatch):
    """Hundreds of stills and clips download at once: each holds one chunk, not the file."""

    def no_thread(*args, **kwargs):
        raise AssertionError("a thread was started for a small download")

    held = []
    original = _Sink.add

    async def watch(self, chunk):
        await original(self, chunk)
        held.append(self._size)

    monkeypatch.setattr(client_module, "ThreadPoolExecutor", no_thread)
    monkeypatch.setattr(_Sink, "add", watch)
    small = BIG[: _Sink.INLINE - 1]
    handler, _ = server(small)
    got = await _download(handler, tmp_path)
    assert got.sha256 == hashlib.sha256(small).hexdigest()
    assert max(held) == 0


@pytest.mark.parametrize("batches", [1, 2, 5])
async def test_the_backlog_is_bounded(tmp_path, batches, monkeypatch):
    """However far the worker falls behind, at most BACKLOG batches wait in memory."""
    seen = []
    original = _Sink._submit

    async def watch(self):
        await original(self)
        seen.append(len(self._pending))

    monkeypatch.setattr(_Sink, "_submit", watch)
    data = BIG[: _Sink.INLINE + batches * _Sink.BATCH + 10]
    handler, _ = server(data)
    got = await _download(handler, tmp_path)
    assert got.size == len(data)
    assert max(seen) <= _Sink.BACKLOG


async def test_the_last_byte_is_told_before_the_download_returns_and_nothing_after(
    tmp_path, monkeypatch
):
    """Whoever streams the partial file (S3's parts) must hear of its last byte before the
    download returns, and never after the file is closed. A batch's ``done`` callback may
    run late (a future already done when awaited does not yield to the loop): forced here."""
    import asyncio

    original = _Sink._told

    def late(self, end):
        done = original(self, end)

        def later(future):
            loop = asyncio.get_running_loop()
            loop.call_soon(loop.call_soon, done, future)
        return later

    monkeypatch.setattr(_Sink, "_told", late)
    told: list[int] = []

    def on_written(fd: int, end: int) -> None:
        os.fstat(fd)  # the file is still open
        told.append(end)

    handler, _ = server(BIG)
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    client = GenerationClient(SegmindProvider(), SecretStr("k"), http=http)
    async with client:
        try:
            got = await client.download(URL, tmp_path, on_written=on_written)
        finally:
            await http.aclose()
    at_return = list(told)
    for _ in range(5):
        await asyncio.sleep(0)  # any late callback runs now
    assert at_return[-1] == got.size == len(BIG)
    assert at_return == sorted(at_return)
    assert told == at_return
