"""What the command line shows while a run goes: its jobs, live on a terminal, plain elsewhere.

Real runs against the emulator on loopback, on the session's Prefect test server; the display
subscribes to the jobs' events in this process (prefect_runway.engine.events). Runs are
bounded: two or three jobs of a few seconds each, with deadlines.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.settings import PREFECT_API_URL
from pydantic import SecretStr
from rich.console import Console

from prefect_runway import RunwayCredentials, SegmindCredentials, image_to_video, storyboard
from prefect_runway.cli.live import LiveDisplay
from prefect_runway.emulator import Emulator, EmulatorConfig
from prefect_runway.engine.events import subscribed

REF = [{"uri": "https://example.com/ref.png", "tag": "hero"}]
ESCAPE = "\x1b"


@pytest.fixture()
def emu():
    with Emulator(EmulatorConfig(latency=0.6, video_fps=4, runway_concurrency=1)) as emulator:
        yield emulator


def _creds(cls: type, emu: Emulator) -> object:
    return cls(api_key=SecretStr("live-key"), base_url=emu.url, poll_interval_seconds=0.1,
               max_poll_interval_seconds=0.3, wait_timeout_seconds=60)


def _terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(force_terminal=True, file=out, width=160, color_system="standard"), out


def _strip(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


async def test_a_terminal_shows_each_job_live_for_a_real_run(emu, tmp_path):
    console, out = _terminal()
    display = LiveDisplay(console, title="image-to-video", refresh_per_second=20)
    with display:
        result = await image_to_video(
            still_prompt=f"live {uuid.uuid4().hex[:6]} @hero", motion_prompt="drift",
            reference_images=REF, image_credentials=_creds(SegmindCredentials, emu),
            video_credentials=_creds(RunwayCredentials, emu), storage=str(tmp_path),
            name="harbour",
        )
    text = out.getvalue()
    print(text)
    assert display.live and ESCAPE in text  # drawn as a live table
    final = _strip(text)
    # The last frame: both jobs, each with its shot, kind, provider/model, state and job id.
    last = final[final.rindex("image-to-video"):]
    rows = [line for line in last.splitlines() if "harbour" in line]
    assert len(rows) == 2, last
    still_row, video_row = rows
    for row, words in ((still_row, ["still", "segmind/gen4_image", "stored", "done",
                                    result.still.job_id[:12]]),
                       (video_row, ["video", "runway/gen4_turbo", "stored", "done",
                                    result.video.job_id[:12]])):
        for word in words:
            assert word in row, (word, row)
    assert "2 jobs: 2 stored" in last
    # Earlier frames showed the jobs on their way.
    assert re.search(r"harbour\s+video\s+runway/gen4_turbo\s+(submitted|running)", final)
    assert re.search(r"harbour\s+video\s+runway/gen4_turbo\s+queued", final)
    assert display.board.totals() == {"stored": 2}


async def test_without_a_terminal_the_lines_are_plain(emu, tmp_path):
    out = io.StringIO()
    console = Console(file=out)  # a pipe: not a terminal
    assert not console.is_terminal
    display = LiveDisplay(console)
    with display:
        result = await image_to_video(
            still_prompt=f"plain {uuid.uuid4().hex[:6]} @hero", motion_prompt="drift",
            reference_images=REF, image_credentials=_creds(SegmindCredentials, emu),
            video_credentials=_creds(RunwayCredentials, emu), storage=str(tmp_path),
            name="pier",
        )
    text = out.getvalue()
    assert not display.live
    assert ESCAPE not in text
    lines = text.splitlines()
    video = "video 'pier' on runway (gen4_turbo)"
    states = [line.split(": ", 1)[1].split(",")[0] for line in lines if line.startswith(video)]
    # each state change once, in order (a fast job may be seen running at its first poll)
    assert states[0] == "queued" and states[-2:] == ["downloading", "stored"]
    assert len(states) == len(set(states))
    assert f"{video}: stored, job {result.video.job_id}, {result.video.key}" in lines
    assert f"still 'pier' on segmind (gen4_image): stored, job {result.still.job_id}, " \
           f"{result.still.key}" in lines
    assert lines[-1].startswith("2 jobs: 2 stored · ")


async def test_a_storyboard_shows_throttled_and_failed_jobs_and_a_broken_watcher_fails_nothing(
    emu, tmp_path
):
    # Runway runs one task per key at a time here: the second video waits THROTTLED. A third
    # shot's still fails (the emulator's fail marker), so its video never starts. Jobs of
    # 1.5 s, so that concurrent submits overlap even when a loaded machine spaces them out.
    emu.configure(latency=1.5)
    credentials = _creds(RunwayCredentials, emu)
    tag = uuid.uuid4().hex[:6]
    shots = [{"name": f"s{i}", "still_prompt": f"board {tag} {i} @hero{' [fail]' if i == 2 else ''}",
              "motion_prompt": "slow pan", "seed": 900 + i, "reference_images": REF}
             for i in range(3)]
    out = io.StringIO()
    display = LiveDisplay(Console(file=out))

    def broken(event):
        raise RuntimeError("a watcher that breaks")

    with subscribed(broken), display:
        state = await storyboard(shots=shots, credentials=credentials, storage=str(tmp_path),
                                 concurrency=3, return_state=True)
    assert state.is_failed()  # the failed shot, not the watcher
    text = out.getvalue()
    print(text)
    assert ESCAPE not in text
    assert re.search(r"^(still|video) 's[012]' on runway \(gen4_\w+\): throttled", text,
                     re.M), text
    assert re.search(r"^still 's2' on runway \(gen4_image\): failed, job \S+, \w+: ", text,
                     re.M), text
    assert "video 's2' on runway (gen4_turbo): not started" not in text  # a plain line per change
    assert display.board.totals() == {"stored": 4, "failed": 1, "not started": 1}
    assert text.splitlines()[-1].startswith("6 jobs: 4 stored, 1 failed, 1 not started")


async def test_image_to_video_keeps_a_progress_artifact_of_its_two_steps(emu, tmp_path):
    kwargs = dict(motion_prompt="drift", reference_images=REF,
                  image_credentials=_creds(SegmindCredentials, emu),
                  video_credentials=_creds(RunwayCredentials, emu), storage=str(tmp_path))
    done = await image_to_video(still_prompt=f"prog {uuid.uuid4().hex[:6]} @hero", name="quay",
                                **kwargs)
    failed = await image_to_video(still_prompt=f"prog {uuid.uuid4().hex[:6]} @hero [fail]",
                                  name="quay", return_state=True, **kwargs)
    quiet = await image_to_video(still_prompt=f"prog {uuid.uuid4().hex[:6]} @hero", name="quay",
                                 progress=False, **kwargs)
    assert failed.is_failed()

    async def progress_of(flow_run_id):
        async with get_client() as client:
            artifacts = await client.read_artifacts(artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
        return [a for a in artifacts if a.type == "progress"]

    [ok] = await progress_of(uuid.UUID(done.still.flow_run_id))
    assert ok.key == "image-to-video-progress" and float(ok.data) == 100.0
    assert ok.description == "image-to-video 'quay': 2 of 2 finished: still done, video done"
    [bad] = await progress_of(failed.state_details.flow_run_id)
    assert float(bad.data) == 50.0
    assert bad.description == (
        "image-to-video 'quay': 1 of 2 finished (1 failed): still failed, video not started")
    assert await progress_of(uuid.UUID(quiet.still.flow_run_id)) == []


@pytest.mark.timeout(180)
def test_the_storyboard_command_in_a_pipe_prints_plain_lines(tmp_path):
    shots = tmp_path / "shots.json"
    shots.write_text(json.dumps([
        {"name": "dock", "still_prompt": "a dock at dawn @hero", "motion_prompt": "pan",
         "seed": 11, "reference_images": REF},
    ]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    for key in ("SEGMIND_API_KEY", "AIMLAPI_API_KEY", "RUNWAYML_API_SECRET"):
        env.pop(key, None)
    # On the session's Prefect server: what is checked is the output, and starting Prefect's
    # temporary server in the process is proven by the demo's test (test_all_providers).
    env.update(PREFECT_HOME=str(tmp_path / "home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_API_URL=str(PREFECT_API_URL.value()))
    proc = subprocess.run(
        [sys.executable, "-m", "prefect_runway.cli", "storyboard", str(shots), "--emulator",
         "--latency", "0.3", "--fps", "4", "--storage", str(tmp_path / "out")],
        env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ESCAPE not in proc.stdout
    lines = proc.stdout.splitlines()
    assert "still 'dock' on segmind (gen4_image): queued" in lines
    assert any(line.startswith("video 'dock' on segmind (gen4_turbo): stored, job ")
               for line in lines), proc.stdout
    assert any(line.startswith("2 jobs: 2 stored") for line in lines), proc.stdout
    assert sorted(p.suffix for p in Path(tmp_path / "out").rglob("*.mp4")) == [".mp4"]
