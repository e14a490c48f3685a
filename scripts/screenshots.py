"""Look at prefect-runway as a person does: a real Prefect server, the demo, and its UI.

Starts ``prefect server start`` on a free loopback port (its own PREFECT_HOME, analytics off),
runs ``prefect-runway demo`` against it (the emulator, unless API keys are set), optionally
stops nothing else, then takes screenshots with headless Chromium (Debian's ``chromium``) of:
the flow run page, its logs, its artifacts tab, each artifact's page, and the artifacts list.
Chromium is driven over its DevTools protocol (``websockets``, installed with Prefect), so a
tab can be clicked (the UI ignores ``?tab=`` until the run has loaded) and the logs page is
taken tall enough to read the whole run.

``--review`` looks at the review gate instead: a storyboard (three shots, two stills each,
``review=True``) runs in a background process against the emulator and the server; once its
flow run is Paused the script takes the run page (its state and *Resume* button), the
``review-stills`` artifact, and the *Resume* form (clicked open in the UI); then it resumes
the run through the API (``resume_flow_run`` with a decision per shot) and takes the
completed run, its artifacts and its summary.

Not run in CI (it needs Chromium and takes about a minute). Usage::

    apt-get install chromium        # once
    python scripts/screenshots.py --out screenshots/ [-- extra demo arguments]
    python scripts/screenshots.py --review --out screenshots-review/

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
from typing import Any

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
    """One screenshot: a page, optionally what to click (a label, or labels in turn), and the
    viewport's height."""

    def __init__(self, name: str, url: str, *, click: str | list[str] | None = None,
                 height: int | None = None, wait_for: bool = False) -> None:
        self.name, self.url, self.click, self.height = name, url, click, height
        self.wait_for = wait_for  # wait (bounded) until the thing to click is on the page


async def _wait_for_text(cdp: Any, label: str, deadline_s: float) -> None:
    """Wait until a button, tab or link labelled ``label`` is on the page (bounded)."""
    deadline = time.monotonic() + deadline_s
    expression = FIND_JS.format(label=json.dumps(label))
    while time.monotonic() < deadline:
        found = await cdp("Runtime.evaluate", returnByValue=True, expression=expression)
        if found.get("result", {}).get("value"):
            return
        await asyncio.sleep(1)


#: Whether a button, tab or link whose text is exactly the given label is on the page.
FIND_JS = """(() => {{
  const label = {label};
  return [...document.querySelectorAll('button, [role=tab], a, li')]
    .some(e => e.textContent.trim() === label);
}})()"""

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
                    labels = [shot.click] if isinstance(shot.click, str) else shot.click or []
                    for label in labels:
                        if shot.wait_for:
                            await _wait_for_text(cdp, label, 60)
                        clicked = await cdp("Runtime.evaluate", returnByValue=True,
                                            expression=CLICK_JS.format(label=json.dumps(label)))
                        if not clicked.get("result", {}).get("value"):
                            print(f"{shot.name}: no {label!r} to click", file=sys.stderr)
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


#: The storyboard the review mode runs (a child process: the emulator, then the flow, which
#: pauses for its review; argv[1] is the output directory).
REVIEW_FLOW = """
import asyncio, sys
from pydantic import SecretStr
from prefect_runway import SegmindCredentials, storyboard
from prefect_runway.emulator import Emulator, EmulatorConfig

REF = [{"uri": "https://example.com/ref.png", "tag": "hero"}]
SCENES = [("harbour-dawn", "a harbour at dawn, fishing boats, @hero on the quay", "slow pan right"),
          ("market-noon", "@hero walks through a crowded fish market at noon", "tracking shot"),
          ("lighthouse-dusk", "a lighthouse at dusk, @hero climbing the stairs", "slow push in")]
shots = [{"name": n, "still_prompt": p, "motion_prompt": m, "reference_images": REF,
          "seed": 100 + i} for i, (n, p, m) in enumerate(SCENES, start=1)]
with Emulator(EmulatorConfig(latency=0.3, video_fps=4)) as emulator:
    credentials = SegmindCredentials(
        api_key=SecretStr("emulator-screenshots-key"), base_url=emulator.url,
        poll_interval_seconds=0.1, max_poll_interval_seconds=0.5, wait_timeout_seconds=60)
    state = asyncio.run(storyboard(
        shots=shots, credentials=credentials, storage=sys.argv[1], review=True, variants=2,
        review_mode="pause", review_timeout=900, return_state=True))
    print("final state:", state.type.value, state.message)
"""

#: The decision the review mode sends (through the API, as a script would): one shot
#: approved with its second still, one rejected, one regenerated with a new seed.
REVIEW_ANSWER = {"shots": [
    {"shot": "harbour-dawn", "decision": "approve", "variant": 2},
    {"shot": "market-noon", "decision": "reject"},
    {"shot": "lighthouse-dusk", "decision": "regenerate", "seed": 777},
]}

RESUME = """
import json, sys
from prefect.flow_runs import resume_flow_run
resume_flow_run(sys.argv[1], run_input=json.loads(sys.argv[2]))
"""


def _run_artifacts(base: str, run_id: str) -> list[dict]:
    artifacts = api(base, "/artifacts/filter", {
        "artifacts": {"flow_run_id": {"any_": [run_id]}}, "sort": "CREATED_DESC",
    })
    assert isinstance(artifacts, list)
    return artifacts


def review_mode(args: argparse.Namespace, ui: str, base: str, env: dict[str, str],
                home: Path, out: Path) -> list[Path]:
    """The review gate as a person sees it: paused run, stills, Resume form, then resumed."""
    flow_env = {**env, "PREFECT_API_URL": base}
    log = (out / "review-flow.txt").open("w")
    flow = subprocess.Popen(
        [sys.executable, "-c", REVIEW_FLOW, str(home / "runway-outputs")],
        env=flow_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            runs = api(base, "/flow_runs/filter", {
                "flow_runs": {"state": {"type": {"any_": ["PAUSED"]}}}, "limit": 5})
            if runs:
                break
            if flow.poll() is not None:
                raise SystemExit(f"the flow ended before its review: see {out / 'review-flow.txt'}")
            if time.monotonic() > deadline:
                raise SystemExit("no flow run paused within 180 s")
            time.sleep(1)
        assert isinstance(runs, list)
        run_id = runs[0]["id"]
        print(f"paused: {runs[0]['name']} ({run_id}): {runs[0]['state']['name']}")
        page = f"{ui}/runs/flow-run/{run_id}"
        review = next(a for a in _run_artifacts(base, run_id) if a.get("key") == "review-stills")
        shots = [
            Shot("review-1-paused-run", page),
            Shot("review-2-stills-artifact", f"{ui}/artifacts/artifact/{review['id']}",
                 height=3 * args.height),
            Shot("review-3-resume-form", page, click="Resume", wait_for=True,
                 height=3 * args.height),
        ]
        if args.resume_in_ui:  # a person's answer: the form as pre-filled, Submit clicked
            shots.append(Shot("review-3b-resume-submitted", page, click=["Resume", "Submit"],
                              wait_for=True))
        written = asyncio.run(_take(args.chromium, shots, out, args.width, args.height,
                                    args.settle))
        if not args.resume_in_ui:
            resume = subprocess.run(
                [sys.executable, "-c", RESUME, run_id, json.dumps(REVIEW_ANSWER)],
                env=flow_env, capture_output=True, text=True, timeout=120,
            )
            if resume.returncode:
                raise SystemExit(f"resume_flow_run failed: {resume.stderr}")
        flow.wait(timeout=300)
        run = api(base, f"/flow_runs/{run_id}")
        assert isinstance(run, dict)
        print(f"after resume: {run['state']['name']} ({run['state'].get('message')})")
        shots = [
            Shot("review-4-resumed-run", page),
            Shot("review-5-run-logs", page, click="Logs", height=2 * args.height),
            Shot("review-6-run-artifacts", page, click="Artifacts", height=2 * args.height),
        ]
        for artifact in _run_artifacts(base, run_id):
            if artifact.get("key") in ("storyboard-summary", "storyboard-progress"):
                shots.append(Shot(f"review-7-artifact-{artifact['key']}",
                                  f"{ui}/artifacts/artifact/{artifact['id']}",
                                  height=2 * args.height))
        written += asyncio.run(_take(args.chromium, shots, out, args.width, args.height,
                                     args.settle))
        return written
    finally:
        if flow.poll() is None:
            os.killpg(flow.pid, signal.SIGTERM)
            flow.wait(timeout=20)
        log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="screenshots", help="directory for the PNGs")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=1200)
    parser.add_argument("--settle", type=float, default=6.0,
                        help="seconds a page gets to load (and again after a click)")
    parser.add_argument("--review", action="store_true",
                        help="look at the review gate (a paused storyboard) instead of the demo")
    parser.add_argument("--resume-in-ui", action="store_true",
                        help="with --review: submit the Resume form in the UI (every shot as "
                             "pre-filled: approved, first still) instead of through the API")
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
        if args.review:
            for path in review_mode(args, ui, base, env, home, out):
                print(path)
            return 0
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
