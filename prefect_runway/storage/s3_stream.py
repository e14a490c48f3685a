"""An output streamed to S3 while it downloads: one multipart upload whose parts go up as the
body arrives, completed only once the download is verified, else aborted."""

from __future__ import annotations

import asyncio
import errno
import functools
import hashlib
import io
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from prefect_runway.errors import InvalidRequest

if TYPE_CHECKING:  # boto3 is imported when S3 is used, not by every flow run
    from boto3.s3.transfer import TransferConfig

_MiB = 1024 * 1024
#: S3's smallest part (all but the last).
_MIN_PART = 5 * _MiB


class StreamTarget(Protocol):
    """The bucket a streamed upload writes to: what it uses of an ``S3Storage``."""

    bucket_name: str
    transfer_config: TransferConfig

    def client(self) -> Any: ...

    def object_key(self, key: str) -> str: ...

    def location(self, key: str) -> str: ...

    def typed_errors(self, object_key: str) -> AbstractContextManager[None]: ...

    def tag_sha256(self, object_key: str, sha256: str, version_id: str | None = None) -> None: ...

    async def put(
        self, path: Path, key: str, media_type: str, sha256: str | None = None
    ) -> str: ...


class StreamedUpload:
    """An output's parts uploaded to S3 while it downloads, completed only once verified.

    Once the download passes ``multipart_threshold``, a multipart upload starts at the
    output's key, and each part (``multipart_chunksize`` bytes) is read back from the partial
    file as soon as it is written, hashed in order, and uploaded from the file (read from the
    page cache as it is sent, never held whole), ``max_concurrency`` at a time. :meth:`land`
    checks that the parts hold exactly the verified download (size and sha256) before
    completing the upload, then records the
    sha256 as the object's ``sha256`` tag (S3 takes metadata only when an upload starts,
    before the digest is known). When a part could not be sent, the download started over,
    or its key or media type changed, the output is uploaded from the verified file instead
    (boto3's managed transfer, with its retries; the sha256 in its metadata): the file is
    deleted only once the output has landed. :meth:`close` aborts every upload that was not
    completed, whatever happened.
    """

    def __init__(self, storage: StreamTarget, key: str, media_type: str,
                 logger: Any = None) -> None:
        config = storage.transfer_config
        self.storage = storage
        self.object_key = storage.object_key(key)
        self.media_type = media_type
        self.log = logger or logging.getLogger(__name__)
        self.part_size = max(int(config.multipart_chunksize), _MIN_PART)
        self.threshold = max(int(config.multipart_threshold), self.part_size)
        self.in_flight = max(1, int(config.max_concurrency))
        self.parts = 0  #: parts of the last landing sent while downloading (0: from the file)
        self._fds: list[int] = []  # our duplicates of the partial file's descriptors
        self._inode: tuple[int, int] | None = None
        self._end = 0  # bytes of the partial file written so far
        self._size: int | None = None  # the whole size, once the download is done
        self._round = 0  # a new one each time the download starts over
        self._next = 0  # the next part to read
        self._digest = hashlib.sha256()  # of the parts read, in order
        self._upload: str | None = None  # this round's multipart upload
        self._etags: dict[int, str] = {}  # this round's part number -> ETag
        self._open: list[str] = []  # every upload started and not completed (to abort)
        self._sends: set[asyncio.Task[None]] = set()
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
            self._pump = asyncio.get_running_loop().create_task(self._stream(self._round))
            self._pumps.append(self._pump)
        self._more.set()

    def _start_over(self, fd: int, inode: tuple[int, int]) -> None:
        """A new partial file, or the same one written again from an earlier byte: what was
        sent no longer counts (its upload is aborted by :meth:`close`); the pump of the
        earlier round stops after the part it is reading (never cancelled inside a read)."""
        self._pump = None
        self._fds.append(os.dup(fd))
        self._inode = inode
        self._round += 1
        self._next, self._digest, self._upload, self._etags = 0, hashlib.sha256(), None, {}

    async def _stream(self, round_: int) -> None:
        """Start this round's multipart upload, then read, hash and send every part as soon
        as it is written (and the last one once the size is known), ``in_flight`` at a
        time."""
        loop = asyncio.get_running_loop()
        try:
            upload = await loop.run_in_executor(self._senders, self._begin)
        except Exception as exc:
            if round_ == self._round and self._failed is None:
                self._failed = f"its multipart upload could not start ({type(exc).__name__})"
            return
        self._open.append(upload)
        if round_ != self._round:
            return
        self._upload = upload
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
                await loop.run_in_executor(
                    self._reader, _hash_part, fd, start, length, self._digest)
            except BaseException:
                self._slots.release()
                raise
            if round_ != self._round:
                self._slots.release()
                return
            self._next += 1
            task = loop.create_task(
                self._send(round_, upload, self._next, _FilePart(fd, start, length)))
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

    def _begin(self) -> str:
        with self.storage.typed_errors(self.object_key):
            return str(self.storage.client().create_multipart_upload(
                Bucket=self.storage.bucket_name, Key=self.object_key,
                ContentType=self.media_type,
            )["UploadId"])

    async def _send(self, round_: int, upload: str, number: int, part: _FilePart) -> None:
        try:
            send = functools.partial(
                self.storage.client().upload_part, Bucket=self.storage.bucket_name,
                Key=self.object_key, UploadId=upload, PartNumber=number, Body=part,
            )
            answer = await asyncio.get_running_loop().run_in_executor(self._senders, send)
            if round_ == self._round:
                self._etags[number] = answer["ETag"]
        except Exception as exc:
            if round_ == self._round and self._failed is None:
                self._failed = f"part {number} was not sent ({type(exc).__name__})"
                self._more.set()
        finally:
            self._slots.release()

    # ---- once downloaded ------------------------------------------------------------------

    async def land(self, path: Path, key: str, media_type: str, sha256: str, size: int) -> str:
        """Complete the upload at ``key`` from the parts sent, else upload it from ``path``.

        Raises:
            InvalidRequest: the bucket cannot be reached with these credentials.
        """
        path = Path(path)
        reason = await self._sent_whole(sha256, size)
        if reason is None and (self.storage.object_key(key), media_type) != (
                self.object_key, self.media_type):
            reason = "its key or media type changed when it was verified"
        if reason is None:
            try:
                await asyncio.to_thread(self._complete, sha256)
            except InvalidRequest:
                raise
            except Exception as exc:
                reason = f"completing its multipart upload failed ({type(exc).__name__})"
            else:
                path.unlink(missing_ok=True)
                self.parts = len(self._etags)
                return self.storage.location(key)
        if self._pump is not None or self._open:
            self.log.warning("Uploading %s from the downloaded file: %s", key, reason)
        return await self.storage.put(path, key, media_type, sha256=sha256)

    async def _sent_whole(self, sha256: str, size: int) -> str | None:
        """None when every part is sent and they hash to ``sha256`` over ``size`` bytes,
        else why not."""
        if self._pump is None:
            return self._failed or "it was not streamed"
        self._size = size
        self._more.set()
        try:
            await self._pump
        except Exception as exc:
            return f"reading a part failed ({type(exc).__name__})"
        if self._sends:
            await asyncio.gather(*self._sends)
        if self._failed is not None:
            return self._failed
        if self._end != size or self._next * self.part_size < size:
            return "the download started over"
        if len(self._etags) != self._next or self._digest.hexdigest() != sha256:
            return "its parts do not hold the verified bytes"
        return None

    def _complete(self, sha256: str) -> None:
        """Complete this round's upload (aborted by :meth:`close` if that fails), then tag
        the object with its sha256 (a refused tag is a warning: the sidecar has it too)."""
        client, upload = self.storage.client(), self._upload
        parts = [{"ETag": self._etags[n], "PartNumber": n} for n in range(1, self._next + 1)]
        with self.storage.typed_errors(self.object_key):
            answer = client.complete_multipart_upload(
                Bucket=self.storage.bucket_name, Key=self.object_key, UploadId=upload,
                MultipartUpload={"Parts": parts},
            )
        self._open.remove(str(upload))
        try:
            self.storage.tag_sha256(self.object_key, sha256, answer.get("VersionId"))
        except Exception as exc:
            self.log.warning(
                "Stored %s, but could not tag it with its sha256 (%s): a re-run checks it by "
                "hashing its bytes", self.object_key, type(exc).__name__)

    async def close(self) -> None:
        self._round += 1  # every pump stops after the part it is reading
        self._more.set()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        if self._sends:
            await asyncio.gather(*self._sends, return_exceptions=True)
        try:
            if self._open:
                await asyncio.to_thread(self._abort)
        finally:
            self._reader.shutdown(wait=True)  # nothing runs there any more
            self._senders.shutdown(wait=True)
            for fd in self._fds:
                os.close(fd)
            self._fds.clear()

    def _abort(self) -> None:
        client = self.storage.client()
        for upload in list(self._open):
            try:
                client.abort_multipart_upload(Bucket=self.storage.bucket_name,
                                              Key=self.object_key, UploadId=upload)
            except Exception as exc:
                self.log.warning("Could not abort the multipart upload %s of s3://%s/%s (%s)",
                                 upload, self.storage.bucket_name, self.object_key,
                                 type(exc).__name__)
            else:
                self._open.remove(upload)


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
