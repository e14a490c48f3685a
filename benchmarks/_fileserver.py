"""A loopback "CDN" for the download benchmark: ``python -m benchmarks._fileserver DIRECTORY
[--rate MIB_PER_S]``.

Serves the files of DIRECTORY over HTTP/1.1 on 127.0.0.1 and a free port (printed on the
first line of stdout), a thread per connection, with ``os.sendfile`` — the kernel copies the
bytes, so the server spends next to no CPU and is not what the benchmark measures. Supports
``Range: bytes=N-`` (what a resumed download sends); ``--rate MIB_PER_S`` paces each
transfer like a link of that speed. Runs until stdin closes.
"""

from __future__ import annotations

import http.server
import os
import re
import sys
import threading
import time
from pathlib import Path


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    root: Path

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        return None

    def do_GET(self) -> None:  # noqa: N802
        path = (self.root / self.path.split("?", 1)[0].lstrip("/")).resolve()
        if self.root not in path.parents or not path.is_file():
            self.send_error(404)
            return
        size = path.stat().st_size
        start, status = 0, 200
        match = re.match(r"bytes=(\d+)-$", self.headers.get("range", ""))
        if match and int(match.group(1)) < size:
            start, status = int(match.group(1)), 206
        self.send_response(status)
        self.send_header("Content-Type", "video/mp4" if path.suffix == ".mp4" else "application/octet-stream")
        self.send_header("Content-Length", str(size - start))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.end_headers()
        self.wfile.flush()
        with path.open("rb") as f:
            offset = start
            began = time.monotonic()
            while offset < size:
                step = size - offset if not RATE else min(size - offset, 1 << 20)
                sent = os.sendfile(self.connection.fileno(), f.fileno(), offset, step)
                if sent == 0:
                    break
                offset += sent
                if RATE:  # a capped link: keep to RATE bytes per second
                    ahead = (offset - start) / RATE - (time.monotonic() - began)
                    if ahead > 0:
                        time.sleep(ahead)


#: Bytes per second per transfer (0: as fast as the kernel goes); ``--rate MIB_PER_S``.
RATE = 0.0


def main() -> int:
    global RATE
    if len(sys.argv) > 3 and sys.argv[2] == "--rate":
        RATE = float(sys.argv[3]) * 1024 * 1024
    root = Path(sys.argv[1]).resolve()
    Handler.root = root
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()  # until the parent closes our stdin
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
