"""Outputs in a local directory, or in any Prefect writable filesystem block."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from prefect_runway.errors import InvalidRequest
from prefect_runway.storage.base import OutputStorage
from prefect_runway.storage.keys import safe_key

__all__ = ["FILE_MODE", "FileSystemBlockStorage", "LocalStorage"]

#: Mode of stored files (mkstemp's default, 0600, would hide them from teammates).
FILE_MODE = 0o644


class LocalStorage(OutputStorage):
    """A local directory. Files land by atomic rename; nothing is ever half-written."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        path = (self.root / safe_key(key)).resolve()
        if self.root not in path.parents:
            raise InvalidRequest("key_template", f"key {key!r} leaves the storage root")
        return path

    def location(self, key: str) -> str:
        return str(self._path(key))

    def staging_dir(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root

    async def put(
        self, path: Path, key: str, media_type: str, sha256: str | None = None
    ) -> str:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        return str(target)

    async def read_bytes(self, key: str) -> bytes | None:
        path = self._path(key)
        return path.read_bytes() if path.is_file() else None

    async def sha256(self, key: str) -> str | None:
        path = self._path(key)
        if not path.is_file():
            return None
        return await asyncio.to_thread(_file_sha256, path)

    async def write_bytes(self, key: str, data: bytes) -> str:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".part-", dir=target.parent)
        os.fchmod(fd, FILE_MODE)  # mkstemp makes private files; outputs are shared like any file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
        return str(target)


class FileSystemBlockStorage(OutputStorage):
    """Any Prefect ``WritableFileSystem`` block, through its ``write_path``/``read_path``.

    Generic, so each file passes through memory once; prefer :class:`LocalStorage` or
    :class:`~prefect_runway.storage.s3.S3Storage` for large videos.
    """

    def __init__(self, block: Any) -> None:
        self.block = block
        self._staging = Path(tempfile.mkdtemp(prefix="prefect-runway-"))

    def location(self, key: str) -> str:
        base = getattr(self.block, "basepath", None) or ""
        return f"{str(base).rstrip('/')}/{key}" if base else key

    def staging_dir(self) -> Path:
        return self._staging

    async def put(
        self, path: Path, key: str, media_type: str, sha256: str | None = None
    ) -> str:
        await _maybe_await(self.block.write_path(key, path.read_bytes()))
        path.unlink(missing_ok=True)
        return self.location(key)

    async def read_bytes(self, key: str) -> bytes | None:
        try:
            return await _maybe_await(self.block.read_path(key))
        except (FileNotFoundError, ValueError, OSError):
            return None

    async def write_bytes(self, key: str, data: bytes) -> str:
        await _maybe_await(self.block.write_path(key, data))
        return self.location(key)


async def _maybe_await(value: Any) -> Any:
    if asyncio.iscoroutine(value):
        return await value
    return value


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
