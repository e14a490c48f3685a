"""Downloads: one 500 MiB video to local disk and to S3, against fair floors.

``python -m benchmarks.downloads`` writes a real, decodable MP4 of 500 MiB (a short video
followed by a ``free`` box), serves it from a loopback "CDN" in its own process
(``benchmarks._fileserver``: ``os.sendfile``, so the server is not what is measured), and
times the median of 3 transfers of each, round by round (each target once per round, each
transfer in a worker process of its own, so that a row and its floor see the same load):

* **raw**: ``httpx.AsyncClient.stream`` + ``aiter_bytes`` written to a file on the same disk
  and hashed (sha256) — what any correct client must do, the floor for the local rows;
* **ours, local**: the ``download_generation`` task in a flow (streamed to a temporary file
  while hashing, checked for length and magic bytes, renamed into place, sidecar written;
  previews off) into ``LocalStorage``;
* **ours, S3**: the same task into ``S3Storage`` on moto's server (in its own process): the
  parts of one multipart upload go up while the body arrives, and it is completed once the
  download is verified (then tagged with its sha256);
* **moto's ceiling**: ``boto3`` ``upload_file`` of the same bytes straight from disk, with the
  same transfer settings and no download — the floor for the S3 row, in the same run;
* **the bare pipe**: the least a streaming client does — the body cut into parts in memory,
  each sent with ``upload_part`` as it fills, no file, no hash, no Prefect: the most any
  stream to S3 reaches on the machine.

Then raw and local again from a server paced like a 250 MiB/s link (2 Gbit/s, a fast real
one). Reported: throughput (MiB/s of the 500 MiB output, end to end), its ratio to its floor,
the worker's CPU time during the transfer and moto's during the worker's run, and the worker's
RSS growth (peak during the transfer minus RSS before, the largest of the
rounds; the high-water mark is reset with ``/proc/self/clear_refs``), with the load average
before and after.

Targets: local at least 0.95x raw (also on the capped link); S3 at least 0.9x moto's
ceiling; RSS growth under 100 MB.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks._common import (
    ROOT,
    machine,
    process_cpu_seconds,
    report,
    run_worker,
)
from prefect_runway.emulator import media

MiB = 1024 * 1024
#: Each row of ours against its floor, measured in the same run.
FLOORS = {"local": "raw", "s3": "s3-upload", "s3-pipe": "s3-upload"}
#: Targets: the least ratio to the floor, and the most RSS growth (MB).
TARGETS = {"local": 0.95, "s3": 0.9}
RSS_LIMIT_MB = 100
COLUMNS = ["target", "MiB/s", "x floor", "floor", "median s", "runs s", "client CPU s", "moto CPU s",
           "RSS before MB", "RSS peak MB", "RSS growth MB"]

_CHILD_MOTO = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(f"http://127.0.0.1:{server.get_host_and_port()[1]}", flush=True)
sys.stdin.read()
server.stop()
"""


@contextlib.contextmanager
def child(args: list[str], pids: dict[str, int] | None = None) -> Iterator[str]:
    """A helper process that prints its URL, then runs until its stdin closes (its pid in
    ``pids``, by URL)."""
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=ROOT.parent)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"helper did not start: {args}")
        if pids is not None:
            pids[url] = proc.pid
        yield url
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _empty_bucket(endpoint: str) -> None:
    """Delete every object of the benchmark's bucket on moto (if it exists)."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="AKIABENCHMARK0000000", aws_secret_access_key="bench-secret")
    with contextlib.suppress(s3.exceptions.NoSuchBucket):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket="bench-outputs"):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket="bench-outputs", Delete={"Objects": keys, "Quiet": True})


def run(size: int, repeat: int, targets: list[str], timeout: float, capped: float = 0.0,
        pipe: tuple[int, int] = (0, 0)) -> dict[str, Any]:
    rows, results, pids = [], {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-cdn-") as served:
        media.write_padded_video(Path(served) / "big.mp4", size)
        with child([sys.executable, "-m", "benchmarks._fileserver", served]) as cdn, \
                child([sys.executable, "-m", "benchmarks._fileserver", served, "--rate", str(capped or 1)]) as slow, \
                child([sys.executable, "-c", _CHILD_MOTO], pids) as s3:
            plan = [(target, f"{cdn}/big.mp4") for target in targets]
            if capped:
                plan += [(f"{t}@{capped:g}", f"{slow}/big.mp4") for t in ("raw", "local") if t in targets]
            # Round by round, each target once per round (a worker each): on a shared machine
            # each row and its floor then see the same load, not one minute's against another's.
            runs: dict[str, list[dict[str, Any]]] = {target: [] for target, _ in plan}
            for _ in range(repeat):
                for target, url in plan:
                    moto_cpu = process_cpu_seconds(pids[s3])
                    with tempfile.TemporaryDirectory(prefix="bench-prefect-home-") as home:
                        runs[target].append(run_worker(
                            ["download", target.split("@")[0], "--url", url, "--size", str(size),
                             "--repeat", "1", "--s3-endpoint", s3,
                             "--pipe-in-flight", str(pipe[0]), "--pipe-part-mib", str(pipe[1]),
                             "--file", str(Path(served) / "big.mp4")],
                            timeout=timeout,
                            env={"PREFECT_HOME": home, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"},
                        ))
                    # Moto's CPU while the worker ran (bucket set-up included; idle otherwise).
                    runs[target][-1]["moto_cpu_seconds"] = process_cpu_seconds(pids[s3]) - moto_cpu
                    if target.startswith("s3"):
                        _empty_bucket(s3)  # the next round stores again, and moto's memory is freed
            for target, done in runs.items():
                seconds = [one["seconds"][0] for one in done]
                worst = max(done, key=lambda one: one["rss_peak_mb"] - one["rss_before_mb"])
                results[target] = {**worst, "seconds": seconds,
                                   "client_cpu_seconds": statistics.median(
                                       one["cpu_seconds"][0] for one in done),
                                   "moto_cpu_seconds": statistics.median(
                                       one["moto_cpu_seconds"] for one in done),
                                   "median_seconds": statistics.median(seconds),
                                   "mib_per_s": size / MiB / statistics.median(seconds)}
    labels = {"raw": "raw httpx stream -> file on the same disk, sha256",
              "local": "ours -> local disk", "s3": "ours -> S3 (moto), streamed",
              "s3-upload": "moto's ceiling: boto3 upload_file of the file, no download",
              "s3-pipe": "bare pipe: httpx -> parts in memory -> upload_part, no file, no hash"}
    for target, raw in results.items():
        kind, _, cap = target.partition("@")
        floor = FLOORS.get(kind, "") + (f"@{cap}" if cap and kind in FLOORS else "")
        base = results.get(floor, {}).get("mib_per_s")
        raw["floor"] = floor if base else ""
        raw["ratio"] = raw["mib_per_s"] / base if base else float("nan")
        if cap:
            labels[target] = f"{labels[kind]}, link capped at {cap} MiB/s"
        raw["rss_growth_mb"] = raw["rss_peak_mb"] - raw["rss_before_mb"]
        rows.append([labels[target], raw["mib_per_s"], raw["ratio"], raw["floor"] or "-",
                     raw["median_seconds"],
                     " ".join(f"{x:.2f}" for x in raw["seconds"]), raw["client_cpu_seconds"],
                     raw["moto_cpu_seconds"] if kind.startswith("s3") else "-", raw["rss_before_mb"],
                     raw["rss_peak_mb"], raw["rss_growth_mb"]])
    return {"rows": rows, "results": results,
            "config": {"size": size, "repeat": repeat, "capped_mib_per_s": capped,
                       "pipe_in_flight": pipe[0] or None, "pipe_part_mib": pipe[1] or None}}


def _rounds(row: dict[str, Any], floor: dict[str, Any]) -> str:
    """``row``'s speed over ``floor``'s, round by round."""
    return " ".join(f"{f / o:.2f}" for o, f in zip(row["seconds"], floor["seconds"], strict=True))


def verdict(results: dict[str, Any]) -> list[str]:
    lines = []
    for target, r in results.items():
        kind = target.partition("@")[0]
        if kind not in TARGETS:
            continue
        if not r["floor"]:
            lines.append(f"{target}: its floor was not measured in this run")
            continue
        ok = r["ratio"] >= TARGETS[kind] and r["rss_growth_mb"] < RSS_LIMIT_MB
        lines.append(
            f"{target}: {r['ratio']:.2f}x {r['floor']} (round by round "
            f"{_rounds(r, results[r['floor']])}), RSS growth {r['rss_growth_mb']:.0f} MB "
            f"({'met' if ok else 'NOT met'}: at least {TARGETS[kind]}x, under {RSS_LIMIT_MB} MB)"
        )
    if "s3-pipe" in results and "s3-upload" in results:
        pipe, up = results["s3-pipe"], results["s3-upload"]
        line = (f"s3-pipe: the least a streaming client does makes {pipe['ratio']:.2f}x s3-upload "
                f"(round by round {_rounds(pipe, up)}): the most any stream reaches here")
        if "s3" in results:
            ours = results["s3"]
            line += (f"; ours {ours['mib_per_s'] / pipe['mib_per_s']:.2f}x the pipe (round by "
                     f"round {_rounds(ours, pipe)})")
        lines.append(line)
    if "s3" in results and "s3-upload" in results and "raw" in results:
        down, up = results["raw"]["mib_per_s"], results["s3-upload"]["mib_per_s"]
        sequential = 1 / (1 / down + 1 / up)
        lines.append(
            f"s3: downloading, then uploading, each at its floor, would give {sequential:.0f} "
            f"MiB/s; ours {results['s3']['mib_per_s']:.0f} MiB/s "
            f"({results['s3']['mib_per_s'] / sequential:.2f}x that)"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.downloads", description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=500, help="size of the video, MiB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--targets", nargs="+", choices=["raw", "local", "s3", "s3-upload", "s3-pipe"],
                        default=["raw", "local", "s3", "s3-upload", "s3-pipe"])
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--capped", type=float, default=250.0,
                        help="also measure raw and local on a link capped at this many MiB/s (0: not)")
    parser.add_argument("--pipe-in-flight", type=int, default=0,
                        help="the bare pipe's parts in flight (default: ours, 4)")
    parser.add_argument("--pipe-part-mib", type=int, default=0,
                        help="the bare pipe's part size, MiB (default: ours, 8)")
    parser.add_argument("--name", default="downloads")
    args = parser.parse_args(argv)
    info = machine()
    outcome = run(args.mib * MiB, args.repeat, args.targets, args.timeout, args.capped,
                  (args.pipe_in_flight, args.pipe_part_mib))
    title = (
        f"Downloads: one {args.mib} MiB MP4 from a loopback sendfile server (a CDN stand-in, "
        f"its own process), median of {args.repeat}; S3 is moto's server in its own process"
    )
    report("benchmarks.downloads", argv, args.name, title, COLUMNS, outcome, verdict(outcome["results"]), info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
