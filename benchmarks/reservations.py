"""Daily-budget reservations: what pricing a submit against a block's daily budget costs.

``python -m benchmarks.reservations`` reserves and releases ``--count`` jobs one after the
other in one block's daily budget (:class:`prefect_runway.spend.DailySpend`) on local
storage, as a run does around each submit, and reports the time of a reserve + release as
the day's records grow (each reservation reads the records written since the last one and
lists the day's folders). No HTTP and no emulator: the storage cost alone.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from typing import Any

from pydantic import SecretStr

from benchmarks._common import machine, percentile, report
from prefect_runway import RunwayCredentials
from prefect_runway.money.costs import Cost
from prefect_runway.money.daily import DailyBudgets

COLUMNS = ["reservations so far", "records in the day", "mean ms", "p95 ms"]


async def _measure(count: int, every: int) -> list[list[Any]]:
    credentials = RunwayCredentials(api_key=SecretStr("benchmark-key"),
                                    base_url="http://127.0.0.1:9", daily_budget=10 ** 12)
    rows: list[list[Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-reservations-") as directory:
        entry = DailyBudgets.of([credentials], directory).entry(credentials)
        assert entry is not None
        times: list[float] = []
        for done in range(count):
            started = time.perf_counter()
            hold = await entry.reserve(Cost(5, "credits", True, "benchmark"), "a still")
            await entry.release(hold, Cost(5, "credits", False, "benchmark"))
            times.append((time.perf_counter() - started) * 1000)
            if (done + 1) % every == 0:
                window = times[-min(every, 100):]
                rows.append([done + 1, 2 * (done + 1), round(sum(window) / len(window), 2),
                             round(percentile(window, 0.95), 2)])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reservations",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="reservations in the day")
    parser.add_argument("--every", type=int, default=500, help="a row every this many")
    parser.add_argument("--name", default="reservations")
    args = parser.parse_args(argv)
    info = machine()
    rows = asyncio.run(_measure(args.count, args.every))
    title = (f"Daily-budget reservations: {args.count} reserve + release pairs in one block's "
             "day, local storage, one process (the last 100 of each row)")
    report("benchmarks.reservations", argv, args.name, title, COLUMNS, {"rows": rows}, [], info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
