"""The command line as a person meets it: a mistake is one line, exit 2, before anything starts.

Each case runs ``python -m prefect_runway.cli`` in a subprocess with its own ``PREFECT_HOME``:
no Prefect database may appear there (the temporary server never started) and no output
directory is created.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from prefect_runway import __version__

pytestmark = pytest.mark.timeout(120)  # each command is bounded at 60 s (run_cli)


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    for key in ("SEGMIND_API_KEY", "AIMLAPI_API_KEY", "RUNWAYML_API_SECRET"):
        env.pop(key, None)
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    return subprocess.run(
        [sys.executable, "-m", "prefect_runway.cli", *args],
        env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["demo", "--seed", "100000"], ["seed", "allowed: 1-99999"]),
        (["demo", "--still-prompt", ""], ["still's prompt", "empty"]),
        (["demo", "--motion-prompt", ""], ["video's prompt"]),
        (["demo", "--duration", "7"], ["duration", "allowed: 5, 10"]),
        (["demo", "--seed", "seven"], ["--seed", "'seven'"]),
        (["demo", "--latency", "0"], ["--latency", "above 0"]),
        (["demo", "--provider", "aimlapi", "--image-provider", "aimlapi"], ["--image-provider"]),
        (["demo", "--output", "/proc/no-such-dir/out"], ["--output", "writable"]),
        (["serve", "--shots", "no-such-shots.yaml"], ["shots", "is not a file"]),
        (["serve", "--credentials", "justaname"], ["--credentials", "block-type/name"]),
        (["emulator", "--port", "99999"], ["--port", "0-65535"]),
        (["bogus-command"], ["invalid choice"]),
        (["storyboard", "no-such-shots.yaml", "--emulator"], ["shots", "is not a file"]),
        (["storyboard", "no-such-shots.yaml", "--concurrency", "0"], ["--concurrency", "above 0"]),
    ],
)
def test_a_mistake_is_one_line_exit_2_and_nothing_starts(tmp_path, args, needles):
    proc = run_cli(tmp_path, *args)
    assert_one_line_error(proc, *needles)
    home = tmp_path / "prefect-home"
    assert not any(home.rglob("*.db")), "the Prefect server was started"
    assert not (tmp_path / "runway-outputs").exists()


def test_an_output_path_under_a_file_is_refused(tmp_path):
    (tmp_path / "a-file").write_text("x")
    proc = run_cli(tmp_path, "demo", "--output", str(tmp_path / "a-file" / "sub"))
    assert_one_line_error(proc, "--output", "Not a directory")


def test_a_busy_port_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_cli(tmp_path, "emulator", "--port", str(port))
    assert_one_line_error(proc, "--port", str(port), "in use")


def test_version_and_help_speak_plainly(tmp_path):
    version = run_cli(tmp_path, "--version")
    assert version.returncode == 0
    assert version.stdout.strip() == f"prefect-runway {__version__}"
    help_text = run_cli(tmp_path, "--help").stdout
    assert "``" not in help_text and ":func:" not in help_text
    assert "demo" in help_text and "emulator" in help_text


def test_the_emulator_banner_gives_each_block_its_base_url(tmp_path):
    from prefect_runway.emulator.server import banner

    text = banner("http://127.0.0.1:8765")
    assert "SegmindCredentials(base_url='http://127.0.0.1:8765')" in text
    assert "AimlapiCredentials(base_url='http://127.0.0.1:8765')" in text
    assert "RunwayCredentials(base_url='http://127.0.0.1:8765')" in text
    assert text.splitlines()[0] == "prefect-runway emulator on http://127.0.0.1:8765"


def test_storyboard_mistakes_in_the_file_or_the_credentials_are_one_line(tmp_path):
    shot = {"name": "dock", "still_prompt": "a dock @hero", "motion_prompt": "pan",
            "reference_images": [{"uri": "https://example.com/r.png", "tag": "hero"}]}
    good = tmp_path / "good.json"
    good.write_text(json.dumps([shot]))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{**shot, "seed": 100000}]))
    assert_one_line_error(run_cli(tmp_path, "storyboard", str(good)), "--credentials", "--emulator")
    assert_one_line_error(run_cli(tmp_path, "storyboard", str(bad), "--emulator"), "seed",
                          "1-99999")
    assert not any((tmp_path / "prefect-home").rglob("*.db")), "the Prefect server was started"
    assert not (tmp_path / "runway-outputs").exists()
