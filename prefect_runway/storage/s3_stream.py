"""An output streamed to S3 while it downloads: its parts staged as objects, then joined into
the output by one multipart upload once the download is verified, or the staged parts dropped."""

from __future__ import annotations

import asyncio
import errno
import functools
import hashlib
import io
import logging
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from prefect_runway.errors import InvalidRequest

if TYPE_CHECKING:  # boto3 is imported when S3 is used, not by every flow run
    from boto3.s3.transfer import TransferConfig

_MiB = 1024 * 1024
#: S3's smallest part (all but the last).
_MIN_PART = 5 * _MiB
#: Where parts wait while their output downloads, under the bucket folder.
STAGING_FOLDER = ".prefect-runway-staging"


class StreamTarget(Protocol):
    """The bucket a streamed upload writes to: what it uses of an ``S3Storage``."""

    bucket_name: str
    prefix: str
    transfer_config: TransferConfig

    def client(self) -> Any: ...

    def object_key(self, key: str) -> str: ...

    def location(self, key: str) -> str: ...

    def typed_errors(self, object_key: str) -> AbstractContextManager[None]: ...

    async def put(
        self, path: Path, key: str, media_type: str, sha256: str | None = None
    ) -> str: ...


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

    def __init__(self, storage: StreamTarget, logger: Any = None) -> None:
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
        with self.storage.typed_errors(object_key):
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
