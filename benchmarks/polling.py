"""Polling: how soon each client notices a finished job, and how many status requests it spends.

``python -m benchmarks.polling`` runs 50 video jobs at once per client against the emulator
(out of process), each job's latency drawn uniformly from 20-40 s (seeded: every client gets
the same 50 latencies), and compares:

* the ``segmind`` SDK 1.3.0: ``submit_async(...).wait()`` in a thread per job (1 s interval);
* the ``runwayml`` SDK 5.24.0: ``image_to_video.create(...).wait_for_task_output()`` in a
  thread per job (polls every 4.5-7.5 s), as shipped;
* ours: ``GenerationClient.submit`` + ``wait`` on one event loop, with a credentials block's
  default poll settings (adaptive; 0.5 s shortest and 15 s longest interval) and no
  client-side rate cap (the SDKs have none either), on the Segmind and on the Runway
  protocol. Two batches in one process: *cold* (nothing learned yet; the built-in latency
  priors of the public APIs apply to the emulator's endpoint) and *warm* (the next batch).

The delay of a job is ``noticed - done``: ``noticed`` is when the client's wait returned
(after its result call, where the protocol has one), ``done`` is when the emulator's job table
says the job completed — both ``time.monotonic()`` (CLOCK_MONOTONIC, shared by every process
of the machine). Status requests are the emulator's own count. The emulator makes one small
video (5 frames) and serves it from its media cache to every job, so media making is not
what is measured.

Target: ours has a mean delay no worse than the segmind SDK's, with at most 60% of its
status requests per job.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from benchmarks._common import (
    EmulatorProcess,
    fmt,
    machine,
    make_still,
    mean,
    percentile,
    report,
    run_worker,
)

CLIENTS = {
    "segmind-sdk": ("segmind SDK job.wait()", "segmind", []),
    "runwayml-sdk": ("runwayml SDK wait_for_task_output()", "runway", []),
    "ours-segmind": ("ours, Segmind protocol", "segmind", ["--batches", "2", "--public-priors", "--rps", "none"]),
    "ours-runway": ("ours, Runway protocol", "runway", ["--batches", "2", "--public-priors", "--rps", "none"]),
}
COLUMNS = ["client", "batch", "ok / jobs", "mean delay s", "p95 delay s", "max delay s",
           "status req/job", "result req/job", "wall s", "client CPU s", "client peak RSS MB"]


def summarize(batch: dict[str, Any], provider: str) -> dict[str, Any]:
    """Delays, counts and failures of one batch."""
    records = batch["records"]
    done_at = batch["done_at"]
    delays = [
        r["noticed"] - done_at[r["id"]]
        for r in records
        if r.get("ok") and done_at.get(r.get("id")) is not None
    ]
    before, after = batch["stats_before"][provider], batch["stats_after"][provider]
    n = len(records)
    errors: dict[str, int] = {}
    for r in records:
        if not r.get("ok"):
            kind = r.get("error", "?").split(":")[0]
            errors[kind] = errors.get(kind, 0) + 1
    return {
        "jobs": n,
        "ok": sum(1 for r in records if r.get("ok")),
        "failed": sum(1 for r in records if not r.get("ok")),
        "errors": errors,
        "mean_delay": mean(delays),
        "p95_delay": percentile(delays, 0.95),
        "max_delay": max(delays) if delays else float("nan"),
        "status_per_job": (after["status_calls"] - before["status_calls"]) / n if n else float("nan"),
        "result_per_job": (after["result_calls"] - before["result_calls"]) / n if n else float("nan"),
        "http_errors": {k: v - before["errors"].get(k, 0) for k, v in after["errors"].items()
                        if v - before["errors"].get(k, 0)},
        "wall_seconds": batch["wall_seconds"],
        "delays": delays,
    }


def run(jobs: int = 50, low: float = 20.0, high: float = 40.0, seed: int = 1,
        clients: list[str] | None = None, priors: bool = True) -> dict[str, Any]:
    """Run every client against one emulator process; return the rows and raw results."""
    clients = clients or list(CLIENTS)
    rows, results = [], {}
    config = dict(latency=0.05, media_cache=True, video_fps=1, seed=seed,
                  runway_concurrency=None, segmind_concurrency=None, aimlapi_concurrency=None)
    with EmulatorProcess(**config) as emu:
        for name in clients:
            label, provider, extra = CLIENTS[name]
            emu.reset()
            emu.configure(latency_range=None, latency=0.05)
            image = make_still(emu.url)
            emu.configure(latency_range=[low, high])
            batches = 2 if "--batches" in extra else 1
            if not priors:
                extra = [a for a in extra if a != "--public-priors"]
            raw = run_worker(
                ["jobs", name, "--emulator", emu.url, "--image", image, "--jobs", str(jobs), *extra],
                timeout=batches * (high + 180),
            )
            results[name] = {"label": label, "raw": raw, "batches": []}
            for batch in raw["batches"]:
                summary = summarize(batch, provider)
                results[name]["batches"].append(summary)
                tag = "" if batches == 1 else ("cold" if batch["batch"] == 1 else "warm")
                rows.append([
                    label, tag, f"{summary['ok']} / {summary['jobs']}", summary["mean_delay"],
                    summary["p95_delay"], summary["max_delay"], summary["status_per_job"],
                    summary["result_per_job"], summary["wall_seconds"], raw["cpu_seconds"],
                    raw["rss_peak_mb"],
                ])
        emulator_rss = emu.rss_mb()
    return {"rows": rows, "results": results, "emulator_peak_rss_mb": emulator_rss[1],
            "config": {"jobs": jobs, "latency_range": [low, high], "seed": seed, **config}}


def verdict(results: dict[str, Any]) -> list[str]:
    """The target, checked on what was measured."""
    lines = []
    sdk = results.get("segmind-sdk")
    ours = results.get("ours-segmind")
    if not sdk or not ours:
        return lines
    base = sdk["batches"][0]
    for summary, tag in zip(ours["batches"], ("cold", "warm"), strict=False):
        ok_delay = summary["mean_delay"] <= base["mean_delay"]
        share = summary["status_per_job"] / base["status_per_job"]
        lines.append(
            f"ours ({tag}) vs segmind SDK: mean delay {fmt(summary['mean_delay'], 3)} s vs "
            f"{fmt(base['mean_delay'], 3)} s ({'met' if ok_delay else 'NOT met'}); status requests "
            f"{share:.0%} of the SDK's ({'met' if share <= 0.6 else 'NOT met'}: at most 60%)"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.polling", description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--low", type=float, default=20.0, help="shortest job latency, s")
    parser.add_argument("--high", type=float, default=40.0, help="longest job latency, s")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--clients", nargs="*", choices=list(CLIENTS), default=None)
    parser.add_argument("--no-priors", action="store_true",
                        help="ours: start cold with no latency prior at all")
    parser.add_argument("--name", default="polling", help="results/NAME.json")
    args = parser.parse_args(argv)
    info = machine()
    outcome = run(args.jobs, args.low, args.high, args.seed, args.clients, not args.no_priors)
    for result in outcome["results"].values():
        result["raw"] = {k: v for k, v in result["raw"].items() if k != "batches"}
    title = (
        f"Polling: {args.jobs} video jobs at once per client, latencies uniform "
        f"{args.low:g}-{args.high:g} s (seed {args.seed}); emulator out of process, one cached "
        f"5-frame video for every job"
    )
    report("benchmarks.polling", argv, args.name, title, COLUMNS, outcome, verdict(outcome["results"]), info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
