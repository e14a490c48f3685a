"""Rate-limited scale: 500 jobs at once against a provider that allows 20 requests per second
per key.

``python -m benchmarks.rate_limited`` starts the emulator out of process with its per-key
rate limit on (``rate_limit_per_key=20``: a token bucket of 20, then 429 with Retry-After),
and runs 500 video jobs (latencies uniform 20-40 s, seeded; one cached 5-frame video served
to all) with each client:

* the ``segmind`` SDK: ``submit_async(...).wait()`` in a thread per job, as shipped;
* the ``runwayml`` SDK: ``image_to_video.create(...).wait_for_task_output()`` in a thread
  per job, as shipped (it retries 429 twice);
* ours: ``GenerationClient.submit`` + ``wait`` from a credentials block with its defaults —
  adaptive polling and the shared per-key limiter at 10 requests per second — on the Segmind
  and on the Runway protocol; and on the Segmind protocol with the budget set just under
  the provider's limit (``max_requests_per_second=18``), as the README advises.

It reports how many jobs each client completes and fails (and why), how long it takes, and
how many 429s the emulator had to send. Target: ours completes all 500 with zero failures.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from benchmarks._common import (
    EmulatorProcess,
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
    "ours-segmind": ("ours, Segmind protocol (10 req/s default)", "segmind", ["--public-priors"]),
    "ours-runway": ("ours, Runway protocol (10 req/s default)", "runway", ["--public-priors"]),
    # The README's advice: set the block's budget just under the provider's limit.
    "ours-segmind-18": ("ours, Segmind protocol, max_requests_per_second=18", "segmind",
                        ["--public-priors", "--rps", "18"]),
}
COLUMNS = ["client", "completed", "failed", "failures", "wall s", "429s served", "requests",
           "median turnaround s", "client CPU s", "client peak RSS MB"]


def summarize(raw: dict[str, Any], provider: str) -> dict[str, Any]:
    batch = raw["batches"][0]
    records = batch["records"]
    before, after = batch["stats_before"][provider], batch["stats_after"][provider]
    errors: dict[str, int] = {}
    for r in records:
        if not r.get("ok"):
            kind = r.get("error", "?").split(":")[0]
            errors[kind] = errors.get(kind, 0) + 1
    requests = sum(
        (after[k] - before[k]) for k in ("status_calls", "result_calls")
    ) + (after["total_submissions"] - before["total_submissions"])
    served_429 = after["errors"].get("429", 0) - before["errors"].get("429", 0)
    turnaround = [r["noticed"] - r["start"] for r in records if r.get("ok")]
    return {
        "jobs": len(records),
        "completed": sum(1 for r in records if r.get("ok")),
        "failed": sum(1 for r in records if not r.get("ok")),
        "errors": errors,
        "wall_seconds": batch["wall_seconds"],
        "served_429": served_429,
        "requests_answered": requests,
        "median_turnaround": percentile(turnaround, 0.5),
        "mean_turnaround": mean(turnaround),
    }


def run(jobs: int = 500, rate: float = 20.0, low: float = 20.0, high: float = 40.0, seed: int = 1,
        clients: list[str] | None = None, timeout: float = 1500.0, priors: bool = True) -> dict[str, Any]:
    clients = clients or list(CLIENTS)
    rows, results = [], {}
    config = dict(latency=0.05, media_cache=True, video_fps=1, seed=seed,
                  runway_concurrency=None, segmind_concurrency=None, aimlapi_concurrency=None)
    with EmulatorProcess(**config) as emu:
        for name in clients:
            label, provider, extra = CLIENTS[name]
            if not priors:
                extra = [a for a in extra if a != "--public-priors"]
            emu.reset()
            emu.configure(latency_range=None, latency=0.05)
            image = make_still(emu.url)
            emu.configure(latency_range=[low, high])
            emu.set_faults(rate_limit_per_key=rate)
            try:
                raw = run_worker(
                    ["jobs", name.removesuffix("-18"), "--emulator", emu.url, "--image", image, "--jobs", str(jobs), *extra],
                    timeout=timeout,
                )
            finally:
                emu.clear_faults()
            summary = summarize(raw, provider)
            results[name] = {"label": label, "summary": summary,
                             "cpu_seconds": raw["cpu_seconds"], "rss_peak_mb": raw["rss_peak_mb"],
                             "threads_peak": raw["threads_peak"]}
            failures = ", ".join(f"{k} {v}" for k, v in sorted(summary["errors"].items())) or "-"
            rows.append([label, summary["completed"], summary["failed"], failures,
                         summary["wall_seconds"], summary["served_429"], summary["requests_answered"],
                         summary["median_turnaround"], raw["cpu_seconds"], raw["rss_peak_mb"]])
        emulator_rss = emu.rss_mb()
    return {"rows": rows, "results": results, "emulator_peak_rss_mb": emulator_rss[1],
            "config": {"jobs": jobs, "rate_limit_per_key": rate, "latency_range": [low, high],
                       "seed": seed, **config}}


def verdict(results: dict[str, Any], jobs: int) -> list[str]:
    lines = []
    for name in ("ours-segmind", "ours-runway", "ours-segmind-18"):
        if name in results:
            s = results[name]["summary"]
            met = s["completed"] == jobs and s["failed"] == 0
            lines.append(f"{results[name]['label']}: {s['completed']} of {jobs} completed, "
                         f"{s['failed']} failed ({'met' if met else 'NOT met'})")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rate_limited", description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--rate", type=float, default=20.0, help="emulator requests/s per key")
    parser.add_argument("--low", type=float, default=20.0)
    parser.add_argument("--high", type=float, default=40.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--clients", nargs="*", choices=list(CLIENTS), default=None)
    parser.add_argument("--timeout", type=float, default=1500.0, help="bound per client, s")
    parser.add_argument("--name", default="rate_limited")
    args = parser.parse_args(argv)
    info = machine()
    outcome = run(args.jobs, args.rate, args.low, args.high, args.seed, args.clients, args.timeout)
    title = (
        f"Rate-limited scale: {args.jobs} video jobs at once per client, emulator limited to "
        f"{args.rate:g} requests/s per key (429 + Retry-After over it), latencies uniform "
        f"{args.low:g}-{args.high:g} s; emulator out of process, one cached 5-frame video"
    )
    report("benchmarks.rate_limited", argv, args.name, title, COLUMNS, outcome, verdict(outcome["results"], args.jobs), info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
