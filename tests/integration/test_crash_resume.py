"""A flow process killed with SIGKILL after submit, mid-poll and mid-download is re-run:
the re-run resumes the submitted jobs (no duplicate submission) and stores complete files."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL

from prefect_runway.emulator import Emulator, EmulatorConfig
from prefect_runway.models import StoredOutput

SCRIPT = Path(__file__).parent / "scripts" / "crash_run.py"


def _start(emu: Emulator, out: Path, prompt: str) -> subprocess.Popen:
    env = dict(os.environ)
    env.update(
        PREFECT_API_URL=str(PREFECT_API_URL.value()), PREFECT_SERVER_ANALYTICS_ENABLED="false",
        CRASH_URL=emu.url, CRASH_OUT=str(out), CRASH_PROMPT=prompt,
    )
    return subprocess.Popen([sys.executable, str(SCRIPT)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _wait_for(predicate, proc: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the flow process ended before {what}: {proc.stdout.read()[-3000:]}")
        if time.monotonic() > deadline:
            _kill(proc)
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; the flow process "
                                 f"({SCRIPT.name}) said: {proc.stdout.read()[-3000:]}")
        time.sleep(0.02)


def _kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _rerun(emu: Emulator, out: Path, prompt: str) -> None:
    proc = _start(emu, out, prompt)
    try:
        output, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        _kill(proc)
        output, _ = proc.communicate()
        raise AssertionError(f"the re-run ({SCRIPT.name}) did not end in 120 s: "
                             f"{output[-3000:]}") from None
    finally:
        if proc.poll() is None:
            _kill(proc)
    assert proc.returncode == 0 and "DONE" in output, output[-3000:]


def _assert_complete(out: Path) -> None:
    files = sorted(p for p in out.iterdir() if p.suffix in (".png", ".mp4"))
    assert sorted(p.suffix for p in files) == [".mp4", ".png"], files
    for path in files:
        sidecar = StoredOutput.model_validate_json(Path(f"{path}.json").read_text())
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sidecar.sha256
        assert path.stat().st_size == sidecar.size
    assert not [p for p in out.iterdir() if p.name.startswith(".part")], "partial files left"


def _segmind(emu: Emulator) -> dict:
    return emu.stats()["segmind"]


@pytest.mark.slow
@pytest.mark.timeout(270)  # waits of at most 90 + 30 s, a re-run of at most 120 s
@pytest.mark.parametrize("moment", ["after-submit", "mid-poll", "mid-download"])
def test_sigkill_then_rerun_resumes_without_resubmitting(tmp_path, moment):
    with Emulator(EmulatorConfig(latency=3.0, video_fps=4)) as emu:
        out = tmp_path / "out"
        prompt = f"crash {moment} {tmp_path.name}"
        if moment == "mid-download":
            # The first video download hangs for a while before breaking: the kill lands in it.
            emu.set_faults(scripted=[{"route": "media.download", "nth": 2, "fault": "truncate", "delay": 20}])
        proc = _start(emu, out, prompt)
        try:
            if moment == "after-submit":
                # The still's job is submitted and its id persisted: the first poll proves it.
                _wait_for(lambda: _segmind(emu)["status_calls"] >= 1, proc, 90, "the first poll")
            elif moment == "mid-poll":
                # The video job is submitted; with 3 s of latency it is being polled for a while.
                _wait_for(lambda: _segmind(emu)["total_submissions"] >= 2, proc, 90, "the video submit")
                polls = _segmind(emu)["status_calls"]
                _wait_for(lambda: _segmind(emu)["status_calls"] > polls, proc, 30, "a poll of the video")
            else:
                _wait_for(lambda: out.exists() and any(p.name.startswith(".part") for p in out.iterdir())
                          and _segmind(emu)["total_submissions"] >= 2, proc, 90, "the video download")
                time.sleep(0.3)
            _kill(proc)
        finally:
            if proc.poll() is None:
                _kill(proc)
        submitted_before = _segmind(emu)["total_submissions"]
        _rerun(emu, out, prompt)
        stats = _segmind(emu)
        assert stats["duplicate_submissions"] == 0
        assert stats["total_submissions"] == 2  # one still, one video, whatever was killed
        assert submitted_before >= 1
        _assert_complete(out)
