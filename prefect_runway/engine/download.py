"""Downloading one output: streamed to disk while hashed, resumed, verified."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import stat
import tempfile
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from prefect_runway.engine.config import RetryPolicy
from prefect_runway.engine.events import EngineLogger
from prefect_runway.engine.retry import RETRY_STATUS, Retry, retry_reason, with_retries
from prefect_runway.engine.slots import LoopSlots
from prefect_runway.engine.transport import Transport, retry_after
from prefect_runway.errors import (
    DownloadError,
    DownloadTooLarge,
    DownloadVerificationFailed,
    StorageError,
)
from prefect_runway.models import sniff_media_type
from prefect_runway.providers.wire import redact_url
from prefect_runway.settings import get_settings

__all__ = ["DownloadedFile", "Downloader", "OnWritten", "max_downloads"]

#: Told ``(fd, end)`` on the event loop each time the partial file at ``fd`` holds its first
#: ``end`` bytes, written and hashed; ``end`` goes back when a download starts over.
OnWritten = Callable[[int, int], None]

logger = EngineLogger("prefect_runway.engine.download")

def max_downloads() -> int:
    """Bodies streamed at once per event loop (see the module's docstring): the setting
    ``PREFECT_RUNWAY_MAX_DOWNLOADS`` (1 to 10000), or 32.

    Raises:
        InvalidRequest: a setting holds a value it does not take (checked when a client is
            made, before it sends anything).
    """
    return get_settings().max_downloads


#: The running event loop's download slots (new ones when the setting changed: downloads
#: under the old ones finish under them).
_DOWNLOAD_SLOTS = LoopSlots(max_downloads)


@dataclass
class DownloadedFile:
    """A verified download in a temporary file, ready to be moved into storage."""

    path: Path
    size: int
    sha256: str
    media_type: str
    source_url: str = field(repr=False)


@dataclass
class _Progress:
    """What one download has so far, across attempts."""

    fd: int
    digest: Any
    limit: int
    on_written: OnWritten | None = None
    received: int = 0
    total: int | None = None
    media_type: str = ""
    restarts: int = 0


_DONE, _RESTART, _SHORT = "done", "restart", "short"


class Downloader:
    """Streams outputs to disk for one client (its transport and retry policy)."""

    def __init__(self, transport: Transport, retry: RetryPolicy) -> None:
        self.transport = transport
        self.retry = retry

    async def download(
        self,
        url: str,
        directory: str | os.PathLike[str],
        *,
        expected_media: tuple[str, ...] = ("image/", "video/"),
        job_id: str | None = None,
        partial_name: str | None = None,
        max_bytes: int | None = None,
        on_written: OnWritten | None = None,
    ) -> DownloadedFile:
        """Stream ``url`` to a temporary file in ``directory`` while hashing it, and verify it.

        Args:
            partial_name: A stable name for the partial file (e.g. from the storage key and
                the URL without its signature). A partial left by a killed process under that
                name is resumed from where it stopped, instead of being left behind.
            max_bytes: The largest body accepted (default: the config's
                :class:`~prefect_runway.engine.config.DownloadLimits` for ``expected_media``).
            on_written: Told how much of the partial file is written as it grows (see
                :data:`OnWritten`), e.g. to upload its parts while the rest arrives.

        Returns:
            The temporary file, its size, sha256 and media type. The caller moves it into
            place (atomically) or deletes it.

        Raises:
            DownloadTooLarge: the body is larger than ``max_bytes`` (its partial is removed).
            DownloadError: it could not be fetched; DownloadVerificationFailed: what came is
                not whole or not the expected media.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if max_bytes is None:
            max_bytes = self.transport.config.downloads.for_media(expected_media)
        if partial_name:
            tmp = directory / partial_name
            fd = _open_partial(tmp)
        else:
            fd, tmp_name = tempfile.mkstemp(prefix=".part-", dir=directory)  # O_EXCL, no link
            os.fchmod(fd, 0o644)
            tmp = Path(tmp_name)
        try:
            return await self._download_into(
                url, _Progress(fd, hashlib.sha256(), max_bytes, on_written), tmp, expected_media, job_id,
            )
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)

    async def _download_into(
        self, url: str, progress: _Progress, tmp: Path, expected_media: tuple[str, ...],
        job_id: str | None,
    ) -> DownloadedFile:
        safe_url = redact_url(url)
        provider = self.transport.provider.name
        while block := os.pread(progress.fd, 1 << 20, progress.received):
            # A partial left by an earlier, killed attempt.
            progress.digest.update(block)
            progress.received += len(block)
        if progress.received and progress.on_written is not None:
            progress.on_written(progress.fd, progress.received)
        if progress.received > progress.limit:
            raise self._too_large(safe_url, progress, progress.received, job_id)
        if progress.received:
            logger.info("Resuming the download of %s from byte %d", safe_url, progress.received)

        def classify(outcome: Any, may_retry: bool) -> Any:
            if isinstance(outcome, httpx.TransportError):
                if may_retry:
                    logger.warning(
                        "Download of %s broke after %d bytes (%s); resuming with HTTP Range "
                        "from byte %d", safe_url, progress.received, type(outcome).__name__,
                        progress.received,
                    )
                    return Retry()
                raise DownloadError(
                    f"download of {safe_url} kept failing ({type(outcome).__name__})",
                    provider=provider, job_id=job_id,
                ) from None
            if isinstance(outcome, BaseException):
                raise outcome
            if outcome == _RESTART:
                return Retry(0.0)
            if outcome == _SHORT:
                if may_retry:
                    logger.warning("Download of %s is short (%d of %d bytes); resuming",
                                   safe_url, progress.received, progress.total)
                    return Retry()
                raise DownloadVerificationFailed(
                    f"download of {safe_url} is truncated ({progress.received} of "
                    f"{progress.total} bytes)", provider=provider, job_id=job_id,
                )
            if isinstance(outcome, httpx.Response):
                if outcome.status_code in RETRY_STATUS and may_retry:
                    logger.warning("Download of %s answered %s; retrying",
                                   safe_url, retry_reason(outcome))
                    return Retry(retry_after(outcome))
                raise DownloadError(
                    f"could not download {safe_url}", provider=provider,
                    status_code=outcome.status_code, job_id=job_id,
                )
            return outcome

        await with_retries(
            self.retry, lambda: self._attempt(url, progress, safe_url, job_id), classify,
        )
        head = os.pread(progress.fd, 64, 0)
        sniffed = sniff_media_type(head)
        if sniffed is None or not sniffed.startswith(expected_media):
            raise DownloadVerificationFailed(
                f"{safe_url} is not the expected media (content-type "
                f"{progress.media_type or 'none'}, magic bytes say {sniffed or 'unknown'})",
                provider=provider, job_id=job_id,
            )
        if progress.received == 0:
            raise DownloadVerificationFailed(f"{safe_url} is empty", provider=provider, job_id=job_id)
        return DownloadedFile(tmp, progress.received, progress.digest.hexdigest(), sniffed, url)

    def _too_large(self, safe_url: str, p: _Progress, size: int, job_id: str | None,
                   declared: bool = False) -> DownloadTooLarge:
        said = f"its Content-Length is {size} bytes" if declared else f"{size} bytes or more came"
        return DownloadTooLarge(
            f"{safe_url} is larger than the limit of {p.limit} bytes for this kind of output "
            f"({said}); raise the credentials block's max_still_bytes / max_video_bytes if "
            "such outputs are expected", limit=p.limit, size=size,
            provider=self.transport.provider.name, job_id=job_id,
        )

    async def _attempt(self, url: str, p: _Progress, safe_url: str, job_id: str | None) -> Any:
        """One GET from ``p.received`` on: ``_DONE``, ``_RESTART``, ``_SHORT``, or the error
        answer (a Response) for the classifier; DownloadTooLarge past ``p.limit``."""
        headers = {"range": f"bytes={p.received}-"} if p.received else {}
        async with _DOWNLOAD_SLOTS.semaphore(), self.transport.limit():
            async with self.transport.http.stream(
                "GET", url, headers=headers, follow_redirects=True
            ) as response:
                if response.status_code == 416 and p.received and p.restarts < 2:
                    # The partial is longer than the file (a stale one): start over.
                    await response.aread()
                    p.received, p.digest = 0, hashlib.sha256()
                    p.restarts += 1
                    return _RESTART
                if response.status_code >= 400:
                    await response.aread()
                    return response
                if p.received and response.status_code != 206:
                    # The server ignored our Range: start over.
                    p.received, p.digest = 0, hashlib.sha256()
                if response.status_code == 206:
                    p.total = _content_range_total(response) or p.total
                else:
                    length = response.headers.get("content-length")
                    encoded = response.headers.get("content-encoding", "identity") != "identity"
                    p.total = int(length) if length and length.isdigit() and not encoded else None
                if p.total is not None and p.total > p.limit:
                    # Said before the body: nothing of it is read.
                    raise self._too_large(safe_url, p, p.total, job_id, declared=True)
                p.media_type = response.headers.get("content-type", p.media_type).split(";")[0].strip()
                # Never O_TRUNC ("wb"): ext4 then flushes the whole file to disk on close
                # (auto_da_alloc), ~0.15 s per 500 MB. The file holds exactly the
                # ``received`` bytes, unless the server ignored our Range and we start over.
                if os.lseek(p.fd, 0, os.SEEK_END) != p.received:
                    os.ftruncate(p.fd, p.received)
                os.lseek(p.fd, p.received, os.SEEK_SET)
                sink = _Sink(p.fd, p.digest, p.received, p.on_written)
                try:
                    async for chunk in response.aiter_bytes():
                        if p.received + len(chunk) > p.limit:  # a chunked or lying body
                            raise self._too_large(safe_url, p, p.received + len(chunk), job_id)
                        await sink.add(chunk)
                        p.received += len(chunk)
                finally:
                    # Every byte counted is written and hashed before a retry resumes
                    # from ``received`` (or an error propagates).
                    await sink.finish()
        if p.total is not None and p.received != p.total:
            return _SHORT
        return _DONE


def _open_partial(path: Path) -> int:
    """A read-write descriptor of the partial file at ``path``, created if absent; never
    through a symbolic link, and never a file that has another name as well.

    Whatever else is found at ``path`` (a link planted in a shared output folder, a hard
    link, a FIFO) is not ours: its name is removed (the file it points to is not touched)
    and a fresh partial made with an exclusive create.

    Raises:
        StorageError: ``path`` keeps being replaced, or is a directory.
    """
    nofollow = os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(5):
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | nofollow, 0o644)
        except FileExistsError:
            pass
        try:
            fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | nofollow)
        except FileNotFoundError:
            continue  # removed meanwhile: create it
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # a symbolic link: remove the link itself
                logger.warning("Removed a symbolic link found at the partial file %s", path)
                path.unlink(missing_ok=True)
                continue
            raise StorageError(
                f"cannot open the partial file {path} ({type(exc).__name__}: {exc.strerror})",
                location=str(path),
            ) from None
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
            return fd  # a partial left by a killed process: resumed
        os.close(fd)
        logger.warning("Removed what was at the partial file %s (not a plain file of its own)",
                       path)
        path.unlink(missing_ok=True)
    raise StorageError(f"the partial file {path} keeps being replaced", location=str(path))


class _Sink:
    """Writes and hashes a download's chunks on a worker thread, in order, while the event
    loop receives the next ones, so that receiving, hashing and writing overlap.

    The first ``INLINE`` bytes are written and hashed as they come, on the event loop: most
    outputs (stills, short clips) end there, holding no more than one chunk in memory
    however many download at once. Past that, the event loop only collects chunks; per batch
    of ``BATCH`` bytes the worker writes them with one ``os.writev`` and hashes them as one
    block: both run without the GIL, which a call per small chunk would have to take back
    each time. At most ``BACKLOG`` batches wait, so a large download holds at most
    ``(BACKLOG + 1) * BATCH`` bytes. Writes go to the partial's descriptor, from its offset;
    ``on_written`` is told the file's length after each write.
    """

    INLINE = 8 << 20
    BATCH = 2 << 20
    BACKLOG = 4

    def __init__(self, fd: int, digest: Any, offset: int = 0,
                 on_written: OnWritten | None = None) -> None:
        self._fd = fd
        self._digest = digest
        self._end = offset  # where the next chunk goes (queued or written)
        self._on_written = on_written
        self._inline = 0
        self._batch: list[bytes] = []
        self._size = 0
        self._pending: deque[asyncio.Future[None]] = deque()
        self._executor: ThreadPoolExecutor | None = None

    def _write(self, chunks: list[bytes]) -> None:
        views = [memoryview(chunk) for chunk in chunks]
        while views:
            written = os.writev(self._fd, views[:1024])  # IOV_MAX
            while views and written >= len(views[0]):
                written -= len(views.pop(0))
            if views and written:
                views[0] = views[0][written:]
        self._digest.update(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    async def add(self, chunk: bytes) -> None:
        self._end += len(chunk)
        if self._executor is None and self._inline < self.INLINE:
            self._inline += len(chunk)
            self._write([chunk])
            if self._on_written is not None:
                self._on_written(self._fd, self._end)
            return
        self._batch.append(chunk)
        self._size += len(chunk)
        if self._size >= self.BATCH:
            await self._submit()

    async def _submit(self) -> None:
        chunks, self._batch, self._size = self._batch, [], 0
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="prefect-runway-download")
        loop = asyncio.get_running_loop()
        written = loop.run_in_executor(self._executor, self._write, chunks)
        if self._on_written is not None:
            written.add_done_callback(self._told(self._end))
        self._pending.append(written)
        while len(self._pending) > self.BACKLOG:
            await self._pending.popleft()

    def _told(self, end: int) -> Callable[[asyncio.Future[None]], None]:
        def done(written: asyncio.Future[None]) -> None:
            if self._on_written is not None and not written.cancelled() and written.exception() is None:
                self._on_written(self._fd, end)
        return done

    async def finish(self) -> None:
        """Write and hash what is left, and wait until every batch is done (also when the
        download broke off: the caller resumes from the bytes it counted)."""
        try:
            if self._batch:
                if self._executor is None:
                    chunks, self._batch, self._size = self._batch, [], 0
                    self._write(chunks)
                    if self._on_written is not None:
                        self._on_written(self._fd, self._end)
                else:
                    await self._submit()
            while self._pending:
                await self._pending.popleft()
            if self._on_written is not None and self._executor is not None:
                # A batch awaited once already done does not yield to the loop, so its
                # ``done`` callback may not have run yet: tell the end here.
                self._on_written(self._fd, self._end)
        finally:
            # No callback of this sink may run after the caller closes the file.
            self._on_written = None
            if self._executor is not None:
                # After an error or a cancellation some batches may still be running: let
                # them end (milliseconds) before the file is closed under them.
                self._executor.shutdown(wait=True)
                self._executor = None


def _content_range_total(response: httpx.Response) -> int | None:
    value = response.headers.get("content-range", "")
    total = value.rpartition("/")[2]
    return int(total) if total.isdigit() else None
