"""Look at prefect-runway as a person does: a real Prefect server, the demo, and its UI.

Starts ``prefect server start`` on a free loopback port (its own PREFECT_HOME, analytics off),
runs ``prefect-runway demo`` against it (the emulator, unless API keys are set), optionally
stops nothing else, then takes screenshots with headless Chromium (Debian's ``chromium``) of:
the flow run page, its logs, its artifacts tab, each artifact's page, and the artifacts list.
Chromium is driven over its DevTools protocol (``websockets``, installed with Prefect), so a
tab can be clicked (the UI ignores ``?tab=`` until the run has loaded) and the logs page is
taken tall enough to read the whole run.

Not run in CI (it needs Chromium and takes about a minute). Usage::

    apt-get install chromium        # once
    python scripts/screenshots.py --out screenshots/ [-- extra demo arguments]

Prints the path of every PNG it wrote.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(base: str, path: str, body: dict | None = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{base}{path}", data=data, method="POST" if body is not None else "GET",
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def wait_healthy(base: str, deadline_s: float = 120) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if api(base, "/health") is True:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the Prefect server at {base} did not become healthy")


class Shot:
    """One screenshot: a page, optionally a tab to click, and the viewport's height."""

    def __init__(self, name: str, url: str, *, click: str | None = None,
                 height: int | None = None) -> None:
        self.name, self.url, self.click, self.height = name, url, click, height


#: Clicks the first button, tab or link whose text is exactly the given label.
CLICK_JS = """(() => {{
  const label = {label};
  const hit = [...document.querySelectorAll('button, [role=tab], a, li')]
    .find(e => e.textContent.trim() === label);
  if (hit) hit.click();
  return Boolean(hit);
}})()"""


async def _take(chromium: str, shots: list[Shot], out: Path, width: int, height: int,
                settle: float) -> list[Path]:
    import websockets  # installed with Prefect

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        browser = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
             f"--window-size={width},{height}", "--remote-debugging-address=127.0.0.1",
             f"--remote-debugging-port={port}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    targets = api(f"http://127.0.0.1:{port}", "/json/list")
                    page = next(t for t in targets if t.get("type") == "page")  # type: ignore[union-attr]
                    break
                except (OSError, StopIteration):
                    if time.monotonic() > deadline:
                        raise SystemExit("headless Chromium did not open its DevTools port") from None
                    time.sleep(0.5)
            ids = itertools.count(1)
            async with websockets.connect(page["webSocketDebuggerUrl"], max_size=None) as ws:

                async def cdp(method: str, **params: object) -> dict:
                    n = next(ids)
                    await ws.send(json.dumps({"id": n, "method": method, "params": params}))
                    while True:
                        message = json.loads(await asyncio.wait_for(ws.recv(), 120))
                        if message.get("id") == n:
                            if "error" in message:
                                raise RuntimeError(f"{method}: {message['error']}")
                            return message.get("result", {})

                await cdp("Page.enable")
                written = []
                for shot in shots:
                    await cdp("Emulation.setDeviceMetricsOverride", width=width,
                              height=shot.height or height, deviceScaleFactor=1, mobile=False)
                    await cdp("Page.navigate", url=shot.url)
                    await asyncio.sleep(settle)
                    if shot.click:
                        clicked = await cdp("Runtime.evaluate", returnByValue=True,
                                            expression=CLICK_JS.format(label=json.dumps(shot.click)))
                        if not clicked.get("result", {}).get("value"):
                            print(f"{shot.name}: no {shot.click!r} to click", file=sys.stderr)
                        await asyncio.sleep(settle)
                    data = await cdp("Page.captureScreenshot", format="png")
                    path = out / f"{shot.name}.png"
                    path.write_bytes(base64.b64decode(data["data"]))
                    written.append(path)
                return written
        finally:
            os.killpg(browser.pid, signal.SIGTERM)
            try:
                browser.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(browser.pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="screenshots", help="directory for the PNGs")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=1200)
    parser.add_argument("--settle", type=float, default=6.0,
                        help="seconds a page gets to load (and again after a click)")
    parser.add_argument("demo_args", nargs="*", help="extra arguments for prefect-runway demo")
    args = parser.parse_args(argv)
    if not Path(args.chromium).exists():
        print("headless Chromium is needed: apt-get install chromium", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    ui = f"http://127.0.0.1:{port}"
    base = f"{ui}/api"
    home = Path(tempfile.mkdtemp(prefix="prefect-runway-screens-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_UI_API_URL=base)
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
         "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        wait_healthy(base)
        demo = subprocess.run(
            [sys.executable, "-m", "prefect_runway.cli", "demo", "--output",
             str(home / "runway-outputs"), *args.demo_args],
            env={**env, "PREFECT_API_URL": base}, capture_output=True, text=True, timeout=600,
        )
        (out / "demo-terminal.txt").write_text(demo.stdout + demo.stderr)
        print(f"demo exit {demo.returncode}; its output: {out / 'demo-terminal.txt'}")
        runs = api(base, "/flow_runs/filter", {"sort": "START_TIME_DESC", "limit": 5})
        assert isinstance(runs, list) and runs, "no flow run was recorded"
        run = next((r for r in runs if r.get("parent_task_run_id") is None), runs[0])
        run_id = run["id"]
        page = f"{ui}/runs/flow-run/{run_id}"
        shots = [
            Shot("run", page),
            Shot("run-logs", page, click="Logs", height=2 * args.height),
            Shot("run-task-runs", page, click="Task Runs"),
            Shot("run-artifacts", page, click="Artifacts", height=2 * args.height),
            Shot("artifacts", f"{ui}/artifacts"),
        ]
        artifacts = api(base, "/artifacts/filter", {
            "artifacts": {"flow_run_id": {"any_": [run_id]}}, "sort": "CREATED_DESC",
        })
        assert isinstance(artifacts, list)
        for artifact in artifacts:
            label = artifact.get("key") or artifact["type"]
            shots.append(Shot(f"artifact-{label}", f"{ui}/artifacts/artifact/{artifact['id']}"))
        for path in asyncio.run(_take(args.chromium, shots, out, args.width, args.height,
                                      args.settle)):
            print(path)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
