"""Downloads share a bounded number of slots per event loop (``PREFECT_RUNWAY_MAX_DOWNLOADS``):
however many clients finish at once, only that many bodies stream at a time, and each still
arrives whole. Against a small HTTP server on 127.0.0.1 that counts its open responses."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest
from pydantic import SecretStr

from prefect_runway.engine import GenerationClient
from prefect_runway.engine.config import RetryPolicy
from prefect_runway.engine.download import max_downloads
from prefect_runway.errors import InvalidRequest
from prefect_runway.providers.segmind import SegmindProvider
from prefect_runway.settings import MAX_DOWNLOADS_ENV

BODY = b"\x89PNG\r\n\x1a\n" + os.urandom(200_000)


class SlowMediaServer:
    """Answers every GET with ``BODY`` (image/png) in a few slow pieces, and records how many
    answers were being sent at once."""

    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self.served = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.active += 1
            self.peak = max(self.peak, self.active)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: image/png\r\n"
                         b"content-length: %d\r\nconnection: close\r\n\r\n" % len(BODY))
            for start in range(0, len(BODY), 50_000):
                await asyncio.sleep(0.01)
                writer.write(BODY[start:start + 50_000])
                await writer.drain()
            self.served += 1
        finally:
            self.active -= 1
            writer.close()


async def test_downloads_from_many_clients_stream_at_most_the_limit_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv(MAX_DOWNLOADS_ENV, "3")
    media = SlowMediaServer()
    async with media as base:

        async def one(i: int):
            # A client per download, as each Prefect task opens its own.
            async with GenerationClient(SegmindProvider(), SecretStr("k"), base_url=base,
                                        retry=RetryPolicy(max_attempts=1)) as client:
                return await client.download(f"{base}/out/{i}.png", tmp_path / str(i))

        got = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(12))), 30)
    assert media.served == 12
    assert media.peak == 3  # never more than the limit, and the limit is used
    for file in got:
        assert file.path.read_bytes() == BODY
        assert file.sha256 == hashlib.sha256(BODY).hexdigest()


async def test_without_the_variable_downloads_run_side_by_side(tmp_path, monkeypatch):
    monkeypatch.delenv(MAX_DOWNLOADS_ENV, raising=False)
    assert max_downloads() == 32
    media = SlowMediaServer()
    async with media as base:
        async with GenerationClient(SegmindProvider(), SecretStr("k"), base_url=base) as client:
            await asyncio.wait_for(asyncio.gather(*(
                client.download(f"{base}/out/{i}.png", tmp_path) for i in range(6))), 30)
    assert media.peak == 6


@pytest.mark.parametrize("raw", ["0", "-2", "many", "1.5", "10001"])
def test_a_bad_limit_is_refused_when_the_client_is_made(raw, monkeypatch):
    monkeypatch.setenv(MAX_DOWNLOADS_ENV, raw)
    with pytest.raises(InvalidRequest) as caught:
        GenerationClient(SegmindProvider(), SecretStr("k"))
    assert caught.value.field == MAX_DOWNLOADS_ENV
    assert "1 to 10000" in str(caught.value)
