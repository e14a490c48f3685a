"""Polling, simulated: the schedule alone, on a virtual clock, with no HTTP and no emulator.

``python -m benchmarks.polling_sim`` replays what ``benchmarks.polling`` measures — 50 jobs
submitted together, latencies uniform 20-40 s, a cold batch (a fresh latency book with the
built-in priors) then a warm one — through :class:`prefect_runway.engine.polling.PollSchedule` and
:class:`~prefect_runway.engine.polling.LatencyBook` exactly as ``GenerationClient.wait`` drives them,
over many seeded trials. A status poll costs no time here, so the delays are the schedule's
own; the real benchmark adds request and queueing time on top.

Besides the shipped schedule it tries variants of the cold phase (the prior-only phase, while
fewer than five jobs have finished): the interval there capped at 1.0 s and at 0.8 s, and a
smaller ``poll_cost``. The 1 s fixed poll of the ``segmind`` SDK is simulated too, for the
request share.
"""

from __future__ import annotations

import argparse
import heapq
import random
import statistics
import sys
from collections.abc import Callable
from typing import Any

from benchmarks._common import machine, report
from prefect_runway.engine.polling import LatencyBook, LatencyWindow, PollSchedule

COLUMNS = ["schedule", "batch", "mean delay s", "p95 delay s", "polls/job", "share of 1 s polls"]
KEY = ("segmind", "https://api.segmind.com", "gen4_turbo/5s")


def _delay_rule(schedule: PollSchedule, prior_cap: float | None) -> Callable[[float, LatencyWindow], float]:
    def rule(age: float, window: LatencyWindow) -> float:
        delay = schedule.next_delay(age, window)
        if prior_cap is not None and window.source == "prior" and age >= window.low:
            delay = min(delay, prior_cap)
        return delay
    return rule


def simulate_batch(book: LatencyBook, schedule: PollSchedule, latencies: list[float],
                   prior_cap: float | None = None) -> tuple[list[float], list[int]]:
    """Every job of a batch waited for at once, as ``GenerationClient.wait`` polls: per job, the
    delay between completion and the poll that saw it, and its number of polls."""
    rule = _delay_rule(schedule, prior_cap)
    tracks = [book.track(KEY, public=True) for _ in latencies]
    classic = [schedule.delays() for _ in latencies]
    polls = [0] * len(latencies)
    delays = [0.0] * len(latencies)

    def next_poll(i: int, age: float) -> float:
        window = tracks[i].window()
        return next(classic[i]) if window is None else rule(age, window)

    queue = [(next_poll(i, 0.0), i) for i in range(len(latencies))]
    heapq.heapify(queue)
    while queue:
        age, i = heapq.heappop(queue)
        polls[i] += 1
        if age >= latencies[i]:
            tracks[i].finished(age)
            delays[i] = age - latencies[i]
        else:
            tracks[i].pending(age)
            heapq.heappush(queue, (age + next_poll(i, age), i))
    return delays, polls


def fixed_polls(latencies: list[float], interval: float = 1.0) -> tuple[list[float], list[int]]:
    """A poll every ``interval`` seconds from submission (the ``segmind`` SDK's ``wait()``)."""
    polls = [int(latency // interval) + 1 for latency in latencies]
    return [n * interval - latency for n, latency in zip(polls, latencies, strict=True)], polls


VARIANTS: dict[str, tuple[dict[str, Any], float | None]] = {
    "shipped (poll_cost 0.03)": ({}, None),
    "prior phase capped at 1.0 s": ({}, 1.0),
    "prior phase capped at 0.8 s": ({}, 0.8),
    "poll_cost 0.025": ({"poll_cost": 0.025}, None),
}


def run(trials: int, jobs: int, low: float, high: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    batches = []
    for trial in range(trials):
        rng = random.Random(trial)
        batches.append(([rng.uniform(low, high) for _ in range(jobs)],
                        [rng.uniform(low, high) for _ in range(jobs)]))
    sdk_polls = statistics.mean(
        statistics.mean(fixed_polls(batch)[1]) for pair in batches for batch in pair
    )
    sdk_delay = statistics.mean(
        statistics.mean(fixed_polls(batch)[0]) for pair in batches for batch in pair
    )
    rows: list[list[Any]] = [["segmind SDK: a poll every 1 s", "", sdk_delay, float("nan"), sdk_polls, 1.0]]
    for name, (options, cap) in VARIANTS.items():
        schedule = PollSchedule(interval=0.5, max_interval=15.0, **options)
        per_batch: dict[str, list[tuple[float, float, float]]] = {"cold": [], "warm": []}
        for cold, warm in batches:
            book = LatencyBook()
            for tag, latencies in (("cold", cold), ("warm", warm)):
                delays, polls = simulate_batch(book, schedule, latencies, cap)
                per_batch[tag].append((statistics.mean(delays),
                                       sorted(delays)[int(0.95 * len(delays))],
                                       statistics.mean(polls)))
        for tag, values in per_batch.items():
            mean_delay, p95, polls = (statistics.mean(v[k] for v in values) for k in range(3))
            results[f"{name}|{tag}"] = {"mean_delay": mean_delay, "p95_delay": p95, "polls_per_job": polls,
                                        "share": polls / sdk_polls}
            rows.append([name, tag, mean_delay, p95, polls, polls / sdk_polls])
    return {"rows": rows, "results": results, "sdk": {"mean_delay": sdk_delay, "polls_per_job": sdk_polls},
            "config": {"trials": trials, "jobs": jobs, "latency_range": [low, high]}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.polling_sim", description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=30, help="seeded batches per schedule")
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--low", type=float, default=20.0)
    parser.add_argument("--high", type=float, default=40.0)
    parser.add_argument("--name", default="polling_sim")
    args = parser.parse_args(argv)
    info = machine()
    outcome = run(args.trials, args.jobs, args.low, args.high)
    title = (
        f"Polling, simulated: {args.jobs} jobs at once, latencies uniform {args.low:g}-{args.high:g} s, "
        f"mean of {args.trials} seeded trials; polls cost no time (the schedule alone)"
    )
    report("benchmarks.polling_sim", argv, args.name, title, COLUMNS, outcome, [], info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
