"""Batch overhead: N image-to-video chains through our flows against a plain asyncio + httpx
script doing the same HTTP work (the floor).

``python -m benchmarks.batch_overhead`` runs, for N = 50, 200 and 1000 chains at once:

* **floor**: a plain script on one event loop — per chain, submit a gen4_image still on
  Segmind's protocol, poll, fetch the result, stream the PNG to disk, then submit the
  gen4_turbo video of that still, poll, fetch the result, stream the MP4 to disk. It knows
  the job latency (first poll right at it, then every 0.5 s): the best a script can do.
* **ours, storyboard**: one ``storyboard`` flow run of N shots, all at once
  (``concurrency=N``): per shot the same tasks as ``image_to_video`` (cached, persisted
  submit; wait; verified download with sidecar), in one flow run;
* **ours, image_to_video**: N ``image_to_video`` flow runs at once (``asyncio.gather``), each
  its own flow run with its tasks and artifacts.

Ours runs on Prefect's temporary server (SQLite, its own process, started by the client as
in any local run) with default settings and logging, a credentials block with default poll
settings (adaptive) and no client-side rate cap (the floor has none), previews off (they are
CPU work the floor does not do) and local storage.

Both run in a process of their own after an untimed warm-up of a few chains (imports,
connections, Prefect's server; for ours also the latency of the emulator's jobs). The
emulator runs out of process with a fixed latency per job and **stock media**: one still and
one video per size, made once and served to every job, so making media is not what is
measured. Reported: wall time of the N chains, its ratio to the floor, CPU seconds of the
client process and of Prefect's server process, and the client's RSS before the batch and at
its peak.

Target at N = 200: at most 1.5x the floor; memory that does not grow with output size.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from typing import Any

from benchmarks._common import (
    EmulatorProcess,
    machine,
    report,
    run_worker,
)

COLUMNS = ["N chains", "client", "ok", "wall s", "x floor", "client CPU s", "server CPU s",
           "RSS before MB", "RSS peak MB", "MB stored"]


def _server_cpu(raw: dict[str, Any]) -> float:
    before, after = raw.get("children_before", {}), raw.get("children_after", {})
    return sum(
        child["cpu_seconds"] - before.get(pid, {}).get("cpu_seconds", 0.0)
        for pid, child in after.items()
    )


LABELS = {
    "floor": "floor (asyncio + httpx)",
    "storyboard": "ours: storyboard flow (1 run, N shots)",
    "flows": "ours: N image_to_video flow runs",
}


def run(sizes: list[int], latency: float, fps: int, warmup: int, timeout: float,
        clients: list[str], flows_max: int, big_fps: int | None) -> dict[str, Any]:
    rows, results = [], []
    config = dict(latency=latency, stock_media=True, media_cache=True, video_fps=fps,
                  segmind_concurrency=None, runway_concurrency=None, aimlapi_concurrency=None)
    plan = [(n, fps, ["floor", *[c for c in clients if c != "floor"]]) for n in sizes]
    if big_fps and 200 in sizes:
        # The same batch with videos several times larger: memory must not follow.
        plan.insert(sizes.index(200) + 1, (200, big_fps, [c for c in clients if c == "storyboard"]))
    with EmulatorProcess(**config) as emu:
        for n, video_fps, run_clients in plan:
            emu.configure(video_fps=video_fps)
            floor_wall = None
            for client in run_clients:
                if client == "flows" and n > flows_max:
                    continue
                emu.reset()
                with tempfile.TemporaryDirectory(prefix="bench-prefect-home-") as home:
                    raw = run_worker(
                        ["chains", client, "--emulator", emu.url, "--chains", str(n),
                         "--warmup", str(warmup), "--latency", str(latency)],
                        timeout=timeout,
                        env={"PREFECT_HOME": home, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"},
                    )
                ok = sum(1 for r in raw["records"] if r["ok"])
                stored = sum(r.get("bytes", 0) for r in raw["records"]) / 1e6
                wall = raw["wall_seconds"]
                if client == "floor":
                    floor_wall = wall
                elif floor_wall is None:  # a variant row: against the same N's floor
                    floor_wall = next((r["wall_seconds"] for r in results
                                       if r["client"] == "floor" and r["chains"] == n), None)
                ratio = wall / floor_wall if floor_wall else float("nan")
                server = _server_cpu(raw)
                errors = sorted({r.get("error", "") for r in raw["records"] if not r["ok"]})[:3]
                results.append({
                    "chains": n, "client": client, "ok": ok, "video_fps": video_fps, "wall_seconds": wall, "ratio": ratio,
                    "cpu_seconds": raw["cpu_seconds"], "server_cpu_seconds": server,
                    "rss_before_mb": raw["rss_before_mb"], "rss_peak_mb": raw["rss_peak_mb"],
                    "peak_reset": raw["peak_reset"], "stored_mb": stored, "errors": errors,
                })
                label = LABELS[client] + ("" if video_fps == fps else f", {video_fps} fps videos")
                rows.append([n, label,
                             f"{ok}/{n}", wall, ratio, raw["cpu_seconds"], server if client != "floor" else "-",
                             raw["rss_before_mb"], raw["rss_peak_mb"], stored])
        emulator_rss = emu.rss_mb()
    return {"rows": rows, "results": results, "emulator_peak_rss_mb": emulator_rss[1],
            "config": {"sizes": sizes, "warmup": warmup, **config}}


def verdict(results: list[dict[str, Any]]) -> list[str]:
    lines = []
    for r in results:
        if r["client"] != "floor" and r["chains"] == 200 and r is next(
                x for x in results if x["client"] == r["client"] and x["chains"] == 200):
            lines.append(f"N=200, {LABELS[r['client']]}: {r['wall_seconds']:.1f} s = {r['ratio']:.2f}x "
                         f"the floor ({'met' if r['ratio'] <= 1.5 else 'NOT met'}: at most 1.5x)")
    for client in ("storyboard", "flows"):
        ours = [r for r in results if r["client"] == client]
        if ours:
            lines.append(f"{LABELS[client]}, RSS growth during the batch vs MB stored: " + "; ".join(
                f"N={r['chains']}: +{r['rss_peak_mb'] - r['rss_before_mb']:.0f} MB for "
                f"{r['stored_mb']:.0f} MB stored ({r['video_fps']} fps)" for r in ours))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.batch_overhead", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 1000])
    parser.add_argument("--latency", type=float, default=10.0, help="emulator seconds per job")
    parser.add_argument("--fps", type=int, default=4, help="frame rate of the stock video")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=1800.0, help="bound per run, s")
    parser.add_argument("--clients", nargs="+", choices=list(LABELS), default=["floor", "storyboard", "flows"])
    parser.add_argument("--flows-max", type=int, default=200,
                        help="largest N for N image_to_video flow runs (SQLite refuses more)")
    parser.add_argument("--big-fps", type=int, default=24,
                        help="also run N=200 with videos at this frame rate (larger outputs)")
    parser.add_argument("--name", default="batch_overhead")
    args = parser.parse_args(argv)
    info = machine()
    outcome = run(args.sizes, args.latency, args.fps, args.warmup, args.timeout, args.clients,
                  args.flows_max, args.big_fps)
    title = (
        f"Batch overhead: N image-to-video chains at once (Segmind protocol), emulator latency "
        f"{args.latency:g} s per job, out of process, stock media (one 1280x720 still and one "
        f"5 s {args.fps} fps video, made once)"
    )
    report("benchmarks.batch_overhead", argv, args.name, title, COLUMNS, outcome, verdict(outcome["results"]), info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
