"""One client under test, in a process of its own: ``python -m benchmarks._worker MODE ...``.

Modes:

    jobs    N video jobs at once with one client — ``segmind-sdk`` (``submit_async(...).wait()``
            in a thread per job, as shipped: 1 s interval), ``runwayml-sdk``
            (``image_to_video.create(...).wait_for_task_output()`` in a thread per job, as
            shipped), ``ours-segmind`` / ``ours-runway`` (``GenerationClient.submit`` + ``wait``,
            all jobs on one event loop) — for one or more batches. Writes, per job, when it
            was submitted and when the client noticed it was done (``time.monotonic``, the
            same clock as the emulator's in every process of the machine), and per batch the
            emulator's job table and stats.

The parent benchmark turns that into delays and counts; see ``benchmarks/polling.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from benchmarks._common import KEY, child_pids, process_cpu_seconds, process_rss_mb

RATIO = "1280:720"


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:160]}"


async def _recorded(work: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    """Run one chain: its record is when it started and ended, and what ``work`` returned
    (``ok``) or the error it raised."""
    record: dict[str, Any] = {"start": time.monotonic()}
    try:
        record.update(ok=True, **await work)
    except Exception as exc:  # noqa: BLE001 - a failed chain is counted, not raised
        record.update(ok=False, error=_error(exc))
    record["end"] = time.monotonic()
    return record


# ---- the SDKs, as shipped, a thread per job ------------------------------------------------------


def _segmind_job(emulator: str, image: str, index: int) -> dict[str, Any]:
    from segmind import SegmindClient

    record: dict[str, Any] = {"start": time.monotonic()}
    client = SegmindClient(api_key=KEY, base_url=f"{emulator}/v1")
    try:
        job = client.submit_async(
            "runway-gen4-turbo", promptImage=image, promptText=f"benchmark clip {index}",
            duration=5, ratio=RATIO,
        )
        record["id"] = job.request_id
        record["submitted"] = time.monotonic()
        job.wait()  # as shipped: 1.0 s interval, 600 s deadline
        record["noticed"] = time.monotonic()
        record["ok"] = True
    except Exception as exc:  # noqa: BLE001 - every failure is a result here
        record["ok"] = False
        record["error"] = _error(exc)
        record["noticed"] = time.monotonic()
    finally:
        client._client.close()
    return record


def _runwayml_job(emulator: str, image: str, index: int) -> dict[str, Any]:
    from runwayml import RunwayML

    record: dict[str, Any] = {"start": time.monotonic()}
    client = RunwayML(base_url=emulator, api_key=KEY)
    try:
        task = client.image_to_video.create(
            model="gen4_turbo", prompt_image=image, prompt_text=f"benchmark clip {index}",
            ratio=RATIO, duration=5,
        )
        record["id"] = task.id
        record["submitted"] = time.monotonic()
        task.wait_for_task_output()  # as shipped: polls every 4.5-7.5 s, 600 s deadline
        record["noticed"] = time.monotonic()
        record["ok"] = True
    except Exception as exc:  # noqa: BLE001
        record["ok"] = False
        record["error"] = _error(exc)
        record["noticed"] = time.monotonic()
    finally:
        client.close()
    return record


def _run_threads(target, emulator: str, image: str, n: int) -> list[dict[str, Any]]:
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="sdk-job") as pool:
        futures = [pool.submit(target, emulator, image, i) for i in range(n)]
        return [f.result() for f in futures]


# ---- ours: one event loop, one client -------------------------------------------------------------


async def _ours(provider: str, emulator: str, image: str, n: int, rps: float | str | None) -> list[dict[str, Any]]:
    from pydantic import SecretStr

    from prefect_runway.blocks import RunwayCredentials, SegmindCredentials
    from prefect_runway.models import VideoRequest

    cls = {"segmind": SegmindCredentials, "runway": RunwayCredentials}[provider]
    fields: dict[str, Any] = {} if rps == "default" else {"max_requests_per_second": rps}
    credentials = cls(api_key=SecretStr(KEY), base_url=emulator, **fields)

    async with credentials.get_client() as client:

        async def one(index: int) -> dict[str, Any]:
            record: dict[str, Any] = {"start": time.monotonic()}
            try:
                generation = await client.submit(VideoRequest(
                    image=image, prompt=f"benchmark clip {index}", model="gen4_turbo",
                    ratio=RATIO, duration=5,
                ))
                record["id"] = generation.job_id
                record["submitted"] = time.monotonic()
                await client.wait(generation)
                record["noticed"] = time.monotonic()
                record["ok"] = True
            except Exception as exc:  # noqa: BLE001
                record["ok"] = False
                record["error"] = _error(exc)
                record["noticed"] = time.monotonic()
            return record

        return list(await asyncio.gather(*(one(i) for i in range(n))))


def jobs(args: argparse.Namespace) -> dict[str, Any]:
    emulator = args.emulator.rstrip("/")
    control = httpx.Client(base_url=emulator, timeout=30)
    if args.public_priors:
        from prefect_runway.engine.polling import DEFAULT_PRIORS, LATENCY

        for model, prior in DEFAULT_PRIORS.items():
            LATENCY.set_prior(model, prior, base_url=emulator)
    rps: float | str | None
    if args.rps in ("none", "default"):
        rps = None if args.rps == "none" else "default"
    else:
        rps = float(args.rps)
    batches = []
    cpu0 = time.process_time()
    for batch in range(args.batches):
        stats_before = control.get("/_emulator/stats").json()
        started = time.monotonic()
        if args.client == "segmind-sdk":
            records = _run_threads(_segmind_job, emulator, args.image, args.jobs)
        elif args.client == "runwayml-sdk":
            records = _run_threads(_runwayml_job, emulator, args.image, args.jobs)
        elif args.client.startswith("ours-"):
            records = asyncio.run(_ours(args.client.removeprefix("ours-"), emulator, args.image, args.jobs, rps))
        else:
            raise SystemExit(f"unknown client {args.client}")
        wall = time.monotonic() - started
        stats_after = control.get("/_emulator/stats").json()
        table = control.get("/_emulator/jobs").json()
        done_at = {
            job["id"]: job["done_at_monotonic"]
            for provider_jobs in table.values() for job in provider_jobs
        }
        batches.append({
            "batch": batch + 1, "wall_seconds": wall, "records": records,
            "done_at": {r["id"]: done_at.get(r["id"]) for r in records if r.get("id")},
            "stats_before": stats_before, "stats_after": stats_after,
        })
        if args.client.startswith("ours-"):
            from prefect_runway.engine.polling import LATENCY

            batches[-1]["latency_book"] = LATENCY.snapshot()
    control.close()
    return {
        "client": args.client, "batches": batches, "threads_peak": threading.active_count(),
        "cpu_seconds": time.process_time() - cpu0, "rss_peak_mb": process_rss_mb()[1],
    }


# ---- batch overhead: image-to-video chains, through our flows or a plain script -------------------

REFERENCE = {"uri": "https://example.com/ref.png", "tag": "hero"}


def _children_cpu_and_rss() -> dict[str, Any]:
    """CPU seconds and peak RSS of this process's children (Prefect's temporary server)."""
    result: dict[str, Any] = {}
    for pid in child_pids():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
        except OSError:
            continue
        result[pid] = {"cmd": cmd, "cpu_seconds": process_cpu_seconds(pid),
                       "rss_peak_mb": process_rss_mb(pid)[1]}
    return result


async def _floor_chains(emulator: str, n: int, tag: str, out: Path, latency: float) -> list[dict[str, Any]]:
    """The same HTTP work as ``image_to_video`` on Segmind's protocol, with nothing else: the
    floor. It knows the job latency: the first poll comes right at it, then every 0.5 s. Its
    connection pool has room for every chain (a pool of 100 shared by 1000 chains spends
    more CPU queueing requests than sending them: httpcore's queue is quadratic)."""
    headers = {"x-api-key": KEY}
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=n)
    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=10.0), limits=limits) as http:

        async def job(slug: str, body: dict[str, Any]) -> str:
            submitted = (await http.post(f"{emulator}/v2/{slug}", json=body, headers=headers)).json()
            delay = latency
            while True:
                await asyncio.sleep(delay)
                delay = 0.5
                status = (await http.get(submitted["status_url"], headers=headers)).json()["status"]
                if status == "COMPLETED":
                    break
                if status == "FAILED":
                    raise RuntimeError("job failed")
            result = await http.get(submitted["response_url"], headers=headers)
            return result.json()["output"]

        async def download(url: str, path: Path) -> int:
            size = 0
            async with http.stream("GET", url) as response:
                response.raise_for_status()
                with path.open("wb") as f:
                    async for chunk in response.aiter_bytes():
                        f.write(chunk)
                        size += len(chunk)
            return size

        async def chain(i: int) -> dict[str, Any]:
            still = await job("runway-gen4-image", {
                "promptText": f"{tag} still {i} @hero", "referenceImages": [REFERENCE],
                "ratio": RATIO, "seed": i + 1,
            })
            size = await download(still, out / f"{tag}-still-{i}.png")
            video = await job("runway-gen4-turbo", {
                "promptImage": still, "promptText": f"{tag} motion {i}", "ratio": RATIO,
                "duration": 5, "seed": i + 1,
            })
            size += await download(video, out / f"{tag}-video-{i}.mp4")
            return {"bytes": size}

        return list(await asyncio.gather(*(_recorded(chain(i)) for i in range(n))))


async def _flow_chains(emulator: str, n: int, tag: str, out: Path) -> list[dict[str, Any]]:
    """``image_to_video`` flow runs, all at once."""
    from pydantic import SecretStr

    from prefect_runway.blocks import SegmindCredentials
    from prefect_runway.flows import image_to_video

    credentials = SegmindCredentials(api_key=SecretStr(KEY), base_url=emulator,
                                     max_requests_per_second=None)

    async def chain(i: int) -> dict[str, Any]:
        result = await image_to_video(
            still_prompt=f"{tag} still {i} @hero", motion_prompt=f"{tag} motion {i}",
            credentials=credentials, reference_images=[REFERENCE], still_ratio=RATIO,
            duration=5, seed=i + 1, storage=str(out), preview=None,
        )
        return {"bytes": result.still.size + result.video.size}

    return list(await asyncio.gather(*(_recorded(chain(i)) for i in range(n))))


async def _storyboard_chains(emulator: str, n: int, tag: str, out: Path) -> list[dict[str, Any]]:
    """One ``storyboard`` flow run of ``n`` shots, all at once (``concurrency=n``)."""
    from pydantic import SecretStr

    from prefect_runway.blocks import SegmindCredentials
    from prefect_runway.errors import StoryboardFailed
    from prefect_runway.flows import storyboard

    credentials = SegmindCredentials(api_key=SecretStr(KEY), base_url=emulator,
                                     max_requests_per_second=None)
    shots = [
        {"name": f"{tag}-{i}", "still_prompt": f"{tag} still {i} @hero",
         "reference_images": [REFERENCE], "motion_prompt": f"{tag} motion {i}", "ratio": RATIO,
         "duration": 5, "seed": i + 1}
        for i in range(n)
    ]
    start = time.monotonic()
    try:
        summary = await storyboard(shots=shots, credentials=credentials, storage=str(out),
                                   concurrency=n, provider_limit=None, preview=None)
    except StoryboardFailed as exc:
        summary = exc.summary
    end = time.monotonic()
    return [
        {"start": start, "end": end, "ok": shot.ok, "error": shot.error,
         "bytes": (shot.still.size if shot.still else 0) + (shot.video.size if shot.video else 0)}
        for shot in summary.shots
    ]


def chains(args: argparse.Namespace) -> dict[str, Any]:
    import shutil
    import tempfile

    from benchmarks._common import reset_peak_rss

    emulator = args.emulator.rstrip("/")
    out = Path(tempfile.mkdtemp(prefix="bench-chains-"))
    try:
        if args.client == "floor":
            run = lambda count, tag: _floor_chains(emulator, count, tag, out, args.latency)  # noqa: E731
        elif args.client == "storyboard":
            run = lambda count, tag: _storyboard_chains(emulator, count, tag, out)  # noqa: E731
        else:
            run = lambda count, tag: _flow_chains(emulator, count, tag, out)  # noqa: E731

        async def both() -> tuple[list[dict[str, Any]], dict[str, Any]]:
            # Warm-up, untimed: imports, connections, Prefect's server and blocks, and (for
            # ours) the latency of the emulator's jobs.
            warm = await run(args.warmup, "warmup")
            if not all(r["ok"] for r in warm):
                raise RuntimeError(f"warm-up failed: {warm}")
            before = process_rss_mb()[0]
            cleared = reset_peak_rss()
            cpu0 = time.process_time()
            children0 = _children_cpu_and_rss()
            started = time.monotonic()
            records = await run(args.chains, "run")
            wall = time.monotonic() - started
            return records, {
                "wall_seconds": wall, "cpu_seconds": time.process_time() - cpu0,
                "rss_before_mb": before, "rss_peak_mb": process_rss_mb()[1],
                "peak_reset": cleared, "children_before": children0,
                "children_after": _children_cpu_and_rss(),
            }

        records, measured = asyncio.run(both())
        return {"client": args.client, "records": records, **measured}
    finally:
        shutil.rmtree(out, ignore_errors=True)


# ---- downloads: one large output, raw or through download_generation --------------------------------


async def _warm_flow() -> None:
    from prefect import flow

    @flow(name="benchmark-warmup")
    async def warmup() -> None:
        return None

    await warmup()


def _bench_bucket(endpoint: str) -> Any:
    """A boto3 client of moto at ``endpoint``, with the bucket ``bench-outputs``."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="AKIABENCHMARK0000000", aws_secret_access_key="bench-secret")
    try:
        s3.create_bucket(Bucket="bench-outputs")
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    return s3


def download(args: argparse.Namespace) -> dict[str, Any]:
    import shutil
    import statistics
    import tempfile
    from datetime import datetime, timezone

    from benchmarks._common import reset_peak_rss

    work = Path(tempfile.mkdtemp(prefix="bench-download-"))
    try:
        if args.target == "s3-upload":
            from prefect_runway.storage.s3 import default_transfer_config

            s3 = _bench_bucket(args.s3_endpoint)

            async def once(i: int) -> None:
                await asyncio.to_thread(s3.upload_file, args.file, "bench-outputs",
                                        f"ceiling/{i}.mp4", Config=default_transfer_config())
            timed_task = None
        elif args.target == "s3-pipe":
            from prefect_runway.storage.s3 import default_transfer_config

            s3 = _bench_bucket(args.s3_endpoint)
            config = default_transfer_config()
            in_flight = args.pipe_in_flight or config.max_concurrency

            async def once(i: int) -> None:
                # The least a streaming client does: the body cut into parts in memory, each
                # sent as it fills, ``max_concurrency`` in flight; no file, no hash, no Prefect.
                key = f"pipe/{i}.mp4"
                part = args.pipe_part_mib * 1024 * 1024 or int(config.multipart_chunksize)
                upload = s3.create_multipart_upload(Bucket="bench-outputs", Key=key)["UploadId"]
                loop = asyncio.get_running_loop()
                slots = asyncio.Semaphore(in_flight)

                async def send(number: int, body: bytes) -> str:
                    try:
                        answer = await loop.run_in_executor(senders, functools.partial(
                            s3.upload_part, Bucket="bench-outputs", Key=key, UploadId=upload,
                            PartNumber=number, Body=body))
                        return str(answer["ETag"])
                    finally:
                        slots.release()

                sends: list[asyncio.Task[str]] = []
                buffer = bytearray()
                with ThreadPoolExecutor(in_flight) as senders:
                    async with httpx.AsyncClient(timeout=60) as http:
                        async with http.stream("GET", args.url) as response:
                            response.raise_for_status()
                            async for chunk in response.aiter_raw():
                                buffer += chunk
                                while len(buffer) >= part:
                                    await slots.acquire()
                                    sends.append(loop.create_task(send(len(sends) + 1, bytes(buffer[:part]))))
                                    del buffer[:part]
                    if buffer:
                        await slots.acquire()
                        sends.append(loop.create_task(send(len(sends) + 1, bytes(buffer))))
                    etags = await asyncio.gather(*sends)
                s3.complete_multipart_upload(
                    Bucket="bench-outputs", Key=key, UploadId=upload,
                    MultipartUpload={"Parts": [{"ETag": e, "PartNumber": n} for n, e in enumerate(etags, 1)]})
                assert s3.head_object(Bucket="bench-outputs", Key=key)["ContentLength"] == args.size
            timed_task = None
        elif args.target == "raw":
            import hashlib

            async def once(i: int) -> None:
                # What any correct client must do: the bytes to a file on the same disk as
                # ours, hashed. (The file is removed after the clock stops.)
                target = work / f"raw-{i}.mp4"
                digest = hashlib.sha256()
                async with httpx.AsyncClient(timeout=60) as http:
                    async with http.stream("GET", args.url) as response:
                        response.raise_for_status()
                        with open(target, "wb") as sink:
                            async for chunk in response.aiter_bytes():
                                sink.write(chunk)
                                digest.update(chunk)
                assert target.stat().st_size == args.size and digest.hexdigest()
            timed_task = None
        else:
            from pydantic import SecretStr

            from prefect_runway.blocks import SegmindCredentials
            from prefect_runway.models import Generation, GenerationResult, JobState
            from prefect_runway.storage import LocalStorage
            from prefect_runway.tasks.collect import download_generation

            credentials = SegmindCredentials(api_key=SecretStr(KEY), base_url="http://127.0.0.1:9")

            def storage_for(i: int) -> Any:
                if args.target == "local":
                    return LocalStorage(work / f"out-{i}")
                from prefect_aws import AwsClientParameters, AwsCredentials
                from prefect_aws.s3 import S3Bucket

                from prefect_runway.storage.s3 import S3Storage

                aws = AwsCredentials(
                    aws_access_key_id="AKIABENCHMARK0000000", aws_secret_access_key=SecretStr("bench-secret"),
                    region_name="us-east-1",
                    aws_client_parameters=AwsClientParameters(endpoint_url=args.s3_endpoint),
                )
                client = aws.get_s3_client()
                try:
                    client.create_bucket(Bucket="bench-outputs")
                except client.exceptions.BucketAlreadyOwnedByYou:
                    pass
                return S3Storage(S3Bucket(bucket_name="bench-outputs", credentials=aws),
                                 staging_dir=work / f"staging-{i}")

            def result(i: int) -> GenerationResult:
                now = datetime.now(timezone.utc)
                generation = Generation(
                    provider="segmind", model="gen4_turbo", kind="video", job_id=f"big-{i}",
                    fingerprint=f"{i:064x}", base_url="http://127.0.0.1:9", submitted_at=now,
                    request={"promptText": f"a large output {i}"},
                )
                return GenerationResult(generation=generation, state=JobState.SUCCEEDED,
                                        outputs=[args.url], completed_at=now)

            async def store(i: int) -> float:
                """One download_generation task run, timed (storage set up beforehand)."""
                storage = storage_for(i)
                started = time.monotonic()
                stored = await download_generation(result(i), credentials, storage,
                                                   "big/{job_id}.{ext}", None, None)
                seconds = time.monotonic() - started
                assert stored[0].size == args.size, stored
                if args.target == "local":
                    Path(stored[0].location).unlink()  # keep the disk from filling (untimed)
                return seconds

            once = None
            timed_task = store

        async def measure() -> dict[str, Any]:
            before = process_rss_mb()[0]
            cleared = reset_peak_rss()
            seconds, cpu = [], []
            for i in range(args.repeat):
                cpu0 = time.process_time()
                if timed_task is not None:  # ours: the task, timed inside the flow run
                    seconds.append(await timed_task(i))
                else:
                    started = time.monotonic()
                    await once(i)
                    seconds.append(time.monotonic() - started)
                cpu.append(time.process_time() - cpu0)
                for left in work.glob("raw-*"):
                    left.unlink()  # keep the disk from filling (untimed)
            return {"seconds": seconds, "cpu_seconds": cpu, "median_seconds": statistics.median(seconds),
                    "rss_before_mb": before, "rss_peak_mb": process_rss_mb()[1],
                    "peak_reset": cleared}

        if args.target in ("local", "s3"):
            from prefect import flow

            @flow(name="benchmark-download")
            async def measured() -> dict[str, Any]:
                return await measure()

            async def both() -> dict[str, Any]:
                await _warm_flow()  # Prefect's temporary server starts here, untimed
                return await measured()

            return {"target": args.target, "size": args.size, **asyncio.run(both())}
        return {"target": args.target, "size": args.size, **asyncio.run(measure())}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._worker")
    sub = parser.add_subparsers(dest="mode", required=True)
    j = sub.add_parser("jobs")
    j.add_argument("client")
    j.add_argument("--emulator", required=True)
    j.add_argument("--image", required=True)
    j.add_argument("--jobs", type=int, default=50)
    j.add_argument("--batches", type=int, default=1)
    j.add_argument("--rps", default="default",
                   help="ours: requests per second per key, 'none', or 'default' (the block's)")
    j.add_argument("--public-priors", action="store_true",
                   help="ours: give the emulator the public APIs' latency priors")
    c = sub.add_parser("chains")
    c.add_argument("client", choices=["floor", "flows", "storyboard"])
    c.add_argument("--emulator", required=True)
    c.add_argument("--chains", type=int, default=50)
    c.add_argument("--warmup", type=int, default=3)
    c.add_argument("--latency", type=float, required=True, help="the emulator's job latency")
    d = sub.add_parser("download")
    d.add_argument("target", choices=["raw", "local", "s3", "s3-upload", "s3-pipe"])
    d.add_argument("--file", default=None, help="s3-upload: the file to upload")
    d.add_argument("--url", required=True)
    d.add_argument("--size", type=int, required=True)
    d.add_argument("--repeat", type=int, default=3)
    d.add_argument("--s3-endpoint", default=None)
    d.add_argument("--pipe-in-flight", type=int, default=0, help="s3-pipe: parts in flight (0: ours)")
    d.add_argument("--pipe-part-mib", type=int, default=0, help="s3-pipe: part size, MiB (0: ours)")
    for p in (j, c, d):
        p.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        result = {"jobs": jobs, "chains": chains, "download": download}[args.mode](args)
    except BaseException:
        traceback.print_exc()
        return 1
    Path(args.out).write_text(json.dumps(result, default=str))
    sys.stdout.flush()
    if args.mode == "jobs" and args.client.endswith("-sdk"):
        os._exit(0)  # SDK threads or pools left behind must not hold the process
    return 0  # a normal exit: Prefect stops its temporary server


if __name__ == "__main__":
    sys.exit(main())
