"""Outputs streamed to S3 while they download: parts go up as the body arrives, the output
lands only once verified, and a failed stream leaves nothing behind (no multipart upload, no
object). S3 is moto's server on 127.0.0.1; the providers are the emulator.
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
from prefect_runway.models import StoredOutput
from prefect_runway.storage.s3 import S3Storage

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


def _tags(bucket, key: str) -> dict[str, str]:
    client = bucket.credentials.get_s3_client()
    tags = client.get_object_tagging(Bucket=bucket.bucket_name, Key=key)["TagSet"]
    return {tag["Key"]: tag["Value"] for tag in tags}


def _parts_up(bucket) -> int:
    """Parts uploaded so far to the bucket's one multipart upload in progress (0: none)."""
    client = bucket.credentials.get_s3_client()
    uploads = _uploads(bucket)
    if len(uploads) != 1:
        return 0
    upload = uploads[0]
    answer = client.list_parts(Bucket=bucket.bucket_name, Key=upload["Key"],
                               UploadId=upload["UploadId"])
    return len(answer.get("Parts", []))


async def _stream_in_two_halves(storage: S3Storage, bucket, path, data: bytes, before_land=None,
                                sha: str | None = None):
    """Write ``data`` to ``path`` in two steps, telling a streamed upload; the parts of the
    first half must be in S3 (and no object at the key yet) before the second half is
    written. ``before_land(upload_in_progress)`` runs once the file is whole."""
    upload = storage.streamed("clip.mp4", "video/mp4")
    before = list_keys(bucket)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, data[: 11 * MiB])
        upload.written(fd, 11 * MiB)
        await _until(lambda: _parts_up(bucket) == 2)
        assert list_keys(bucket) == before  # the parts are no object until completed
        os.write(fd, data[11 * MiB:])
        upload.written(fd, len(data))
        if before_land is not None:
            await asyncio.to_thread(before_land, _uploads(bucket)[0])
        sha = sha or hashlib.sha256(data).hexdigest()
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
    assert upload.parts == 4  # completed from the parts sent, not uploaded from the file
    assert location == f"s3://{bucket.bucket_name}/videos/clip.mp4"
    head = storage.client().head_object(Bucket=bucket.bucket_name, Key="videos/clip.mp4")
    # S3 takes metadata only when an upload starts, before the digest is known: the sha256
    # of a streamed output is its tag.
    assert _tags(bucket, "videos/clip.mp4") == {"sha256": hashlib.sha256(data).hexdigest()}
    assert head["Metadata"] == {}
    assert head["ContentType"] == "video/mp4" and head["ETag"].strip('"').endswith("-4")
    assert get_object(bucket, "videos/clip.mp4") == data
    assert list_keys(bucket) == ["videos/clip.mp4"]
    assert _uploads(bucket) == [] and not path.exists()


async def test_parts_that_do_not_hash_to_the_verified_sha256_are_never_completed(
    bucket, tmp_path
):
    """The file changes under the stream after its first parts went up: those parts are not
    the verified bytes, so the upload is aborted, never completed, and the output is
    uploaded from the verified file."""
    storage = _small_parts(bucket)
    data = os.urandom(17 * MiB)
    verified = b"\0" * MiB + data[MiB:]
    path = tmp_path / "clip.part"

    def change_the_file(_upload) -> None:
        with open(path, "r+b") as f:
            f.write(verified[:MiB])

    upload, _ = await _stream_in_two_halves(storage, bucket, path, data, change_the_file,
                                            sha=hashlib.sha256(verified).hexdigest())
    assert upload.parts == 0  # uploaded from the file
    assert get_object(bucket, "videos/clip.mp4") == verified
    head = storage.client().head_object(Bucket=bucket.bucket_name, Key="videos/clip.mp4")
    assert head["Metadata"] == {"sha256": hashlib.sha256(verified).hexdigest()}
    assert list_keys(bucket) == ["videos/clip.mp4"]
    assert _uploads(bucket) == [] and not path.exists()


async def test_a_completion_that_fails_is_aborted_and_the_file_is_uploaded_instead(
    bucket, tmp_path
):
    """S3 failing mid-way (a part replaced behind our back: S3 refuses to complete with our
    ETags): the multipart upload is aborted, and the output is uploaded from the verified
    local file, which is kept until then."""
    storage = _small_parts(bucket)
    data = os.urandom(17 * MiB)
    path = tmp_path / "clip.part"

    def replace_a_part(upload) -> None:
        storage.client().upload_part(Bucket=bucket.bucket_name, Key=upload["Key"],
                                     UploadId=upload["UploadId"], PartNumber=2,
                                     Body=os.urandom(5 * MiB))

    upload, _ = await _stream_in_two_halves(storage, bucket, path, data, replace_a_part)
    assert upload.parts == 0  # landed from the file
    assert get_object(bucket, "videos/clip.mp4") == data
    head = storage.client().head_object(Bucket=bucket.bucket_name, Key="videos/clip.mp4")
    assert head["Metadata"] == {"sha256": hashlib.sha256(data).hexdigest()}
    assert list_keys(bucket) == ["videos/clip.mp4"]
    assert _uploads(bucket) == [] and not path.exists()


async def test_a_rerun_checks_a_streamed_output_by_its_sha256_tag(bucket, tmp_path):
    """``verified`` compares the sidecar with the object's tag (no download): a tag that is
    not the sidecar's sha256 is caught though the bytes match; with no tag the bytes are
    hashed."""
    storage = _small_parts(bucket)
    data = os.urandom(17 * MiB)
    sha = hashlib.sha256(data).hexdigest()
    await _stream_in_two_halves(storage, bucket, tmp_path / "clip.part", data)
    await storage.write_sidecar(StoredOutput(
        location=storage.location("clip.mp4"), key="clip.mp4", size=len(data), sha256=sha,
        media_type="video/mp4", provider="runwayml", model="gen4_turbo", kind="video",
        job_id="job-1", fingerprint="f" * 64, source_url="https://example.com/clip.mp4",
    ))
    assert (await storage.verified("clip.mp4")).sha256 == sha
    client = storage.client()
    client.put_object_tagging(Bucket=bucket.bucket_name, Key="videos/clip.mp4",
                              Tagging={"TagSet": [{"Key": "sha256", "Value": "0" * 64}]})
    assert await storage.verified("clip.mp4") is None  # the tag was read, not the bytes
    client.delete_object_tagging(Bucket=bucket.bucket_name, Key="videos/clip.mp4")
    assert (await storage.verified("clip.mp4")).sha256 == sha  # hashed


async def test_a_refused_tag_leaves_the_output_stored_and_says_so(bucket, tmp_path, caplog):
    """Credentials without ``s3:PutObjectTagging`` (S3 answers AccessDenied): the output is
    completed all the same, the log says its sha256 is not tagged, and later outputs do not
    ask again."""
    from botocore.awsrequest import AWSResponse

    storage = _small_parts(bucket)
    client = storage.client()
    asked = []

    def refuse(**kwargs):
        asked.append(kwargs["model"].name)
        raw = AWSResponse("https://s3", 403, {}, None)
        return raw, {"Error": {"Code": "AccessDenied", "Message": "not allowed"}}

    client.meta.events.register("before-call.s3.PutObjectTagging", refuse)
    try:
        for name in ("one", "two"):
            data = os.urandom(17 * MiB)
            upload, _ = await _stream_in_two_halves(storage, bucket, tmp_path / name, data)
            assert upload.parts == 4
            assert get_object(bucket, "videos/clip.mp4") == data
    finally:
        client.meta.events.unregister("before-call.s3.PutObjectTagging", refuse)
    assert len(asked) == 1
    assert "could not tag it with its sha256 (AccessDenied)" in caplog.text
    assert _tags(bucket, "videos/clip.mp4") == {}
    assert _uploads(bucket) == []


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
    assert _tags(bucket, key) == {"sha256": video.sha256}
    assert head["ETag"].strip('"').endswith("-5")  # 8 MiB parts
    assert await storage.read_sidecar(video.key) == video.model_copy(update={"sidecar": None})
    assert await storage.verified(video.key) is not None
    assert _outputs(bucket) == sorted([key, f"{key}.json", f"{key}.preview.gif"])
    assert _uploads(bucket) == []


async def test_a_stream_over_the_size_cap_leaves_nothing_in_s3(emulator, bucket, tmp_path):
    """No Content-Length: the limit (40 MiB) is hit after parts went up."""
    emulator.configure(oversize_bytes=64 * MiB, oversize_chunked=True)
    with pytest.raises(DownloadTooLarge):
        await _animate(emulator, bucket, tmp_path, "capped", max_video_bytes=40 * MiB)
    assert _uploads(bucket) == []
    assert _outputs(bucket) == []  # no object at the key, no sidecar


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
    assert _outputs(bucket) == sorted([f"videos/{video.key}", f"videos/{video.key}.json",
                                       f"videos/{video.key}.preview.gif"])
    assert _uploads(bucket) == []
