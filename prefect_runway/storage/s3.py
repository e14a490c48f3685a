"""Outputs in S3 (or any S3-compatible store) through a prefect-aws ``S3Bucket`` block.

A finished download is a verified temporary file; :class:`S3Storage` uploads it from that
file with boto3's managed transfer (multipart above a threshold, a bounded number of parts in
flight), so a large video never sits whole in memory. Objects carry their sha256 as metadata
(``x-amz-meta-sha256``); a re-run compares size and that digest with the sidecar instead of
downloading the file again (``verify_bytes=True`` streams and hashes it instead).

The still of a chain reaches the video provider as a short-lived presigned ``GET`` URL.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import hashlib
import io
import logging
import mimetypes
import os
import stat
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from boto3.s3.transfer import TransferConfig

from prefect_runway.errors import InvalidRequest, StorageError
from prefect_runway.models import StoredOutput
from prefect_runway.settings import MAX_PRESIGN_SECONDS, get_settings, link_seconds
from prefect_runway.storage.base import OutputStorage, StreamedPut
from prefect_runway.storage.keys import safe_key

#: S3 error codes that mean "nothing is stored there".
S3_ABSENT = frozenset({"NoSuchKey", "404", "NotFound"})
#: S3 error codes that no retry cures: the storage is misconfigured.
_MISCONFIGURED = frozenset({
    "NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
    "AllAccessDisabled", "InvalidBucketName", "403",
})
_MiB = 1024 * 1024
#: S3's smallest part (all but the last).
_MIN_PART = 5 * _MiB
#: Where parts wait while their output downloads, under the bucket folder.
STAGING_FOLDER = ".prefect-runway-staging"


def default_transfer_config() -> TransferConfig:
    """Multipart above 16 MiB, 8 MiB parts, 4 in flight: at most ~32 MiB buffered."""
    return TransferConfig(
        multipart_threshold=16 * _MiB,
        multipart_chunksize=8 * _MiB,
        max_concurrency=4,
        use_threads=True,
    )


class S3Storage(OutputStorage):
    """Verified outputs and their sidecars in an S3 bucket (under the block's folder).

    Args:
        bucket: A prefect-aws ``S3Bucket`` block; its ``bucket_folder`` is the key prefix.
        transfer_config: boto3 ``TransferConfig`` for uploads (default:
            :func:`default_transfer_config`).
        staging_dir: Local directory for partial downloads (default: one per bucket and
            prefix in a folder of the system temp dir that only this user may enter). It
            must have room for the largest output.
        verify_bytes: When checking an output that is already stored, stream and hash its
            bytes instead of trusting the size and sha256 recorded at upload.
        link_seconds: How long the links in artifacts stay valid (presigned ``GET`` URLs;
            anyone holding one may download that output until then): 60 to 604800 s;
            default ``PREFECT_RUNWAY_ARTIFACT_LINK_SECONDS``, else one day.

    Example:
        ```python
        from prefect import flow
        from prefect_aws.s3 import S3Bucket
        from prefect_runway import SegmindCredentials, image_to_video

        @flow
        async def nightly():
            bucket = await S3Bucket.load("BLOCK_NAME")
            return await image_to_video(
                still_prompt="a lighthouse @model", motion_prompt="slow dolly in",
                credentials=await SegmindCredentials.load("BLOCK_NAME"),
                reference_images=[{"uri": "https://example.com/ref.png", "tag": "model"}],
                storage=bucket, key_template="{date}/{name}-{seed}.{ext}", name="lighthouse",
            )
        ```
    """

    def __init__(
        self,
        bucket: Any,
        *,
        transfer_config: TransferConfig | None = None,
        staging_dir: str | os.PathLike[str] | None = None,
        verify_bytes: bool = False,
        link_seconds: int | None = None,
    ) -> None:
        self.link_seconds = artifact_link_seconds(link_seconds)
        self.bucket = bucket
        self.bucket_name: str = bucket.bucket_name
        self.prefix = _clean_prefix(getattr(bucket, "bucket_folder", "") or "")
        self.transfer_config = transfer_config or default_transfer_config()
        self.verify_bytes = verify_bytes
        self._presigner: Any = None
        # One staging directory per bucket and prefix, stable across processes, so a partial
        # download left by a killed process is found and resumed by the next one; by default
        # in a folder of the shared temp dir that is this user's alone (see staging_dir).
        private = Path(tempfile.gettempdir()) / f"prefect-runway-staging-{os.geteuid()}"
        self._private_root = None if staging_dir else private
        self._staging = Path(staging_dir) if staging_dir else (
            private / hashlib.sha256(self.uri.encode()).hexdigest()[:16]
        )

    @classmethod
    def from_uri(cls, uri: str, **kwargs: Any) -> S3Storage:
        """An S3Storage for ``s3://bucket/prefix``, configured from the environment.

        The endpoint comes from ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (any
        S3-compatible store; path-style addressing is used with a custom endpoint), the region
        from ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, and the keys from boto3's usual chain
        (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, an instance or
        task role). The block built here holds no secret itself.

        Raises:
            InvalidRequest: when ``uri`` is not ``s3://bucket[/prefix]``.
        """
        from prefect_aws import AwsClientParameters, AwsCredentials
        from prefect_aws.s3 import S3Bucket

        parts = urlsplit(uri)
        if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
            raise InvalidRequest("storage", f"{uri!r} is not an S3 URI", allowed="s3://bucket/prefix")
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        client_parameters = AwsClientParameters(
            endpoint_url=endpoint or None,
            config={"s3": {"addressing_style": "path"}} if endpoint else None,
        )
        credentials = AwsCredentials(
            region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
            aws_client_parameters=client_parameters,
        )
        bucket = S3Bucket(
            bucket_name=parts.netloc, bucket_folder=_clean_prefix(parts.path),
            credentials=credentials,
        )
        return cls(bucket, **kwargs)

    def __repr__(self) -> str:
        return f"S3Storage({self.uri!r})"

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket_name}/{self.prefix}".rstrip("/")

    # ---- keys -----------------------------------------------------------------------------

    def object_key(self, key: str) -> str:
        """The S3 object key of a storage key: the bucket folder, then the (safe) key."""
        safe = safe_key(key)
        return f"{self.prefix}/{safe}" if self.prefix else safe

    def location(self, key: str) -> str:
        return f"s3://{self.bucket_name}/{self.object_key(key)}"

    def staging_dir(self) -> Path:
        """The staging directory, made if needed. The default one is in the system's shared
        temp dir, so its folder must be this user's alone (mode 0700, not a link): another
        user could otherwise plant links there or swap a verified file before its upload.

        Raises:
            StorageError: the default staging folder exists but is not private.
        """
        if self._private_root is not None:
            _private_directory(self._private_root)
        self._staging.mkdir(parents=True, exist_ok=True)
        return self._staging

    def client(self) -> Any:
        """The bucket's boto3 S3 client (cached by prefect-aws per credentials)."""
        return self.bucket.credentials.get_s3_client()

    def presigning_client(self) -> Any:
        """A client for presigning: the bucket's settings, with SigV4 unless set otherwise.

        boto3 may presign with the legacy SigV2 query format, which AWS no longer accepts
        in newer regions; SigV4 URLs live at most 7 days.
        """
        if self._presigner is None:
            from botocore.config import Config

            credentials = self.bucket.credentials
            params = credentials.aws_client_parameters.get_params_override()
            config = params.pop("config", None) or Config()
            if getattr(config, "signature_version", None) is None:
                config = config.merge(Config(signature_version="s3v4"))
            region = getattr(credentials, "region_name", None)
            if region:
                params["region_name"] = region
            self._presigner = credentials.get_boto3_session().client(
                "s3", config=config, **params
            )
        return self._presigner

    # ---- OutputStorage --------------------------------------------------------------------

    async def put(
        self, path: Path, key: str, media_type: str, sha256: str | None = None
    ) -> str:
        """Upload the file at ``path`` (multipart when large) and delete it; returns the URI.

        The upload runs in a worker thread, reading the file part by part; ``sha256`` (the
        digest computed while downloading) is stored as object metadata.
        """
        object_key = self.object_key(key)
        extra: dict[str, Any] = {"ContentType": media_type}
        if sha256:
            extra["Metadata"] = {"sha256": sha256}
        try:
            await asyncio.to_thread(self._upload, Path(path), object_key, extra)
        finally:
            Path(path).unlink(missing_ok=True)
        return self.location(key)

    def _upload(self, path: Path, object_key: str, extra: dict[str, Any]) -> None:
        with _s3_errors(self, object_key):
            self.client().upload_file(
                Filename=str(path), Bucket=self.bucket_name, Key=object_key,
                ExtraArgs=extra, Config=self.transfer_config,
            )

    def streamed(self, key: str, logger: Any = None) -> StreamedPut | None:
        """A :class:`StreamedUpload` of the output for ``key``: its parts go to S3 while it
        downloads."""
        return StreamedUpload(self, logger)

    async def read_bytes(self, key: str, max_bytes: int | None = None) -> bytes | None:
        """The bytes at ``key``, or None when absent.

        With ``max_bytes``, at most ``max_bytes + 1`` bytes are read: an answer longer than
        ``max_bytes`` means the object is larger.
        """
        return await asyncio.to_thread(self._read, self.object_key(key), max_bytes)

    def _get(self, object_key: str) -> Any:
        """The object's GetObject answer, or None when it is absent."""
        try:
            return self.client().get_object(Bucket=self.bucket_name, Key=object_key)
        except Exception as exc:
            if s3_error_code(exc) in S3_ABSENT:
                return None
            raise

    def _read(self, object_key: str, max_bytes: int | None = None) -> bytes | None:
        with _s3_errors(self, object_key):
            response = self._get(object_key)
            if response is None:
                return None
            body = response["Body"]
            try:
                return body.read() if max_bytes is None else body.read(max_bytes + 1)
            finally:
                body.close()

    async def write_bytes(self, key: str, data: bytes) -> str:
        object_key = self.object_key(key)
        media_type = mimetypes.guess_type(object_key)[0] or "application/octet-stream"
        await asyncio.to_thread(self._write, object_key, data, media_type)
        return self.location(key)

    def _write(self, object_key: str, data: bytes, media_type: str) -> None:
        with _s3_errors(self, object_key):
            self.client().put_object(
                Bucket=self.bucket_name, Key=object_key, Body=data, ContentType=media_type,
            )

    async def sha256(self, key: str) -> str | None:
        """Stream the object and hash it (1 MiB at a time); None when absent."""
        return await asyncio.to_thread(self._stream_sha256, self.object_key(key))

    def _stream_sha256(self, object_key: str) -> str | None:
        with _s3_errors(self, object_key):
            response = self._get(object_key)
            if response is None:
                return None
            digest = hashlib.sha256()
            body = response["Body"]
            try:
                for chunk in body.iter_chunks(_MiB):
                    digest.update(chunk)
            finally:
                body.close()
            return digest.hexdigest()

    async def head(self, key: str) -> dict[str, Any] | None:
        """The object's size, media type and metadata (``HEAD``); None when absent."""
        return await asyncio.to_thread(self._head, self.object_key(key))

    def _head(self, object_key: str) -> dict[str, Any] | None:
        with _s3_errors(self, object_key):
            try:
                return self.client().head_object(Bucket=self.bucket_name, Key=object_key)
            except Exception as exc:
                if s3_error_code(exc) in S3_ABSENT:
                    return None
                raise

    async def verified(self, key: str) -> StoredOutput | None:
        """The sidecar of an output whose object still matches it, without downloading it.

        Matching means: same size, and the sha256 recorded at upload equals the sidecar's.
        An object without that metadata (written by another tool), or ``verify_bytes=True``,
        is streamed and hashed instead.
        """
        stored = await self.read_sidecar(key)
        if stored is None:
            return None
        head = await self.head(key)
        if head is None or head.get("ContentLength") != stored.size:
            return None
        recorded = (head.get("Metadata") or {}).get("sha256")
        if recorded and not self.verify_bytes:
            return stored if recorded == stored.sha256 else None
        return stored if await self.sha256(key) == stored.sha256 else None

    async def link(self, key: str) -> str | None:
        """A presigned ``GET`` URL for ``key``, valid :attr:`link_seconds`."""
        return await self.presigned_url(key, self.link_seconds)

    async def presigned_url(self, key: str, expires_seconds: int = 900) -> str | None:
        """A presigned ``GET`` URL for ``key``, valid for ``expires_seconds`` (max 7 days)."""
        expires = max(1, min(int(expires_seconds), MAX_PRESIGN_SECONDS))
        object_key = self.object_key(key)
        return await asyncio.to_thread(
            self.presigning_client().generate_presigned_url,
            "get_object", Params={"Bucket": self.bucket_name, "Key": object_key},
            ExpiresIn=expires,
        )


class StreamedUpload:
    """An output's parts sent to S3 while it downloads, landed only once it is verified.

    Each part (``multipart_chunksize`` bytes, once the download passes
    ``multipart_threshold``) is read back from the partial file as soon as it is written,
    hashed in order, and put as an object of its own under the bucket folder's
    ``.prefect-runway-staging/<random>/``; at most ``max_concurrency`` parts are in memory.
    :meth:`land` checks that the parts hold exactly the verified download (size and sha256),
    then makes the output one multipart upload with the sha256 in its metadata (which S3
    takes only when an upload starts), its parts copied inside S3 (``UploadPartCopy``), and
    aborts that upload on any failure. When a part could not be sent, or the download started
    over, the output is uploaded from the verified file instead (boto3's managed transfer,
    with its retries): the file is deleted only once the output has landed. :meth:`close`
    deletes the staged parts whatever happened.
    """

    def __init__(self, storage: S3Storage, logger: Any = None) -> None:
        config = storage.transfer_config
        self.storage = storage
        self.log = logger or logging.getLogger(__name__)
        self.part_size = max(int(config.multipart_chunksize), _MIN_PART)
        self.threshold = max(int(config.multipart_threshold), self.part_size)
        self.in_flight = max(1, int(config.max_concurrency))
        folder = f"{STAGING_FOLDER}/{uuid.uuid4().hex}"
        self.folder = f"{storage.prefix}/{folder}" if storage.prefix else folder
        self.staged = 0  #: parts staged by the last landing (0: landed from the file)
        self._fds: list[int] = []  # our duplicates of the partial file's descriptors
        self._inode: tuple[int, int] | None = None
        self._end = 0  # bytes of the partial file written so far
        self._size: int | None = None  # the whole size, once the download is done
        self._round = 0  # a new one each time the download starts over
        self._next = 0  # the next part to read
        self._digest = hashlib.sha256()  # of the parts read, in order
        self._parts: dict[int, str] = {}  # part index -> staged object key
        self._sent: set[str] = set()  # every staged object key (to delete)
        self._uploads: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(self.in_flight)
        self._more = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None  # this round's
        self._pumps: list[asyncio.Task[None]] = []
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="prefect-runway-s3-read")
        self._senders = ThreadPoolExecutor(self.in_flight, thread_name_prefix="prefect-runway-s3")
        self._failed: str | None = None

    # ---- while downloading ----------------------------------------------------------------

    def written(self, fd: int, end: int) -> None:
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) != self._inode or end < self._end:
            self._start_over(fd, (info.st_dev, info.st_ino))
        self._end = end
        if self._failed is None and self._pump is None and end >= self.threshold:
            self._pump = asyncio.get_running_loop().create_task(self._stage(self._round))
            self._pumps.append(self._pump)
        self._more.set()

    def _start_over(self, fd: int, inode: tuple[int, int]) -> None:
        """A new partial file, or the same one written again from an earlier byte: what was
        staged no longer counts (it is deleted by :meth:`close`); the pump of the earlier
        round stops after the part it is reading (never cancelled inside a read)."""
        self._pump = None
        self._fds.append(os.dup(fd))
        self._inode = inode
        self._round += 1
        self._next, self._digest, self._parts = 0, hashlib.sha256(), {}

    async def _stage(self, round_: int) -> None:
        """Read, hash and send every part as soon as it is written (and the last one once the
        size is known), ``in_flight`` at a time."""
        fd, size = self._fds[-1], self.part_size
        while self._failed is None and round_ == self._round:
            start = self._next * size
            whole = self._end >= start + size
            last = self._size is not None and self._end == self._size and start < self._size
            if not (whole or last):
                if self._size is not None:
                    return
                self._more.clear()
                await self._more.wait()
                continue
            length = size if whole else self._end - start
            await self._slots.acquire()
            try:
                await asyncio.get_running_loop().run_in_executor(
                    self._reader, _hash_part, fd, start, length, self._digest)
            except BaseException:
                self._slots.release()
                raise
            if round_ != self._round:
                self._slots.release()
                return
            key = f"{self.folder}/{round_}-{self._next + 1:05d}"
            self._sent.add(key)
            task = asyncio.get_running_loop().create_task(
                self._send(round_, self._next, key, _FilePart(fd, start, length)))
            self._uploads.add(task)
            task.add_done_callback(self._uploads.discard)
            self._next += 1

    async def _send(self, round_: int, index: int, key: str, data: _FilePart) -> None:
        try:
            put = functools.partial(self.storage.client().put_object,
                                    Bucket=self.storage.bucket_name, Key=key, Body=data)
            await asyncio.get_running_loop().run_in_executor(self._senders, put)
            if round_ == self._round:
                self._parts[index] = key
        except Exception as exc:
            if round_ == self._round and self._failed is None:
                self._failed = f"part {index + 1} was not sent ({type(exc).__name__})"
                self._more.set()
        finally:
            self._slots.release()

    # ---- once downloaded ------------------------------------------------------------------

    async def land(self, path: Path, key: str, media_type: str, sha256: str, size: int) -> str:
        """Make the output at ``key`` from the staged parts, else upload it from ``path``.

        Raises:
            InvalidRequest: the bucket cannot be reached with these credentials.
        """
        path = Path(path)
        reason = await self._staged_whole(sha256, size)
        if reason is None:
            object_key = self.storage.object_key(key)
            keys = [self._parts[i] for i in range(len(self._parts))]
            try:
                await asyncio.to_thread(self._assemble, object_key, keys, media_type, sha256)
            except InvalidRequest:
                raise
            except Exception as exc:
                reason = f"joining its parts failed ({type(exc).__name__})"
            else:
                path.unlink(missing_ok=True)
                self.staged = len(keys)
                return self.storage.location(key)
        if self._pump is not None or self._sent:
            self.log.warning("Uploading %s from the downloaded file: %s", key, reason)
        return await self.storage.put(path, key, media_type, sha256=sha256)

    async def _staged_whole(self, sha256: str, size: int) -> str | None:
        """None when every part is staged and they hash to ``sha256`` over ``size`` bytes,
        else why not."""
        if self._pump is None:
            return self._failed or "it was not streamed"
        self._size = size
        self._more.set()
        try:
            await self._pump
        except Exception as exc:
            return f"reading a part failed ({type(exc).__name__})"
        if self._uploads:
            await asyncio.gather(*self._uploads)
        if self._failed is not None:
            return self._failed
        if self._end != size or self._next * self.part_size < size:
            return "the download started over"
        if len(self._parts) != self._next or self._digest.hexdigest() != sha256:
            return "its parts do not hold the verified bytes"
        return None

    def _assemble(self, object_key: str, keys: list[str], media_type: str, sha256: str) -> None:
        """One multipart upload of the staged parts (copied inside S3), aborted on failure."""
        client, bucket = self.storage.client(), self.storage.bucket_name
        with _s3_errors(self.storage, object_key):
            upload_id = client.create_multipart_upload(
                Bucket=bucket, Key=object_key, ContentType=media_type, Metadata={"sha256": sha256},
            )["UploadId"]
            try:
                def copy(numbered: tuple[int, str]) -> dict[str, Any]:
                    number, source = numbered
                    answer = client.upload_part_copy(
                        Bucket=bucket, Key=object_key, UploadId=upload_id, PartNumber=number,
                        CopySource={"Bucket": bucket, "Key": source},
                    )
                    return {"ETag": answer["CopyPartResult"]["ETag"], "PartNumber": number}

                with ThreadPoolExecutor(self.in_flight, thread_name_prefix="prefect-runway-s3") as pool:
                    parts = list(pool.map(copy, enumerate(keys, 1)))
                client.complete_multipart_upload(
                    Bucket=bucket, Key=object_key, UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
            except BaseException:
                with suppress(Exception):
                    client.abort_multipart_upload(Bucket=bucket, Key=object_key, UploadId=upload_id)
                raise

    async def close(self) -> None:
        self._round += 1  # every pump stops after the part it is reading
        self._more.set()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        if self._uploads:
            await asyncio.gather(*self._uploads, return_exceptions=True)
        try:
            if self._sent:
                await asyncio.to_thread(self._delete, sorted(self._sent))
        finally:
            self._reader.shutdown(wait=True)  # nothing runs there any more
            self._senders.shutdown(wait=True)
            for fd in self._fds:
                os.close(fd)
            self._fds.clear()

    def _delete(self, keys: list[str]) -> None:
        client = self.storage.client()
        for start in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[start:start + 1000]]
            answer = client.delete_objects(Bucket=self.storage.bucket_name,
                                           Delete={"Objects": batch, "Quiet": True})
            if answer.get("Errors"):
                self.log.warning("Could not delete %d staged parts under s3://%s/%s/",
                                 len(answer["Errors"]), self.storage.bucket_name, self.folder)
        self._sent.difference_update(keys)


def _hash_part(fd: int, start: int, length: int, digest: Any) -> None:
    """Add ``length`` bytes of the file at ``fd`` from ``start`` to ``digest`` (1 MiB at a
    time: no part is ever held whole)."""
    end = start + length
    while start < end:
        block = os.pread(fd, min(_MiB, end - start), start)
        if not block:
            raise OSError(errno.EIO, f"the partial file ended at {start} bytes")
        digest.update(block)
        start += len(block)


class _FilePart(io.RawIOBase):
    """``length`` bytes of the file at ``fd`` from ``start``, as a seekable file for boto3:
    a part is read from the page cache as it is sent, never held whole."""

    def __init__(self, fd: int, start: int, length: int) -> None:
        super().__init__()
        self._fd, self._start, self._length, self._at = fd, start, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._at

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._at, os.SEEK_END: self._length}[whence]
        self._at = max(0, min(self._length, base + offset))
        return self._at

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self._length - self._at)
        if count <= 0:
            return 0
        data = os.pread(self._fd, count, self._start + self._at)
        buffer[: len(data)] = data
        self._at += len(data)
        return len(data)

    def read(self, size: int = -1) -> bytes:
        count = self._length - self._at if size is None or size < 0 else min(size, self._length - self._at)
        data = os.pread(self._fd, max(count, 0), self._start + self._at)
        self._at += len(data)
        return data


def artifact_link_seconds(value: int | None = None) -> int:
    """The lifetime of artifact links: ``value``, else the setting
    ``PREFECT_RUNWAY_ARTIFACT_LINK_SECONDS`` (one day unless set).

    Raises:
        InvalidRequest: not a whole number of seconds from 60 to 604800 (SigV4's limit).
    """
    return get_settings().artifact_link_seconds if value is None else link_seconds(
        value, "link_seconds")


def _private_directory(path: Path) -> None:
    """Make ``path`` (mode 0700) or check that it is a directory of this user's that no one
    else may enter; StorageError if not."""
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(path)
    except OSError as exc:
        raise StorageError(f"cannot make the staging folder {path} ({exc.strerror})",
                           location=str(path)) from None
    if (not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid()
            or info.st_mode & 0o077):
        raise StorageError(
            f"the staging folder {path} is not private (a link, another user's, or open to "
            "others): remove it, or pass S3Storage(staging_dir=...)", location=str(path),
        )


def _clean_prefix(prefix: str) -> str:
    prefix = prefix.strip("/")
    return safe_key(prefix) if prefix else ""


def s3_error_code(exc: BaseException) -> str | None:
    """The error code of a boto3 ``ClientError`` (``NoSuchKey``, ``403``), or None."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str((response.get("Error") or {}).get("Code") or "") or None
    return None


@contextmanager
def _s3_errors(storage: S3Storage, object_key: str) -> Iterator[None]:
    """Turn errors no retry cures (no bucket, no access, no credentials) into
    :class:`InvalidRequest` on ``storage``, so the download task does not retry them."""
    from botocore.exceptions import NoCredentialsError, PartialCredentialsError

    where = f"s3://{storage.bucket_name}/{object_key}"
    try:
        yield
    except (NoCredentialsError, PartialCredentialsError):
        raise InvalidRequest(
            "storage", f"no AWS credentials to reach {where}",
            allowed="AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, or an AwsCredentials block",
        ) from None
    except Exception as exc:
        # boto3's S3UploadFailedError wraps the ClientError that says why (or only names it).
        inner = exc.__cause__ or exc.__context__
        code = s3_error_code(exc) or (s3_error_code(inner) if inner is not None else None)
        if code is None:
            code = next((c for c in _MISCONFIGURED if f"({c})" in str(exc)), None)
        if code in _MISCONFIGURED:
            raise InvalidRequest(
                "storage", f"S3 refused {where} ({code})",
                allowed="an existing bucket these credentials may read and write",
            ) from None
        raise
