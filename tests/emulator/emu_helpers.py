"""Helpers for the emulator tests (imported by test modules in this directory)."""

from __future__ import annotations

import base64
import contextlib
import http.server
import io
import threading
import time
from collections.abc import Callable, Iterator

import httpx
from PIL import Image, ImageDraw

SEGMIND_KEY = "sm-test-key"
AIMLAPI_KEY = "aiml-test-key"
RUNWAY_KEY = "rw-test-key"

SEGMIND_HEADERS = {"x-api-key": SEGMIND_KEY}
AIMLAPI_HEADERS = {"Authorization": f"Bearer {AIMLAPI_KEY}"}
RUNWAY_HEADERS = {"Authorization": f"Bearer {RUNWAY_KEY}", "X-Runway-Version": "2024-11-06"}


def picture(width: int = 640, height: int = 360, colour=(200, 40, 40)) -> Image.Image:
    """A test input image with some structure (so crops and zooms are visible)."""
    image = Image.new("RGB", (width, height), colour)
    draw = ImageDraw.Draw(image)
    draw.rectangle((width // 4, height // 4, width * 3 // 4, height * 3 // 4), fill=(20, 90, 220))
    draw.ellipse((width // 3, height // 3, width // 2, height // 2), fill=(250, 250, 30))
    return image


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def data_uri(image: Image.Image) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode()


def wait_until(
    fetch: Callable[[], httpx.Response],
    done: Callable[[httpx.Response], bool],
    *,
    timeout: float = 15.0,
    interval: float = 0.05,
) -> tuple[httpx.Response, list[httpx.Response]]:
    """Poll `fetch` until `done`; returns the last response and all responses seen."""
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        response = fetch()
        seen.append(response)
        if done(response):
            return response, seen
        if time.monotonic() > deadline:
            raise AssertionError(f"not done after {timeout}s: {response.status_code} {response.text}")
        time.sleep(interval)


@contextlib.contextmanager
def serve_bytes(data: bytes, content_type: str = "image/png") -> Iterator[str]:
    """Serve `data` at http://127.0.0.1:PORT/input.png from a thread; yields the URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/input.png"
    finally:
        server.shutdown()
        server.server_close()


def assert_in_order(statuses: list[str], order: list[str]) -> None:
    """Statuses seen while polling only ever move forward through `order`.

    (Which intermediate ones a poller catches depends on timing; the manual-clock test in
    test_emulator_phases.py checks each one deterministically.)
    """
    positions = [order.index(status) for status in statuses]
    assert positions == sorted(positions), statuses
