"""Start-up: what importing the package costs a process, beside what importing Prefect costs.

``python -m benchmarks.imports`` times each import in ``--runs`` fresh interpreters (median and
fastest wall time, median CPU time) and counts the modules it loads; ``import prefect`` is the floor a flow run pays anyway.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks._common import machine, report

COLUMNS = ["import", "median s", "fastest s", "modules", "x import prefect",
           "heavy modules loaded", "median CPU s"]
#: What a flow run should load only when it uses it: S3, another Prefect collection, previews.
HEAVY = ("boto3", "prefect_aws", "av", "PIL")

#: ``image_to_video``'s entrypoint in ``deployments/prefect.yaml``, as a path.
ENTRYPOINT = Path(__file__).resolve().parents[1] / "prefect_runway/flows/generation.py:image_to_video"

#: What each row imports: the package alone, its bottom layers, what a flow run imports, Prefect;
#: then Prefect's engine alone, with the module of ``image_to_video`` and with its entrypoint's
#: file loaded as a deployment's run loads it.
STATEMENTS = {
    "prefect_runway": "import prefect_runway",
    "prefect_runway.errors, .models": "import prefect_runway.errors, prefect_runway.models",
    "prefect_runway.flows, .tasks (a flow run)": "import prefect_runway.flows, prefect_runway.tasks",
    "prefect (the floor)": "import prefect",
    # What a flow-run process imports before the flow's module (Prefect's engine), then with ours.
    "prefect's engine (any flow run)": "import prefect.engine, prefect.flow_engine",
    "prefect's engine + prefect_runway.flows.generation (a flow run of ours)":
        "import prefect.engine, prefect.flow_engine, prefect_runway.flows.generation",
    # What a deployment's run loads: its entrypoint's file, from its path (prefect.yaml's).
    "prefect's engine + image_to_video's entrypoint file (a deployment's run of ours)":
        "import prefect.engine, prefect.flow_engine\n"
        "from prefect.flows import load_flow_from_entrypoint\n"
        f"load_flow_from_entrypoint({str(ENTRYPOINT)!r})",
}

_PROBE = """\
import json, sys, time
started, cpu = time.perf_counter(), time.process_time()
{statement}
took, cpu = time.perf_counter() - started, time.process_time() - cpu
print(json.dumps([took, len(sys.modules), sorted({{m.split(".")[0] for m in sys.modules}} & {heavy}), cpu]))
"""


def _once(statement: str) -> tuple[float, int, list[str], float]:
    done = subprocess.run([sys.executable, "-c", _PROBE.format(statement=statement,
                                                                heavy=set(HEAVY))],
                          capture_output=True, text=True, timeout=120, check=True,
                          env={**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    took, modules, heavy, cpu = json.loads(done.stdout.strip().splitlines()[-1])
    return float(took), int(modules), list(heavy), float(cpu)


def measure(runs: int) -> list[list[Any]]:
    samples = {label: [_once(statement) for _ in range(runs)]
               for label, statement in STATEMENTS.items()}
    floor = statistics.median(t for t, _, _, _ in samples["prefect (the floor)"])
    rows = []
    for label, results in samples.items():
        times = [t for t, _, _, _ in results]
        median = statistics.median(times)
        rows.append([label, round(median, 3), round(min(times), 3), results[-1][1],
                     round(median / floor, 2), ", ".join(results[-1][2]) or "none",
                     round(statistics.median(c for _, _, _, c in results), 3)])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.imports",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="fresh interpreters per import")
    parser.add_argument("--name", default="imports")
    args = parser.parse_args(argv)
    info = machine()
    rows = measure(max(1, args.runs))
    title = f"Start-up: each import timed in {args.runs} fresh interpreter(s)"
    report("benchmarks.imports", argv, args.name, title, COLUMNS, {"rows": rows}, [], info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
