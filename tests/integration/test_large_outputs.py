"""A 300 MiB output streams to local disk and to S3 without ever being held in memory.

The file is a real MP4 (a short video followed by a 300 MiB ``free`` box), served from disk
by a tiny HTTP server on 127.0.0.1; S3 is moto's server in a child process, so its buffers
do not count towards this process. ``download_generation`` runs for real: streamed download
to a temporary file while hashing, a GIF preview, then a rename (local) or a multipart upload
from the file (S3), then the sidecar.

Memory is measured on this process in two ways, and both must stay under 100 MB of growth:

- **RSS high-water mark**: ``/proc/self/clear_refs`` is reset (``5``) before the download and
  ``VmHWM`` read after it, minus ``VmRSS`` before; this counts every allocation (C libraries,
  boto3 buffers, PyAV) and also tracemalloc's own bookkeeping, so it is conservative;
- **tracemalloc peak**: the peak of Python allocations traced during the download.
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from datetime import datetime, timezone
from pathlib import Path

import pytest
from prefect import flow
from s3_helpers import (
    aws_credentials,
    moto_server_process,
    new_bucket,
    serve_directory,
)

from benchmarks._common import process_rss_mb, reset_peak_rss
from prefect_runway.emulator.media import write_padded_video
from prefect_runway.models import Generation, GenerationResult, JobState, StoredOutput
from prefect_runway.storage import LocalStorage
from prefect_runway.storage.s3 import S3Storage
from prefect_runway.tasks.collect import download_generation

SIZE = 300 * 1024 * 1024
LIMIT = 100 * 1000 * 1000
SECONDS = 60

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self"),
    pytest.mark.timeout(240),
]


@pytest.fixture(scope="module")
def big_video(tmp_path_factory):
    directory = tmp_path_factory.mktemp("served")
    sha = write_padded_video(directory / "big.mp4", SIZE)
    with serve_directory(directory) as url:
        yield f"{url}/big.mp4", sha


@flow(name="store-a-large-output")
async def store(result, credentials, storage) -> list[StoredOutput]:
    return await download_generation(result, credentials, storage, "big/{name}.{ext}", "big")


def _result(url: str) -> GenerationResult:
    now = datetime.now(timezone.utc)
    generation = Generation(
        provider="segmind", model="gen4_turbo", kind="video", job_id="big-job-1",
        fingerprint="b" * 64, base_url="http://127.0.0.1:9", submitted_at=now,
        request={"promptImage": "sha256:" + "c" * 64, "promptText": "a big one"},
    )
    return GenerationResult(generation=generation, state=JobState.SUCCEEDED, outputs=[url],
                            metrics={"inference_time": 1.0}, cost=25.0, completed_at=now)


async def _measured_download(result, credentials, storage) -> tuple[list[StoredOutput], dict]:
    baseline_rss = process_rss_mb()[0]
    exact = reset_peak_rss()
    tracemalloc.start()
    tracemalloc.reset_peak()
    started = time.monotonic()
    try:
        stored = await store(result, credentials, storage)
    finally:
        elapsed = time.monotonic() - started
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    peak_rss = process_rss_mb()[1]
    numbers = {
        "seconds": round(elapsed, 1),
        "rss_growth_mb": round(peak_rss - baseline_rss, 1),
        "tracemalloc_peak_mb": round(traced_peak / 1e6, 1),
        "rss_peak_was_reset": exact,
    }
    print(f"\n{type(storage).__name__}: {numbers}")
    return stored, numbers


async def test_300_mib_output_streams_to_local_disk(big_video, segmind_credentials, tmp_path):
    url, sha = big_video
    stored, numbers = await _measured_download(_result(url), segmind_credentials, LocalStorage(tmp_path))
    video = stored[0]
    assert video.size == SIZE and video.sha256 == sha
    assert Path(video.location).stat().st_size == SIZE
    assert video.preview_key and (tmp_path / video.preview_key).stat().st_size < 500_000
    assert StoredOutput.model_validate_json(Path(video.sidecar).read_text()).sha256 == sha
    assert not list(tmp_path.rglob(".part-*")), "a temporary file was left behind"
    assert numbers["rss_peak_was_reset"], "could not reset the RSS high-water mark"
    assert numbers["rss_growth_mb"] < LIMIT / 1e6, numbers
    assert numbers["tracemalloc_peak_mb"] < LIMIT / 1e6, numbers
    assert numbers["seconds"] < SECONDS, numbers


async def test_300_mib_output_streams_to_s3_in_parts(big_video, segmind_credentials, tmp_path):
    url, sha = big_video
    with moto_server_process() as endpoint:
        bucket = new_bucket(aws_credentials(endpoint), "big-outputs", "videos")
        storage = S3Storage(bucket, staging_dir=tmp_path / "staging")
        stored, numbers = await _measured_download(_result(url), segmind_credentials, storage)
        video = stored[0]
        assert video.location == "s3://big-outputs/videos/big/big.mp4"
        head = storage.client().head_object(Bucket="big-outputs", Key="videos/big/big.mp4")
        assert head["ContentLength"] == SIZE
        tags = storage.client().get_object_tagging(Bucket="big-outputs", Key="videos/big/big.mp4")
        assert tags["TagSet"] == [{"Key": "sha256", "Value": sha}]  # streamed: its tag, not metadata
        parts = int(head["ETag"].strip('"').rpartition("-")[2])
        assert parts == -(-SIZE // storage.transfer_config.multipart_chunksize)  # multipart
        assert (await storage.read_sidecar("big/big.mp4")).sha256 == sha
        assert await storage.read_bytes("big/big.mp4.preview.gif")
        assert not list((tmp_path / "staging").iterdir()), "the staged download was not removed"
        # Stored and verified: a second run finds it (HEAD + sidecar) and moves no bytes.
        started = time.monotonic()
        again = await store(_result(url), segmind_credentials, storage)
        assert again[0].sha256 == sha and time.monotonic() - started < 5
    assert numbers["rss_peak_was_reset"], "could not reset the RSS high-water mark"
    assert numbers["rss_growth_mb"] < LIMIT / 1e6, numbers
    assert numbers["tracemalloc_peak_mb"] < LIMIT / 1e6, numbers
    assert numbers["seconds"] < SECONDS, numbers


# ---- outputs over the size limit of their kind -------------------------------------------


@pytest.fixture(scope="module")
def oversize_emulator():
    from prefect_runway.emulator import Emulator, EmulatorConfig

    with Emulator(EmulatorConfig(latency=0.2, video_fps=2)) as emu:
        yield emu


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and "prefect-runway-ledger" not in p.parts]


async def test_a_300_mib_chunked_body_with_png_magic_is_not_stored_as_a_still(
    oversize_emulator, tmp_path
):
    """The case that was stored: no Content-Length, PNG magic bytes, 300 MiB. The default
    limit for stills (64 MiB) stops it while it streams; the partial is removed."""
    from prefect_runway import SegmindCredentials, generate_image
    from prefect_runway.errors import DownloadTooLarge

    emu = oversize_emulator
    emu.configure(oversize_bytes=SIZE, oversize_chunked=True)
    credentials = SegmindCredentials(api_key="emulator-key", base_url=emu.url,
                                     poll_interval_seconds=0.1)
    before = emu.stats()["segmind"]["downloads"]
    with pytest.raises(DownloadTooLarge) as info:
        await generate_image(
            prompt="a still that never ends [oversize]", credentials=credentials, seed=1,
            reference_images=[{"uri": "https://example.com/ref.png", "tag": "ref"}],
            storage=str(tmp_path), name="huge",
        )
    assert info.value.limit == credentials.max_still_bytes == 64 * 1024 * 1024
    # Stopped at the chunk that went past the limit, not at the end of the body.
    assert info.value.limit < info.value.size < info.value.limit + 8 * 1024 * 1024
    assert emu.stats()["segmind"]["downloads"] - before == 1  # final: not retried
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_video_over_the_blocks_limit_is_refused_from_its_length_or_while_streaming(
    oversize_emulator, tmp_path, chunked
):
    from prefect_runway import RunwayCredentials, animate_image
    from prefect_runway.emulator import media
    from prefect_runway.errors import DownloadError, DownloadTooLarge

    emu = oversize_emulator
    emu.configure(oversize_bytes=24 * 1024 * 1024, oversize_chunked=chunked)
    limit = 4 * 1024 * 1024
    credentials = RunwayCredentials(api_key="emulator-key", base_url=emu.url,
                                    poll_interval_seconds=0.1, max_video_bytes=limit)
    image = tmp_path / "in.png"
    image.write_bytes(media.make_still("oversize", 2, 640, 360))
    before = emu.stats()["runway"]
    with pytest.raises(DownloadTooLarge) as info:
        await animate_image(
            image=str(image), prompt=f"a long one [oversize] {chunked}", duration=2,
            credentials=credentials, storage=str(tmp_path / "out"), preview=None, name="long",
        )
    after = emu.stats()["runway"]
    assert isinstance(info.value, DownloadError) and info.value.limit == limit
    if chunked:
        assert limit < info.value.size < 24 * 1024 * 1024
    else:
        assert info.value.size == 24 * 1024 * 1024  # from the Content-Length
    assert "max_video_bytes" in str(info.value)
    assert after["downloads"] - before["downloads"] == 1  # final: not retried
    assert _leftovers(tmp_path / "out") == []
