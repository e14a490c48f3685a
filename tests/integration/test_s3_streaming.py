"""Outputs streamed to S3 while they download: parts go up as the body arrives, the output
lands only once verified, and a failed stream leaves nothing behind (no multipart upload, no
staged part, no object). S3 is moto's server on 127.0.0.1; the providers are the emulator.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable

import pytest
from boto3.s3.transfer import TransferConfig
from s3_helpers import (  # noqa: F401
    aws_credentials,
    get_object,
    list_keys,
    moto_url,
    new_bucket,
)

from prefect_runway import RunwayCredentials
from prefect_runway.emulator import media
from prefect_runway.errors import DownloadError, DownloadTooLarge
from prefect_runway.flows import animate_image
from prefect_runway.storage.s3 import S3Storage
from prefect_runway.storage.s3_stream import STAGING_FOLDER

MiB = 1024 * 1024

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def emulator():
    from prefect_runway.emulator import Emulator, EmulatorConfig

    with Emulator(EmulatorConfig(latency=0.2, video_fps=2)) as emu:
        yield emu


@pytest.fixture()
def bucket(moto_url, request):  # noqa: F811
    name = "stream-" + hashlib.sha256(request.node.name.encode()).hexdigest()[:12]
    return new_bucket(aws_credentials(moto_url), name, "videos")


def _outputs(bucket) -> list[str]:
    """Every key in the bucket but the ledger's records (written before anything is paid)."""
    return [key for key in list_keys(bucket) if "/prefect-runway-ledger/" not in key]


def _uploads(bucket) -> list:
    client = bucket.credentials.get_s3_client()
    return client.list_multipart_uploads(Bucket=bucket.bucket_name).get("Uploads", [])


async def _until(condition: Callable[[], bool], seconds: float = 60) -> None:
    """Wait (bounded) until ``condition()`` holds; it runs in a thread (it may call S3)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not await asyncio.to_thread(condition):
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def _small_parts(bucket) -> S3Storage:
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB,
                            max_concurrency=2)
    return S3Storage(bucket, transfer_config=config)


async def _stream_in_two_halves(storage: S3Storage, bucket, path, data: bytes, before_land=None):
    """Write ``data`` to ``path`` in two steps, telling a streamed upload; the parts of the
    first half must be in S3 before the second half is written."""
    upload = storage.streamed("clip.mp4")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, data[: 11 * MiB])
        upload.written(fd, 11 * MiB)
        staged = f"videos/{STAGING_FOLDER}/"
        await _until(lambda: len(list_keys(bucket, staged)) == 2)
        os.write(fd, data[11 * MiB:])
        upload.written(fd, len(data))
        if before_land is not None:
            await asyncio.to_thread(before_land, list_keys(bucket, staged))
        sha = hashlib.sha256(data).hexdigest()
        location = await upload.land(path, "clip.mp4", "video/mp4", sha, len(data))
    finally:
        await upload.close()
        os.close(fd)
    return upload, location


async def test_parts_go_up_while_the_file_is_written_and_land_as_one_verified_object(
    bucket, tmp_path
):
    storage = _small_parts(bucket)
    data = os.urandom(17 * MiB)  # parts of 5, 5, 5 and 2 MiB
    path = tmp_path / "clip.part"
    upload, location = await _stream_in_two_halves(storage, bucket, path, data)
    assert upload.staged == 4  # landed from the staged parts, not from the file
    assert location == f"s3://{bucket.bucket_name}/videos/clip.mp4"
    head = storage.client().head_object(Bucket=bucket.bucket_name, Key="videos/clip.mp4")
    assert head["Metadata"] == {"sha256": hashlib.sha256(data).hexdigest()}
    assert head["ContentType"] == "video/mp4" and head["ETag"].strip('"').endswith("-4")
    assert get_object(bucket, "videos/clip.mp4") == data
    assert list_keys(bucket) == ["videos/clip.mp4"]  # no staged part left
    assert _uploads(bucket) == [] and not path.exists()


async def test_a_join_that_fails_is_aborted_and_the_file_is_uploaded_instead(bucket, tmp_path):
    """S3 failing mid-way (a staged part gone before the join): the multipart upload is
    aborted, and the output is uploaded from the verified local file, which is kept until
    then."""
    storage = _small_parts(bucket)
    data = os.urandom(17 * MiB)
    path = tmp_path / "clip.part"

    def lose_a_part(staged: list[str]) -> None:
        storage.client().delete_object(Bucket=bucket.bucket_name, Key=staged[1])

    upload, _ = await _stream_in_two_halves(storage, bucket, path, data, before_land=lose_a_part)
    assert upload.staged == 0  # landed from the file
    assert get_object(bucket, "videos/clip.mp4") == data
    head = storage.client().head_object(Bucket=bucket.bucket_name, Key="videos/clip.mp4")
    assert head["Metadata"] == {"sha256": hashlib.sha256(data).hexdigest()}
    assert list_keys(bucket) == ["videos/clip.mp4"]
    assert _uploads(bucket) == [] and not path.exists()


# ---- through the flows, from the emulator ----------------------------------------------


async def _animate(emulator, bucket, tmp_path, tag: str, **credentials):
    image = tmp_path / "in.png"
    image.write_bytes(media.make_still(tag, 2, 640, 360))
    return await animate_image(
        image=str(image), prompt=f"a long one [oversize] {tag}", duration=2,
        credentials=RunwayCredentials(api_key="emulator-key", base_url=emulator.url,
                                      poll_interval_seconds=0.1, **credentials),
        storage=bucket, name=tag,
    )


async def test_a_large_output_streams_to_s3_with_its_sidecar(emulator, bucket, tmp_path):
    emulator.configure(oversize_bytes=40 * MiB, oversize_chunked=False)
    video = await _animate(emulator, bucket, tmp_path, "whole")
    storage = S3Storage(bucket)
    key = f"videos/{video.key}"
    data = get_object(bucket, key)
    assert len(data) == video.size == 40 * MiB
    assert hashlib.sha256(data).hexdigest() == video.sha256
    head = storage.client().head_object(Bucket=bucket.bucket_name, Key=key)
    assert head["Metadata"] == {"sha256": video.sha256}
    assert head["ETag"].strip('"').endswith("-5")  # 8 MiB parts
    assert await storage.read_sidecar(video.key) == video.model_copy(update={"sidecar": None})
    assert await storage.verified(video.key) is not None
    assert not [k for k in list_keys(bucket) if STAGING_FOLDER in k]
    assert _uploads(bucket) == []


async def test_a_stream_over_the_size_cap_leaves_nothing_in_s3(emulator, bucket, tmp_path):
    """No Content-Length: the limit (40 MiB) is hit after parts went up."""
    emulator.configure(oversize_bytes=64 * MiB, oversize_chunked=True)
    with pytest.raises(DownloadTooLarge):
        await _animate(emulator, bucket, tmp_path, "capped", max_video_bytes=40 * MiB)
    assert _uploads(bucket) == []
    assert _outputs(bucket) == []  # no object at the key, no sidecar, no staged part


async def test_a_truncated_stream_leaves_nothing_in_s3(emulator, bucket, tmp_path):
    """Every attempt breaks after half of 40 MiB (two parts sent each time), until the
    download gives up."""
    emulator.configure(oversize_bytes=40 * MiB, oversize_chunked=False)
    emulator.set_faults(scripted=[{"route": "media.download", "fault": "truncate", "times": 50}])
    try:
        with pytest.raises(DownloadError):
            await _animate(emulator, bucket, tmp_path, "broken")
    finally:
        emulator.clear_faults()
    assert _uploads(bucket) == []
    assert _outputs(bucket) == []


async def test_a_stream_that_starts_over_lands_the_bytes_of_its_last_attempt(
    emulator, bucket, tmp_path
):
    """The first attempt breaks after two parts went up; the server takes no Range, so the
    download starts over from byte 0: the parts of the first attempt do not count."""
    emulator.configure(oversize_bytes=40 * MiB, oversize_chunked=False)
    emulator.set_faults(scripted=[{"route": "media.download", "fault": "truncate", "times": 1}])
    try:
        video = await _animate(emulator, bucket, tmp_path, "again")
    finally:
        emulator.clear_faults()
    data = get_object(bucket, f"videos/{video.key}")
    assert len(data) == video.size == 40 * MiB
    assert hashlib.sha256(data).hexdigest() == video.sha256
    assert not [k for k in list_keys(bucket) if STAGING_FOLDER in k]
    assert _uploads(bucket) == []
