"""What every benchmark shares: the emulator in its own process, client workers in theirs,
memory and machine readings, and the table / JSON output.

Each client under test runs in a subprocess of its own (``python -m benchmarks._worker``),
so neither the emulator nor another client shares its CPU time slice accounting or its GIL,
and its peak RSS is its own. Every subprocess binds or talks to 127.0.0.1 only, is bounded in
time, and is killed in a ``finally``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
KEY = "benchmark-key"
#: Bound on any one control call to the emulator.
CONTROL_TIMEOUT = 30.0
#: Extra environment for every worker (the smoke tests point workers at their Prefect server).
WORKER_ENV: dict[str, str] = {}


# ---- the emulator, out of process --------------------------------------------------------------


class EmulatorProcess:
    """``python -m prefect_runway.emulator`` on 127.0.0.1 and a free port, in a subprocess.

    Configure it, set faults, read stats and jobs over its ``/_emulator/*`` routes.

    Example:
        ```python
        with EmulatorProcess(latency_range=[20, 40], media_cache=True) as emu:
            emu.url, emu.stats(), emu.jobs()
        ```
    """

    def __init__(self, **config: Any) -> None:
        self.config = config
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self._log = tempfile.NamedTemporaryFile(prefix="bench-emulator-", suffix=".log", delete=False)

    def __enter__(self) -> EmulatorProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "prefect_runway.emulator", "--port", "0", "--log-level", "warning"],
            stdout=subprocess.PIPE, stderr=self._log, text=True, cwd=ROOT.parent,
        )
        try:
            deadline = time.monotonic() + 60
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
            if not match:
                raise RuntimeError(f"emulator did not announce its URL: {line!r} ({self.log_tail()})")
            self.url = match.group(1)
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{self.url}/_emulator/health", timeout=2).status_code == 200:
                        break
                time.sleep(0.05)
            if self.config:
                self.configure(**self.config)
            return self
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        with contextlib.suppress(OSError):
            self._log.close()
            os.unlink(self._log.name)

    def log_tail(self, chars: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return Path(self._log.name).read_text()[-chars:]
        return ""

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(method, f"{self.url}{path}", json=body, timeout=CONTROL_TIMEOUT)
        response.raise_for_status()
        return response.json()

    def configure(self, **changes: Any) -> dict[str, Any]:
        return self._call("POST", "/_emulator/config", changes)

    def set_faults(self, **plan: Any) -> dict[str, Any]:
        return self._call("POST", "/_emulator/faults", plan)

    def clear_faults(self) -> None:
        self._call("DELETE", "/_emulator/faults")

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/_emulator/stats")

    def jobs(self) -> dict[str, list[dict[str, Any]]]:
        return self._call("GET", "/_emulator/jobs")

    def reset(self) -> None:
        self._call("POST", "/_emulator/reset")

    def rss_mb(self) -> tuple[float, float]:
        """(current, peak) RSS of the emulator process, MB."""
        return process_rss_mb(self.proc.pid if self.proc else None)


def make_still(url: str, *, provider: str = "segmind", ratio: str = "1280:720") -> str:
    """Have the emulator make one still (at whatever latency it is set to) and return its URL;
    used as every video job's input image, so that its media cache makes one video for all."""
    with httpx.Client(base_url=url, timeout=CONTROL_TIMEOUT) as http:
        if provider == "segmind":
            submit = http.post("/v2/runway-gen4-image", headers={"x-api-key": KEY}, json={
                "promptText": "benchmark still @ref", "ratio": ratio, "seed": 7,
                "referenceImages": [{"uri": "https://example.com/ref.png", "tag": "ref"}],
            })
            submit.raise_for_status()
            status_url = submit.json()["status_url"]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if http.get(status_url, headers={"x-api-key": KEY}).json()["status"] == "COMPLETED":
                    return http.get(submit.json()["response_url"], headers={"x-api-key": KEY}).json()["output"]
                time.sleep(0.05)
        raise RuntimeError("the emulator did not make the still in time")


# ---- workers ------------------------------------------------------------------------------------


def run_worker(args: Sequence[str], *, timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python -m benchmarks._worker ARGS --out FILE`` and return what it wrote.

    Raises:
        RuntimeError: the worker failed or ran past ``timeout`` (it is killed).
    """
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as directory:
        out = Path(directory) / "result.json"
        log = Path(directory) / "worker.log"
        with log.open("w") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "benchmarks._worker", *args, "--out", str(out)],
                stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT.parent,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {}), **WORKER_ENV},
                start_new_session=True,  # its own process group: its children end with it
            )
            try:
                code = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                raise RuntimeError(
                    f"worker {' '.join(args[:2])} ran past {timeout:.0f}s: {log.read_text()[-3000:]}"
                ) from None
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
                # Anything the worker left behind (e.g. Prefect's temporary server, should the
                # worker not have stopped it) is in its process group.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGTERM)
        if code != 0 or not out.exists():
            raise RuntimeError(f"worker {' '.join(args[:2])} failed ({code}): {log.read_text()[-3000:]}")
        return json.loads(out.read_text())


# ---- memory ------------------------------------------------------------------------------------


def _status_kb(pid: int | str, field: str) -> int | None:
    with contextlib.suppress(OSError, AttributeError):
        text = Path(f"/proc/{pid}/status").read_text()
        match = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
        return int(match.group(1)) if match else None
    return None


def process_rss_mb(pid: int | str | None = "self") -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MB (1e6 bytes), from /proc; (nan, nan) if
    unreadable. The peak of this process falls back to ``getrusage``."""
    if pid is None:
        return math.nan, math.nan
    current = _status_kb(pid, "VmRSS")
    peak = _status_kb(pid, "VmHWM")
    if peak is None and pid == "self":
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (
        current * 1.024e-3 if current is not None else math.nan,
        peak * 1.024e-3 if peak is not None else math.nan,
    )


def process_cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU seconds a process has used so far, from /proc; nan if unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int | str = "self") -> list[str]:
    """The direct children of a process (all its threads'), from /proc."""
    pids: list[str] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            pids += (task / "children").read_text().split()
        except OSError:
            continue
    return pids


def reset_peak_rss() -> bool:
    """Reset this process's RSS high-water mark (Linux ``clear_refs``); False if not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# ---- the machine ---------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What this ran on: CPU, cores, memory, kernel, Python, package versions, load."""
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = math.nan
    with contextlib.suppress(OSError, AttributeError, ValueError):
        kb = re.search(r"^MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text(), re.M).group(1)
        mem_gib = round(int(kb) / 1024 / 1024, 1)
    versions = {}
    from importlib.metadata import PackageNotFoundError, version

    for name in ("prefect", "httpx", "segmind", "runwayml", "moto", "boto3", "uvicorn"):
        with contextlib.suppress(PackageNotFoundError):
            versions[name] = version(name)
    return {
        "cpu": cpu or platform.processor(),
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
        "load_average": list(os.getloadavg()),
    }


def machine_line(info: dict[str, Any]) -> str:
    load = ", ".join(f"{x:.2f}" for x in info["load_average"])
    return (f"{info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, Linux "
            f"{info['kernel']}, Python {info['python']}; load average {load}")


# ---- statistics and output -----------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation; nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.{digits}f}"
    return str(value)


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-markdown table."""
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in cells)) for i, col in enumerate(columns)]
    line = lambda items: "| " + " | ".join(s.ljust(w) for s, w in zip(items, widths, strict=True)) + " |"  # noqa: E731
    out = [line(columns), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(r) for r in cells)
    return "\n".join(out)


def write_json(name: str, payload: dict[str, Any]) -> Path:
    """Write ``benchmarks/results/NAME.json`` (gitignored) and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "finished_at": datetime.now(timezone.utc).isoformat(), **payload}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def command_line(module: str, argv: list[str] | None) -> str:
    """How the benchmark ``module`` was run: ``python -m benchmarks.NAME ARGS``."""
    return " ".join(["python", "-m", module, *(sys.argv[1:] if argv is None else argv)])


def report(module: str, argv: list[str] | None, name: str, title: str, columns: Sequence[str],
           outcome: dict[str, Any], checks: list[str], info: dict[str, Any]) -> Path:
    """Print a benchmark's title, table, verdict lines and machine; write them with
    ``outcome`` to ``results/NAME.json``. ``info`` is :func:`machine` from before the run
    (its load average after the run is added here)."""
    info["load_average_after"] = machine()["load_average"]
    text = table(columns, outcome["rows"])
    print(title + "\n")
    print(text)
    print()
    for line in checks:
        print(line)
    print(f"\nmachine: {machine_line(info)}")
    path = write_json(name, {"command": command_line(module, argv), "machine": info, "table": text,
                             "verdict": checks, **outcome})
    print(f"wrote {path}")
    return path
