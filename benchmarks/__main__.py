"""``python -m benchmarks``: every benchmark, one after the other, with its defaults.

Each prints its table and writes ``benchmarks/results/NAME.json``; see ``benchmarks/README.md``.
``python -m benchmarks polling downloads`` runs only those.
"""

from __future__ import annotations

import importlib
import sys
import time

ALL = ("polling", "rate_limited", "batch_overhead", "downloads", "polling_sim", "orchestrator")


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or list(ALL)
    unknown = [n for n in names if n not in ALL]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(ALL)}")
        return 2
    for name in names:
        started = time.monotonic()
        print(f"\n=== benchmarks.{name} ===\n", flush=True)
        code = importlib.import_module(f"benchmarks.{name}").main([])
        print(f"(benchmarks.{name}: {time.monotonic() - started:.0f} s)", flush=True)
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
