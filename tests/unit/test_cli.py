"""The command line as a person meets it: a mistake is one line, exit 2, before anything starts.

Each case runs ``python -m prefect_runway.cli`` in a subprocess with its own ``PREFECT_HOME``:
no Prefect database may appear there (the temporary server never started) and no output
directory is created. The table of mistakes runs in one subprocess (see ``mistakes``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from prefect_runway import __version__

pytestmark = pytest.mark.timeout(120)  # a command is bounded at 60 s, the mistakes at 90 s


def cli_env(home: Path) -> dict[str, str]:
    """This environment without a Prefect API or provider keys, and Prefect's home at ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    for key in ("SEGMIND_API_KEY", "AIMLAPI_API_KEY", "RUNWAYML_API_SECRET"):
        env.pop(key, None)
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    return env


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prefect_runway.cli", *args],
        env=cli_env(tmp_path / "prefect-home"), capture_output=True, text=True, timeout=60,
        cwd=tmp_path,
    )


#: Runs each case ``[working directory, *args]`` of the JSON on stdin as ``python -m
#: prefect_runway.cli *args`` would (the module's code run afresh as ``__main__``, exit status
#: from SystemExit, an uncaught exception printed as the interpreter does), its stdout and
#: stderr read at file descriptors 1 and 2; says on its own stderr which case it begins, and
#: prints a JSON list of [status, stdout, stderr, whether a Prefect database exists under
#: PREFECT_HOME after the case].
_MISTAKES_RUNNER = r"""
import json, os, runpy, sys, tempfile, traceback
from pathlib import Path

home = Path(os.environ["PREFECT_HOME"])
real_stdout, real_stderr = os.dup(1), os.dup(2)
results = []
for cwd, *args in json.load(sys.stdin):
    os.write(real_stderr, (json.dumps(args) + "\n").encode())
    os.chdir(cwd)
    captured = [tempfile.TemporaryFile(), tempfile.TemporaryFile()]
    saved = [os.dup(1), os.dup(2)]
    for fd, file in ((1, captured[0]), (2, captured[1])):
        os.dup2(file.fileno(), fd)
    sys.argv = ["prefect_runway/cli.py", *args]
    try:
        runpy.run_module("prefect_runway.cli", run_name="__main__", alter_sys=True)
        status = 0
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    for fd, copy in ((1, saved[0]), (2, saved[1])):
        os.dup2(copy, fd)
        os.close(copy)
    out, err = (file.seek(0) or file.read().decode(errors="replace") for file in captured)
    results.append([status, out, err, any(home.rglob("*.db"))])
os.write(real_stdout, json.dumps(results).encode())
"""


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


MISTAKES = [
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
    # Every option that takes a number: nan, inf and out-of-range values are one line.
    (["demo", "--latency", "nan"], ["--latency", "'nan'", "above 0"]),
    (["demo", "--latency", "inf"], ["--latency", "'inf'", "above 0"]),  # it hung
    (["demo", "--latency", "1e400"], ["--latency", "above 0"]),
    (["demo", "--fps", "100000"], ["--fps", "'100000'", "allowed: 1-60"]),
    (["demo", "--fps", "nan"], ["--fps", "'nan'"]),
    (["storyboard", "x.json", "--emulator", "--latency", "nan"], ["--latency", "above 0"]),
    (["storyboard", "x.json", "--emulator", "--fps", "61"], ["--fps", "allowed: 1-60"]),
    (["storyboard", "x.json", "--concurrency", "inf"], ["--concurrency", "'inf'"]),
    (["serve", "--concurrency", "-1"], ["--concurrency", "above 0"]),
    (["serve", "--limit", "0"], ["--limit", "above 0"]),
    (["blocks", "create", "--max-requests-per-second", "nan"],
     ["--max-requests-per-second", "above 0"]),
    (["emulator", "--latency", "inf"], ["latency", "finite"]),
    (["emulator", "--latency", "nan"], ["latency"]),
    (["emulator", "--fps", "1000"], ["video_fps", "60"]),
    (["emulator", "--rate-limit", "nan"], ["rate_limit_per_key"]),
    (["demo", "--name", "two\nlines"], ["--name", "control character"]),
]


@pytest.fixture(scope="module")
def mistakes(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, Any, bool]]:
    """Every case of MISTAKES, each in a working directory of its own, through the module's
    code in one subprocess (one start of the interpreter and of Prefect's imports, not one
    per case): (working directory, the finished process, a Prefect database after it)."""
    root = tmp_path_factory.mktemp("mistakes")
    cwds = [root / f"case-{i}" for i in range(len(MISTAKES))]
    for cwd in cwds:
        cwd.mkdir()
    try:
        ran = subprocess.run(
            [sys.executable, "-c", _MISTAKES_RUNNER],
            input=json.dumps([[str(cwd), *args] for cwd, (args, _) in zip(cwds, MISTAKES, strict=True)]),
            env=cli_env(root / "prefect-home"), capture_output=True, text=True, timeout=90, cwd=root,
        )
    except subprocess.TimeoutExpired as exc:
        begun = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
        raise AssertionError(f"the table of mistakes did not end in 90 s; the last case begun: "
                             f"prefect-runway {' '.join(json.loads(begun[-1])) if begun else '?'}") from None
    assert ran.returncode == 0, ran.stderr[-3000:]
    return [(cwd, subprocess.CompletedProcess(args, status, out, err), db)
            for cwd, (args, _), (status, out, err, db)
            in zip(cwds, MISTAKES, json.loads(ran.stdout), strict=True)]


@pytest.mark.parametrize(("args", "needles"), MISTAKES)
def test_a_mistake_is_one_line_exit_2_and_nothing_starts(mistakes, args, needles):
    cwd, proc, database = mistakes[MISTAKES.index((args, needles))]
    assert_one_line_error(proc, *needles)
    assert not database, "the Prefect server was started"
    assert not (cwd / "runway-outputs").exists()


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


def test_ledger_ls_tells_unreadable_records_apart_and_a_missing_storage_is_an_error(tmp_path):
    ledger = tmp_path / "out" / "prefect-runway-ledger"
    ledger.mkdir(parents=True)
    scopes = ["prefect-runway-submit-" + c * 40 for c in "7d"]
    for scope in scopes:
        (ledger / f"{scope}.json").write_bytes(b"\x00\xff not json")
    listed = run_cli(tmp_path, "ledger", "ls", "--storage", str(tmp_path / "out"))
    assert listed.returncode == 0, listed.stderr
    table, _, hint = listed.stdout.partition("\n\n")
    rows = [line.split() for line in table.splitlines()[1:]]
    assert sorted(row[0] for row in rows) == ["7" * 16, "d" * 16]  # not 'prefect-runway-s' twice
    assert all(row[1] == "unreadable" for row in rows)
    assert "prefect-runway ledger resolve FINGERPRINT --storage" in hint

    # What `ls` shows is what `resolve` takes.
    resolved = run_cli(tmp_path, "ledger", "resolve", "7" * 16, "--storage", str(tmp_path / "out"))
    assert resolved.returncode == 0, resolved.stderr
    doubts = run_cli(tmp_path, "ledger", "ls", "--doubts", "--storage", str(tmp_path / "out"))
    assert "7" * 16 not in doubts.stdout and "d" * 16 in doubts.stdout

    for command in (["ls"], ["ls", "--doubts"], ["resolve", "d" * 16]):
        missing = run_cli(tmp_path, "ledger", *command, "--storage", str(tmp_path / "no-such-dir"))
        assert_one_line_error(missing, "--storage", "no-such-dir", "not a directory")
    assert not (tmp_path / "no-such-dir").exists()


def test_a_hostile_storyboard_file_is_one_line(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(
        ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
        + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 10)]
        + ["shots: *l9"]))
    (tmp_path / "binary.json").write_bytes(bytes(range(256)))
    (tmp_path / "nan.json").write_text('[{"still_prompt": "x", "duration": Infinity}]')
    for name, needles in (("bomb.yaml", ["shots", "500000 values"]),
                          ("binary.json", ["shots", "not UTF-8"]),
                          ("nan.json", ["row 1", "duration", "not a number"])):
        proc = run_cli(tmp_path, "storyboard", str(tmp_path / name), "--emulator")
        assert_one_line_error(proc, *needles)
    assert not any((tmp_path / "prefect-home").rglob("*.db")), "the Prefect server was started"
