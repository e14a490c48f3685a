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
generation, the largest kinds, wall seconds, and RSS growth per chain.

``--floor`` also times the plain asyncio + httpx script of ``benchmarks.batch_overhead`` (the
floor) per size on the same emulator, and ``--no-rate-cap`` gives the credentials block no
client-side request cap (``max_requests_per_second=None``), as the floor has none: the
storyboard's wall time against the floor's is measured that way (``--sizes 1000 --floor
--no-rate-cap --modes storyboard no-progress``).

Targets (issue "Cheap on the orchestrator"): at most 15 Prefect API messages per generation
for a storyboard with default settings; RSS per in-flight chain under 100 KB at N = 1000; the
storyboard at N = 1000 at most 1.1x the floor's wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from benchmarks._common import (
    WORKER_ENV,
    EmulatorProcess,
    machine,
    process_rss_mb,
    report,
    reset_peak_rss,
    run_worker,
)

COLUMNS = ["N chains", "mode", "global limit", "ok", "requests", "events", "per generation",
           "top kinds (per generation)", "wall s", "RSS growth KB / chain"]
GCL_NAME = "bench-orchestrator-segmind"


async def _one(mode: str, n: int, emulator: str, gcl: bool, progress: bool = True,
               rate_cap: bool = True) -> dict[str, Any]:
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
                 "motion_prompt": "slow pan", "reference_images": ref, "seed": 1 + i}
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
        reset_peak_rss()
        rss_before, _ = process_rss_mb()
        with count_prefect_api_calls() as calls:
            started = time.monotonic()
            ok = await batch("run", n, out)
            wall = time.monotonic() - started
            await flush_prefect_workers()
        _, rss_peak = process_rss_mb()
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
    }


def run_one(mode: str, n: int, gcl: bool, emulator: str, timeout: float,
            progress: bool = True, rate_cap: bool = True) -> dict[str, Any]:
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
           "PREFECT_LOGGING_LEVEL": "WARNING"}
    env.pop("PREFECT_API_URL", None)
    env.update(WORKER_ENV)  # the smoke test's shared server, if any
    with tempfile.TemporaryDirectory(prefix="bench-orchestrator-home-") as home:
        if "PREFECT_API_URL" not in WORKER_ENV:
            env["PREFECT_HOME"] = home
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.orchestrator", "--one", mode, str(n),
             "--emulator", emulator] + (["--gcl"] if gcl else [])
            + ([] if progress else ["--no-progress"]) + ([] if rate_cap else ["--no-rate-cap"]),
            env=env, capture_output=True, text=True, timeout=timeout,
        )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        return {"mode": mode, "n": n, "global_limit": gcl, "ok": 0,
                "error": (proc.stderr or proc.stdout)[-1500:]}
    return json.loads(lines[-1])


def run_floor(n: int, emulator: str, latency: float, timeout: float) -> dict[str, Any]:
    """The plain asyncio + httpx script of ``benchmarks.batch_overhead`` on the same emulator:
    the wall-time floor for N chains (two generations each)."""
    raw = run_worker(["chains", "floor", "--emulator", emulator, "--chains", str(n),
                      "--warmup", "2", "--latency", str(latency)], timeout=timeout)
    return {"mode": "floor", "n": n, "global_limit": False,
            "ok": sum(1 for r in raw["records"] if r["ok"]), "wall_s": raw["wall_seconds"],
            "cpu_s": raw["cpu_seconds"]}


def row(r: dict[str, Any]) -> list[Any]:
    if r["mode"] == "floor":
        return [r["n"], "floor (asyncio + httpx)", "-", f"{r['ok']}/{r['n']}", "-", "-", "-",
                "-", round(r["wall_s"], 1), "-"]
    if "error" in r:
        return [r["n"], r["mode"], "yes" if r["global_limit"] else "no", 0, "-", "-", "-",
                "error: " + r["error"].strip().splitlines()[-1][:60], "-", "-"]
    gens = 2 * r["n"]
    top = ", ".join(f"{k} {v / gens:.1f}" for k, v in list(r["by_kind"].items())[:3])
    return [r["n"], r["mode"], "yes" if r["global_limit"] else "no", f"{r['ok']}/{r['n']}",
            r["requests"], r["events"], round(r["per_generation"], 2), top, round(r["wall_s"], 1),
            round(r["rss_kb_per_chain"], 1)]


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
    parser.add_argument("--gcl-modes", nargs="+", default=["off", "on"], choices=["off", "on"],
                        help="without and/or with the global rate limit")
    args = parser.parse_args(argv)
    if args.one:
        result = asyncio.run(_one(args.one[0], int(args.one[1]), args.emulator, args.gcl,
                                  progress=not args.no_progress, rate_cap=not args.no_rate_cap))
        print(json.dumps(result))
        return 0
    info = machine()
    results = []
    with EmulatorProcess(latency=args.latency, stock_media=True, video_fps=4) as emulator:
        cap = not args.no_rate_cap
        for n in args.sizes:
            if args.floor:
                results.append(run_floor(n, emulator.url, args.latency, args.timeout))
                print(row(results[-1]), flush=True)
            for mode in ("storyboard", "separate"):
                if mode not in args.modes or (mode == "separate" and n > args.separate_max):
                    continue
                for gcl in (False, True):
                    if ("on" if gcl else "off") not in args.gcl_modes:
                        continue
                    results.append(run_one(mode, n, gcl, emulator.url, args.timeout,
                                           rate_cap=cap))
                    print(row(results[-1]), flush=True)
            if "no-progress" in args.modes:
                # the storyboard without its progress artifact: what the progress updates cost
                results.append(run_one("storyboard", n, False, emulator.url, args.timeout,
                                       progress=False, rate_cap=cap))
                print(row(results[-1]), flush=True)
    report("benchmarks.orchestrator", argv, args.name,
           "Orchestrator cost per generation (Prefect API requests + events, RSS per chain)",
           COLUMNS, {"rows": [row(r) for r in results], "raw": results}, verdict(results), info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
