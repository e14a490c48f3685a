"""Orchestrator cost: the Prefect API requests and events per generation, and memory per chain.

``python -m benchmarks.orchestrator`` runs, for N = 50, 200 and 1000 chains (a still, then
its video: two generations each):

* **storyboard**: one ``storyboard`` flow run of N shots (``concurrency=N``);
* **separate**: N ``image_to_video`` flow runs at once (``asyncio.gather``) — only up to
  ``--separate-max`` (default 200): Prefect's temporary SQLite server refuses more;
* **storyboard, no progress**: the storyboard with ``progress=False`` (no progress artifact);

each with and without a Prefect global rate limit (``global_rate_limit`` on the credentials
block: a limit of 50 slots decaying at 50 per second, so it never throttles here and only its
API cost is measured). It counts, with :func:`prefect_runway.testing.api_calls.count_prefect_api_calls`,
every REST request to the Prefect API and every event the client process sends, by kind
(state transitions, logs, artifacts, concurrency, ...), and reads the process's RSS before
the batch and at its peak (``VmHWM``).

Each configuration runs in a process of its own (``--one``), against Prefect's temporary
server and the emulator out of process (fixed latency, stock media), with local storage and
previews off (CPU work, not orchestration). Reported: requests, events, their sum per
generation, the largest kinds, wall seconds, RSS growth per chain, the CPU seconds of the
client process, of Prefect's server (its child) and of the emulator during the batch, and the
provider requests the emulator answered per generation (submits, status polls, result reads,
downloads; the 2-chain warm-up included).

``--floor`` also times the plain asyncio + httpx script of ``benchmarks.batch_overhead`` (the
floor) per size on the same emulator, and ``--no-rate-cap`` gives the credentials block no
client-side request cap (``max_requests_per_second=None``), as the floor has none: the
storyboard's wall time against the floor's is measured that way (``--sizes 1000 --floor
--no-rate-cap --modes storyboard no-progress``).

Where the memory and the time go: ``--trace-memory K`` traces Python allocations
(``tracemalloc``) in each configuration's process and prints, at the traced peak, the growth
per chain by package and the K source lines that grew most (``BENCH_TRACE_FRAMES=12`` for
call stacks instead of lines); the RSS column then includes tracemalloc's own cost.
``--profile K`` prints a cProfile of each batch (``BENCH_PROFILE_OUT=file``
keeps it for ``pstats``).

Targets (issue "Cheap on the orchestrator"): at most 15 Prefect API messages per generation
for a storyboard with default settings; RSS per in-flight chain under 100 KB at N = 1000; the
storyboard at N = 1000 at most 1.1x the floor's wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import subprocess
import sys
import sysconfig
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._common import (
    WORKER_ENV,
    EmulatorProcess,
    child_pids,
    machine,
    process_cpu_seconds,
    process_rss_mb,
    report,
    reset_peak_rss,
    run_worker,
)

COLUMNS = ["N chains", "mode", "global limit", "ok", "requests", "events", "per generation",
           "top kinds (per generation)", "wall s", "RSS growth KB / chain",
           "CPU s: client / Prefect server / emulator",
           "provider requests / generation (submit, status, result, download)"]
PROVIDER_COUNTS = ("total_submissions", "status_calls", "result_calls", "downloads")
GCL_NAME = "bench-orchestrator-segmind"


def _package(filename: str) -> str:
    """A source file's package, for grouping allocations: ``prefect``, ``pydantic``,
    ``prefect_runway.engine``, ``asyncio``, ..."""
    parts = Path(filename).parts
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            return parts[parts.index(marker) + 1].removesuffix(".py")
    if "prefect_runway" in parts:
        i = parts.index("prefect_runway")
        return ".".join(p.removesuffix(".py") for p in parts[i:i + 2])
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    if Path(filename).is_relative_to(stdlib):
        return Path(filename).relative_to(stdlib).parts[0].removesuffix(".py")
    return filename


class _PeakSnapshot:
    """Samples ``tracemalloc`` each ``every`` seconds and keeps a snapshot at the largest
    traced size (a new one once it has grown 5 % past the last)."""

    def __init__(self, every: float = 1.0) -> None:
        self.every = every
        self.best = 0
        self.snapshot: tracemalloc.Snapshot | None = None

    async def run(self) -> None:
        while True:
            current, _ = tracemalloc.get_traced_memory()
            if current > self.best * 1.05:
                self.best = current
                self.snapshot = tracemalloc.take_snapshot()
            await asyncio.sleep(self.every)


def _memory_sites(baseline: tracemalloc.Snapshot, peak: tracemalloc.Snapshot, n: int,
                  top: int) -> dict[str, Any]:
    """Growth from ``baseline`` to ``peak`` per chain: the ``top`` sites (a source line, or
    with more than one traced frame the call stack to it, innermost first) and every
    package (of the innermost frame), in KB and allocations per chain."""
    frames = tracemalloc.get_traceback_limit()
    diff = [d for d in peak.compare_to(baseline, "traceback" if frames > 1 else "lineno")
            if d.size_diff > 0]
    packages: dict[str, list[float]] = {}
    for d in diff:
        name = _package(d.traceback[-1].filename)
        size, count = packages.setdefault(name, [0.0, 0.0])
        packages[name] = [size + d.size_diff, count + d.count_diff]
    return {
        "traced_growth_kb_per_chain": sum(d.size_diff for d in diff) / 1024 / n,
        "sites": [{"site": " <- ".join(f"{f.filename}:{f.lineno}"
                                        for f in reversed(d.traceback)),
                   "kb_per_chain": d.size_diff / 1024 / n, "blocks_per_chain": d.count_diff / n}
                  for d in diff[:top]],
        "packages": [{"package": k, "kb_per_chain": v[0] / 1024 / n, "blocks_per_chain": v[1] / n}
                     for k, v in sorted(packages.items(), key=lambda kv: -kv[1][0])],
    }


async def _one(mode: str, n: int, emulator: str, gcl: bool, progress: bool = True,
               rate_cap: bool = True, trace: int = 0, profile: int = 0) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from pydantic import SecretStr

    from prefect_runway import SegmindCredentials
    from prefect_runway.flows import image_to_video, storyboard
    from prefect_runway.testing.api_calls import count_prefect_api_calls, flush_prefect_workers

    if gcl:
        async with get_client() as client:
            try:
                await client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=GCL_NAME, limit=50, slot_decay_per_second=50.0))
            except Exception:  # noqa: BLE001 - already there from the warm-up
                pass
    # rate_cap=False: no client-side request cap (max_requests_per_second=None), as the floor.
    cap: dict[str, Any] = {} if rate_cap else {"max_requests_per_second": None}
    creds = SegmindCredentials(api_key=SecretStr("benchmark-key"), base_url=emulator,
                               global_rate_limit=GCL_NAME if gcl else None, **cap)
    ref = [{"uri": "https://example.com/ref.png", "tag": "hero"}]

    def shots(prefix: str, count: int) -> list[dict[str, Any]]:
        return [{"name": f"{prefix}-{i}", "still_prompt": f"{prefix} still {i} @hero",
                 # the prefix in the motion prompt too: with stock media every still has the
                 # same URL, so a warm-up video would otherwise be the same request (a cache hit)
                 "motion_prompt": f"{prefix} slow pan", "reference_images": ref, "seed": 1 + i}
                for i in range(count)]

    async def batch(prefix: str, count: int, out: str) -> int:
        if mode == "storyboard":
            summary = await storyboard(shots=shots(prefix, count), credentials=creds, storage=out,
                                       concurrency=max(count, 1), preview=None,
                                       progress=progress)
            return summary.completed
        results = await asyncio.gather(*(
            image_to_video(still_prompt=s["still_prompt"], motion_prompt=s["motion_prompt"],
                           credentials=creds, reference_images=ref, seed=s["seed"], storage=out,
                           name=s["name"], preview=None)
            for s in shots(prefix, count)), return_exceptions=True)
        return sum(1 for r in results if not isinstance(r, BaseException))

    with tempfile.TemporaryDirectory(prefix="bench-orchestrator-") as out:
        await batch("warmup", 2, out)  # imports, the temporary server, flow registration
        await flush_prefect_workers()
        sampler = None
        if trace:
            tracemalloc.start(int(os.environ.get("BENCH_TRACE_FRAMES", "1")))
            baseline = tracemalloc.take_snapshot()
            peak = _PeakSnapshot()
            sampler = asyncio.create_task(peak.run())
        reset_peak_rss()
        rss_before, _ = process_rss_mb()
        profiler = cProfile.Profile() if profile else None
        cpu_before = _cpu_split()
        with count_prefect_api_calls() as calls:
            started = time.monotonic()
            if profiler is not None:
                profiler.enable()
            ok = await batch("run", n, out)
            if profiler is not None:
                profiler.disable()
            wall = time.monotonic() - started
            await flush_prefect_workers()
        cpu = {k: v - cpu_before[k] for k, v in _cpu_split().items()}
        _, rss_peak = process_rss_mb()
        if profiler is not None:  # the event loop's thread only; to stderr, as a table
            stats = pstats.Stats(profiler, stream=sys.stderr)
            stats.sort_stats("tottime").print_stats(profile)
            stats.sort_stats("cumulative").print_stats(profile)
            if os.environ.get("BENCH_PROFILE_OUT"):  # for pstats' callers and callees
                profiler.dump_stats(os.environ["BENCH_PROFILE_OUT"])
        memory: dict[str, Any] = {}
        if sampler is not None:
            sampler.cancel()
            if peak.snapshot is not None:
                memory = _memory_sites(baseline, peak.snapshot, n, trace)
            tracemalloc.stop()
    generations = 2 * n
    return {
        "mode": mode if progress else f"{mode}, no progress", "n": n, "global_limit": gcl,
        "rate_cap": rate_cap,
        "ok": ok, "wall_s": wall,
        "requests": calls.requests, "events": sum(calls.events.values()),
        "per_generation": calls.per_generation(generations), "by_kind": calls.by_kind(),
        "paths": dict(calls.paths.most_common()),
        "rss_before_mb": rss_before, "rss_peak_mb": rss_peak,
        "rss_kb_per_chain": (rss_peak - rss_before) * 1024 / max(n, 1),
        "cpu_s": cpu,
        **({"memory": memory} if memory else {}),
    }


def _cpu_split() -> dict[str, float]:
    """CPU seconds so far of this process (all its threads), of its children (Prefect's
    temporary server) and of the emulator (``BENCH_EMULATOR_PID``)."""
    emulator = os.environ.get("BENCH_EMULATOR_PID")
    return {"client": process_cpu_seconds(),
            "server": sum(process_cpu_seconds(pid) for pid in child_pids()),
            "emulator": process_cpu_seconds(emulator) if emulator else float("nan")}


def run_one(mode: str, n: int, gcl: bool, emulator: str, timeout: float,
            progress: bool = True, rate_cap: bool = True, trace: int = 0,
            profile: int = 0, emulator_pid: int | None = None) -> dict[str, Any]:
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
           "PREFECT_LOGGING_LEVEL": "WARNING"}
    env.pop("PREFECT_API_URL", None)
    env.update(WORKER_ENV)  # the smoke test's shared server, if any
    if emulator_pid is not None:
        env["BENCH_EMULATOR_PID"] = str(emulator_pid)
    with tempfile.TemporaryDirectory(prefix="bench-orchestrator-home-") as home:
        if "PREFECT_API_URL" not in WORKER_ENV:
            env["PREFECT_HOME"] = home
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.orchestrator", "--one", mode, str(n),
             "--emulator", emulator] + (["--gcl"] if gcl else [])
            + ([] if progress else ["--no-progress"]) + ([] if rate_cap else ["--no-rate-cap"])
            + (["--trace-memory", str(trace)] if trace else [])
            + (["--profile", str(profile)] if profile else []),
            env=env, capture_output=True, text=True, timeout=timeout,
        )
    if profile:
        start = proc.stderr.find("   Ordered by")
        sys.stderr.write(proc.stderr[max(start - 200, 0):])
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        return {"mode": mode, "n": n, "global_limit": gcl, "ok": 0,
                "error": (proc.stderr or proc.stdout)[-1500:]}
    return json.loads(lines[-1])


def run_floor(n: int, emulator: str, latency: float, timeout: float,
              emulator_pid: int | None = None) -> dict[str, Any]:
    """The plain asyncio + httpx script of ``benchmarks.batch_overhead`` on the same emulator:
    the wall-time floor for N chains (two generations each)."""
    emulator_before = process_cpu_seconds(emulator_pid) if emulator_pid else float("nan")
    raw = run_worker(["chains", "floor", "--emulator", emulator, "--chains", str(n),
                      "--warmup", "2", "--latency", str(latency)], timeout=timeout)
    emulator_cpu = (process_cpu_seconds(emulator_pid) if emulator_pid else float("nan")) - emulator_before
    return {"mode": "floor", "n": n, "global_limit": False,
            "ok": sum(1 for r in raw["records"] if r["ok"]), "wall_s": raw["wall_seconds"],
            # the emulator's figure includes the 2-chain warm-up (the script times only its batch)
            "cpu_s": {"client": raw["cpu_seconds"], "server": 0.0, "emulator": emulator_cpu}}


def print_memory(r: dict[str, Any]) -> None:
    """The traced allocations of one configuration (``--trace-memory``), if any."""
    memory = r.get("memory")
    if not memory:
        return
    print(f"traced Python growth at the peak: {memory['traced_growth_kb_per_chain']:.1f} KB per "
          f"chain ({r['mode']}, N={r['n']})")
    print(f"  {'KB/chain':>9} {'blocks':>8}  package")
    for p in memory["packages"][:15]:
        print(f"  {p['kb_per_chain']:9.1f} {p['blocks_per_chain']:8.1f}  {p['package']}")
    print(f"  {'KB/chain':>9} {'blocks':>8}  source line")
    for s in memory["sites"]:
        print(f"  {s['kb_per_chain']:9.1f} {s['blocks_per_chain']:8.1f}  {s['site']}")


def _cpu_cell(r: dict[str, Any]) -> str:
    cpu = r.get("cpu_s")
    if not isinstance(cpu, dict):
        return "-"
    return " / ".join("-" if cpu[k] != cpu[k] else f"{cpu[k]:.1f}"  # nan: not measured
                      for k in ("client", "server", "emulator"))


def _provider_cell(r: dict[str, Any]) -> str:
    counts = r.get("provider_requests")
    if not counts:
        return "-"
    gens = 2 * r["n"]
    return ", ".join(f"{counts[k] / gens:.2f}" for k in PROVIDER_COUNTS)


def _with_provider_counts(emulator: EmulatorProcess, run: Callable[..., dict[str, Any]],
                          *args: Any, **kwargs: Any) -> dict[str, Any]:
    """``run(*args, **kwargs)``'s result with the provider requests the emulator answered
    meanwhile (Segmind's: the benchmark's credentials), the 2-chain warm-up included."""
    before = emulator.stats().get("segmind", {})
    result = run(*args, **kwargs)
    after = emulator.stats().get("segmind", {})
    result["provider_requests"] = {k: after.get(k, 0) - before.get(k, 0) for k in PROVIDER_COUNTS}
    return result


def row(r: dict[str, Any]) -> list[Any]:
    if r["mode"] == "floor":
        return [r["n"], "floor (asyncio + httpx)", "-", f"{r['ok']}/{r['n']}", "-", "-", "-",
                "-", round(r["wall_s"], 1), "-", _cpu_cell(r), _provider_cell(r)]
    if "error" in r:
        return [r["n"], r["mode"], "yes" if r["global_limit"] else "no", 0, "-", "-", "-",
                "error: " + r["error"].strip().splitlines()[-1][:60], "-", "-", "-", "-"]
    gens = 2 * r["n"]
    top = ", ".join(f"{k} {v / gens:.1f}" for k, v in list(r["by_kind"].items())[:3])
    return [r["n"], r["mode"], "yes" if r["global_limit"] else "no", f"{r['ok']}/{r['n']}",
            r["requests"], r["events"], round(r["per_generation"], 2), top, round(r["wall_s"], 1),
            round(r["rss_kb_per_chain"], 1), _cpu_cell(r), _provider_cell(r)]


def verdict(results: list[dict[str, Any]]) -> list[str]:
    lines = []
    floors = {r["n"]: r["wall_s"] for r in results if r["mode"] == "floor"}
    for r in results:
        if r["mode"] != "floor" and "error" not in r and r["n"] in floors:
            ratio = r["wall_s"] / floors[r["n"]]
            target = (f" (target <= 1.1x: {'met' if ratio <= 1.1 else 'NOT met'})"
                      if r["mode"] == "storyboard" and not r["global_limit"] else "")
            lines.append(f"{r['mode']} N={r['n']}{', global limit' if r['global_limit'] else ''}: "
                         f"{r['wall_s']:.1f} s = {ratio:.2f}x the floor's {floors[r['n']]:.1f} s"
                         f"{target}")
    for r in results:
        if "error" in r or r["mode"] != "storyboard" or r["global_limit"]:
            continue
        met = "met" if r["per_generation"] <= 15 else "NOT met"
        lines.append(f"storyboard N={r['n']}: {r['per_generation']:.2f} Prefect API messages per "
                     f"generation (target <= 15: {met}); RSS {r['rss_kb_per_chain']:.0f} KB per "
                     f"chain (target < 100 KB at N=1000)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.orchestrator",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 1000])
    parser.add_argument("--separate-max", type=int, default=200,
                        help="largest N for separate flow runs")
    parser.add_argument("--latency", type=float, default=5.0, help="emulator seconds per job")
    parser.add_argument("--timeout", type=float, default=1800.0, help="per configuration")
    parser.add_argument("--name", default="orchestrator", help="results/NAME.json")
    parser.add_argument("--one", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--emulator", help=argparse.SUPPRESS)
    parser.add_argument("--gcl", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-progress", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--floor", action="store_true",
                        help="also time the plain asyncio + httpx script (the floor) per size")
    parser.add_argument("--no-rate-cap", action="store_true",
                        help="credentials without the client-side request cap "
                             "(max_requests_per_second=None), as the floor: for wall times")
    parser.add_argument("--modes", nargs="+", default=["storyboard", "separate", "no-progress"],
                        choices=["storyboard", "separate", "no-progress"])
    parser.add_argument("--trace-memory", type=int, default=0, metavar="K",
                        help="also trace Python allocations (tracemalloc: slower, and the RSS "
                             "figure then includes its own cost) and print the K source lines "
                             "and the packages that grew most per chain, at the traced peak")
    parser.add_argument("--profile", type=int, default=0, metavar="K",
                        help="profile each storyboard or separate batch (cProfile, the event "
                             "loop's thread) and print the K functions with the most own and "
                             "cumulative time to stderr")
    parser.add_argument("--gcl-modes", nargs="+", default=["off", "on"], choices=["off", "on"],
                        help="without and/or with the global rate limit")
    args = parser.parse_args(argv)
    if args.one:
        result = asyncio.run(_one(args.one[0], int(args.one[1]), args.emulator, args.gcl,
                                  progress=not args.no_progress, rate_cap=not args.no_rate_cap,
                                  trace=args.trace_memory, profile=args.profile))
        print(json.dumps(result))
        return 0
    info = machine()
    results = []
    with EmulatorProcess(latency=args.latency, stock_media=True, video_fps=4) as emulator:
        cap = not args.no_rate_cap
        emulator_pid = emulator.proc.pid if emulator.proc else None
        for n in args.sizes:
            if args.floor:
                results.append(_with_provider_counts(
                    emulator, run_floor, n, emulator.url, args.latency, args.timeout,
                    emulator_pid))
                print(row(results[-1]), flush=True)
            for mode in ("storyboard", "separate"):
                if mode not in args.modes or (mode == "separate" and n > args.separate_max):
                    continue
                for gcl in (False, True):
                    if ("on" if gcl else "off") not in args.gcl_modes:
                        continue
                    results.append(_with_provider_counts(
                        emulator, run_one, mode, n, gcl, emulator.url, args.timeout,
                        rate_cap=cap, trace=args.trace_memory, profile=args.profile,
                        emulator_pid=emulator_pid))
                    print(row(results[-1]), flush=True)
                    print_memory(results[-1])
            if "no-progress" in args.modes:
                # the storyboard without its progress artifact: what the progress updates cost
                results.append(_with_provider_counts(
                    emulator, run_one, "storyboard", n, False, emulator.url, args.timeout,
                    progress=False, rate_cap=cap, trace=args.trace_memory,
                    profile=args.profile, emulator_pid=emulator_pid))
                print(row(results[-1]), flush=True)
                print_memory(results[-1])
    report("benchmarks.orchestrator", argv, args.name,
           "Orchestrator cost per generation (Prefect API requests + events, RSS per chain)",
           COLUMNS, {"rows": [row(r) for r in results], "raw": results}, verdict(results), info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
