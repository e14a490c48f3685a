"""Exactly once (issue 11): the submission ledger, the submit lock, and every setting checked
before the first paid request — against the emulator, through the public API.

* a lost answer leaves a doubt: the re-run refuses (no new billable submission) until
  ``force=True`` or ``prefect-runway ledger resolve``;
* flow processes SIGKILLed at random moments around their submits, then re-run: never a
  duplicate billable submission; a refusal only for a submit the killed process sent;
* two identical storyboards started together in two processes: no duplicate;
* each invalid setting: a typed error, and the emulator sees no request at all.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from prefect.settings import PREFECT_API_URL

from prefect_runway import InvalidRequest, StorageError, SubmissionUncertain, image_to_video
from prefect_runway.cli import main as cli_main
from prefect_runway.emulator import Emulator, EmulatorConfig
from prefect_runway.errors import SubmissionInDoubt
from prefect_runway.tasks.ledger import ledger_for
from prefect_runway.tasks.ledger_records import Intent

SCRIPT = Path(__file__).parent / "scripts" / "ledger_run.py"
REF = [{"uri": "https://example.com/ref.png", "tag": "hero"}]

pytestmark = pytest.mark.timeout(240)


def _segmind(emu: Emulator) -> dict[str, Any]:
    return emu.stats()["segmind"]


def _requests_seen(emu: Emulator) -> int:
    """Every request the emulator counted, over every provider."""
    total = 0
    for name, stats in emu.stats().items():
        if name == "media_cache":
            continue
        total += stats["total_submissions"] + stats["status_calls"] + stats["result_calls"]
        total += stats["downloads"] + stats["uploads"] + sum(stats["errors"].values())
    return total


async def _i2v(credentials: Any, prompt: str, storage: Any, **kwargs: Any) -> Any:
    return await image_to_video(
        still_prompt=prompt + " @hero", motion_prompt="slow push in", credentials=credentials,
        reference_images=REF, seed=11, storage=storage, **kwargs,
    )


async def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """The ``prefect-runway`` command, as a user types it (in a thread: it runs its own loop)."""
    capsys.readouterr()
    code = await asyncio.to_thread(cli_main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---- the lost answer -------------------------------------------------------------------------


async def test_a_lost_answer_is_a_doubt_until_force_or_resolve(
    runway_emulator: Emulator, segmind_credentials: Any, tmp_path: Path, capsys: Any,
) -> None:
    emu = runway_emulator
    out = str(tmp_path / "out")
    for n, prompt in enumerate((f"lost answer A {tmp_path.name}", f"lost answer B {tmp_path.name}")):
        emu.set_faults({"scripted": [{"route": "segmind.submit", "nth": 1, "fault": "reset_after"}]})
        before = _segmind(emu)["total_submissions"]
        duplicates = _segmind(emu)["duplicate_submissions"]
        try:
            with pytest.raises(SubmissionUncertain):
                await _i2v(segmind_credentials, prompt, out)
        finally:
            emu.clear_faults()
        assert _segmind(emu)["total_submissions"] == before + 1  # sent, answer lost: billed

        # A plain re-run refuses, naming the fingerprint, the time and the run; sends nothing.
        with pytest.raises(SubmissionInDoubt) as info:
            await _i2v(segmind_credentials, prompt, out)
        doubt = info.value
        assert isinstance(doubt, SubmissionUncertain)
        assert doubt.fingerprint and doubt.intent.flow_run_id
        assert doubt.intent.created_at.isoformat() in str(doubt)
        assert doubt.intent.flow_run_id in str(doubt) and doubt.fingerprint[:16] in str(doubt)
        assert _segmind(emu)["total_submissions"] == before + 1

        code, listed, _ = await _cli(capsys, "ledger", "ls", "--doubts", "--storage", out)
        assert code == 0 and doubt.fingerprint[:16] in listed and "doubt" in listed

        if n == 0:  # resolved by the user: the next run submits it again, once
            code, said, err = await _cli(capsys, "ledger", "resolve", doubt.fingerprint[:16],
                                   "--storage", out)
            assert code == 0, err
            assert doubt.fingerprint[:16] in said
            code, listed, _ = await _cli(capsys, "ledger", "ls", "--doubts", "--storage", out)
            assert code == 0 and doubt.fingerprint[:16] not in listed
            result = await _i2v(segmind_credentials, prompt, out)
        else:  # force=True: a deliberate resubmit
            result = await _i2v(segmind_credentials, prompt, out, force=True)
        assert Path(result.video.location).is_file()
        stats = _segmind(emu)
        assert stats["total_submissions"] == before + 3  # the still once more, then its video
        # The lost still was billed, and is billed exactly once more; nothing else twice.
        assert stats["duplicate_submissions"] == duplicates + 1

        # Done: a re-run reuses everything, nothing is sent.
        await _i2v(segmind_credentials, prompt, out)
        assert _segmind(emu)["total_submissions"] == before + 3

    # A CLI mistake is one line, exit status 2.
    code, _, err = await _cli(capsys, "ledger", "resolve", "ffffffffffff", "--storage", out)
    assert code == 2 and err.count("\n") == 1 and "fingerprint" in err


# ---- kills around the submit -----------------------------------------------------------------


def _start(emu: Emulator, out: Path, prompt: str, mode: str = "i2v", shots: int = 3) -> subprocess.Popen:
    env = dict(os.environ)
    env.update(
        PREFECT_API_URL=str(PREFECT_API_URL.value()), PREFECT_SERVER_ANALYTICS_ENABLED="false",
        LEDGER_URL=emu.url, LEDGER_OUT=str(out), LEDGER_PROMPT=prompt, LEDGER_MODE=mode,
        LEDGER_SHOTS=str(shots),
    )
    return subprocess.Popen([sys.executable, str(SCRIPT)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def _finish(proc: subprocess.Popen, timeout: float = 150) -> str:
    try:
        output, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            _kill(proc)
    return output


def _wait_ready(proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError("the flow process ended before it was ready")
        if line.startswith("READY"):
            return
    raise AssertionError("the flow process never got ready")


@pytest.mark.slow
def test_kills_around_the_submit_never_pay_twice(tmp_path: Path) -> None:
    rng = random.Random(1107)
    rounds, at_once = 6, 3
    with Emulator(EmulatorConfig(latency=0.3, video_fps=2)) as emu:
        outcomes: list[tuple[str, str]] = []
        for batch in range(rounds // at_once):
            work = [(tmp_path / f"out-{batch}-{i}", f"kill {batch}-{i} {tmp_path.name}")
                    for i in range(at_once)]
            procs = [_start(emu, out, prompt) for out, prompt in work]
            killed: list[int] = []
            for proc in procs:
                _wait_ready(proc)
            for proc in procs:
                # Each dies at a random moment: after a random delay, or just after a submit
                # reached the provider (its answer, the ledger's job record and Prefect's
                # result record are then in flight).
                if rng.random() < 0.5:
                    seen = _segmind(emu)["total_submissions"]
                    deadline = time.monotonic() + 15
                    while _segmind(emu)["total_submissions"] == seen and time.monotonic() < deadline:
                        time.sleep(0.005)
                    time.sleep(rng.uniform(0, 0.3))
                else:
                    time.sleep(rng.uniform(0, 1.5))
                killed.append(proc.pid)
                _kill(proc)
            assert _segmind(emu)["duplicate_submissions"] == 0
            reruns = [_start(emu, out, prompt) for out, prompt in work]
            for (out, _), proc, pid in zip(work, reruns, killed, strict=True):
                output = _finish(proc)
                assert proc.returncode in (0, 3), output[-3000:]
                if proc.returncode == 0:
                    outcomes.append(("done", out.name))
                    assert "DONE" in output and len(list(out.glob("*.mp4"))) == 1, output[-3000:]
                    continue
                # Refused: only a submit the killed process sent and never saw answered.
                fingerprint = output.split("DOUBT", 1)[1].split()[0]
                records = [r for r in _ledger_records(out) if r.fingerprint == fingerprint]
                assert records and all(isinstance(r, Intent) for r in records), records
                assert {r.pid for r in records} == {pid}
                outcomes.append(("doubt", out.name))
            stats = _segmind(emu)
            assert stats["duplicate_submissions"] == 0, stats["billable"]
        assert len(outcomes) == rounds
        print("outcomes:", outcomes)


def _ledger_records(out: Path) -> list[Any]:
    return asyncio.run(ledger_for(str(out)).list())


@pytest.mark.slow
def test_two_identical_storyboards_at_once_pay_once(tmp_path: Path) -> None:
    out = tmp_path / "out"
    shots = 3
    with Emulator(EmulatorConfig(latency=0.5, video_fps=2)) as emu:
        prompt = f"twins {tmp_path.name}"
        procs = [_start(emu, out, prompt, mode="storyboard", shots=shots) for _ in range(2)]
        for proc in procs:
            _wait_ready(proc)
        outputs = [_finish(proc, timeout=180) for proc in procs]
        stats = _segmind(emu)
    for proc, output in zip(procs, outputs, strict=True):
        assert proc.returncode == 0 and "DONE" in output, output[-3000:]
    assert stats["duplicate_submissions"] == 0, stats["billable"]
    assert stats["total_submissions"] == 2 * shots  # a still and a video per shot, once
    assert len(list(out.glob("*.mp4"))) == shots


# ---- every setting checked before the first paid request -------------------------------------


@pytest.fixture()
def quiet_emulator() -> Any:
    with Emulator(EmulatorConfig(latency=0.2, video_fps=2)) as emu:
        yield emu


def _creds(emu: Emulator) -> Any:
    from prefect_runway.blocks import SegmindCredentials
    from prefect_runway.testing.fixtures import _fast

    return _fast(SegmindCredentials, emu.url)


INVALID_SETTINGS = [
    ("key_template climbs out", dict(key_template="../x/{name}.{ext}"), InvalidRequest, "key_template"),
    ("key_template absolute", dict(key_template="/tmp/abs-{name}.{ext}"), InvalidRequest, "key_template"),
    ("key_template attribute", dict(key_template="{name.__class__}.{ext}"), InvalidRequest, "key_template"),
    ("preview webm", dict(preview="webm"), InvalidRequest, "preview"),
    ("storage empty", dict(storage=""), InvalidRequest, "storage"),
    ("storage in /proc", dict(storage="/proc/x"), StorageError, "storage"),
    ("storage under a file", dict(storage="FILE/sub"), StorageError, "storage"),
    ("credentials block missing", dict(credentials="segmind-credentials/no-such-block"),
     InvalidRequest, "credentials"),
]


@pytest.mark.parametrize("case, kwargs, error, field", INVALID_SETTINGS,
                         ids=[c[0] for c in INVALID_SETTINGS])
async def test_an_invalid_setting_is_refused_before_any_request(
    quiet_emulator: Emulator, tmp_path: Path, case: str, kwargs: dict[str, Any],
    error: type[Exception], field: str,
) -> None:
    (tmp_path / "FILE").write_text("a file, not a directory")
    settings = {"storage": str(tmp_path / "out"), "credentials": _creds(quiet_emulator)}
    settings.update(kwargs)
    if settings["storage"] == "FILE/sub":
        settings["storage"] = str(tmp_path / "FILE" / "sub")
    credentials = settings.pop("credentials")
    with pytest.raises(error) as info:
        await _i2v(credentials, f"invalid {case} {tmp_path.name}", **settings)
    assert field in str(info.value)
    assert not isinstance(info.value, OSError)
    assert _requests_seen(quiet_emulator) == 0


async def test_s3_settings_are_checked_before_any_request(
    quiet_emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No AWS credentials at all; then a bucket that does not exist (moto's server)."""
    from s3_helpers import moto_server

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with moto_server() as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        credentials = _creds(quiet_emulator)
        with pytest.raises(StorageError) as info:
            await _i2v(credentials, f"s3 no keys {tmp_path.name}", "s3://no-keys/out")
        assert "credentials" in str(info.value)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        with pytest.raises(StorageError) as info:
            await _i2v(credentials, f"s3 no bucket {tmp_path.name}", "s3://no-such-bucket/out")
        assert "no-such-bucket" in str(info.value)
    assert _requests_seen(quiet_emulator) == 0


def test_a_ledger_record_is_plain_json_without_secrets(tmp_path: Path) -> None:
    """What `ledger ls` reads is what the flows wrote (checked on a fresh record)."""
    from prefect_runway.tasks.ledger_records import IntentMeta

    ledger = ledger_for(str(tmp_path))
    meta = IntentMeta(fingerprint="ab" * 32, provider="segmind",
                      base_url="https://user:pw@api.example.com/v1", model="gen4_image")
    asyncio.run(ledger.begin("prefect-runway-submit-" + "c" * 40, meta))
    (record,) = (tmp_path / "prefect-runway-ledger").glob("*.json")
    data = json.loads(record.read_text())
    assert data["state"] == "intent" and data["api_origin"] == "https://api.example.com"
    assert "pw" not in record.read_text()
