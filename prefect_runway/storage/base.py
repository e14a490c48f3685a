"""Where outputs land: a local directory or any Prefect writable filesystem block.

A download arrives as a verified temporary file (see ``RunwayClient.download``); a storage
puts it under a key, atomically where the medium allows, and writes a JSON sidecar beside it
(the :class:`~prefect_runway.models.StoredOutput`, without secrets). Keys come from a
template such as ``{flow_run}/{name}-{seed}.{ext}``; every value is made safe, and a key that
would climb out of the storage root (``..``, absolute paths) is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import string
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path, PurePosixPath
from typing import Any

from prefect_runway.errors import InvalidRequest
from prefect_runway.models import StoredOutput

DEFAULT_KEY_TEMPLATE = "{kind}-{fingerprint}.{ext}"
KEY_FIELDS = (
    "flow_run", "name", "seed", "kind", "model", "provider", "job_id", "fingerprint", "ext",
    "index", "date",
)
_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")
MAX_COMPONENT = 120
#: Mode of stored files (mkstemp's default, 0600, would hide them from teammates).
FILE_MODE = 0o644


def render_key(template: str, **values: Any) -> str:
    """Fill a key template with safe values and check the result stays inside the root.

    Only plain ``{field}`` placeholders from :data:`KEY_FIELDS` are allowed (optionally with a
    format spec such as ``{fingerprint:.12}``); no attribute or index access.

    Raises:
        InvalidRequest: on an unknown placeholder, or a key that is absolute or climbs out.
    """
    out: list[str] = []
    for literal, name, spec, conversion in string.Formatter().parse(template):
        out.append(literal)
        if name is None:
            continue
        if name not in KEY_FIELDS or conversion:
            raise InvalidRequest(
                "key_template", f"placeholder {{{name}}} is not allowed", allowed=KEY_FIELDS
            )
        value = values.get(name)
        if "{" in (spec or ""):
            raise InvalidRequest("key_template", f"nested placeholder in {{{name}:{spec}}}")
        try:
            text = format(value if value is not None else "none", spec or "")
        except (ValueError, TypeError):
            try:  # e.g. {seed:06d} when there is no seed: fall back to the plain value
                text = format(str(value if value is not None else "none"))
            except ValueError:
                raise InvalidRequest("key_template", f"bad format spec {{{name}:{spec}}}") from None
        out.append((_UNSAFE.sub("-", text).strip(".-") or "none")[:MAX_COMPONENT])
    return safe_key("".join(out))


def safe_key(key: str) -> str:
    """Normalise a relative storage key; refuse absolute keys and ``..`` segments."""
    if "\\" in key or "\x00" in key:
        raise InvalidRequest("key_template", f"key {key!r} has a backslash or NUL")
    path = PurePosixPath(key)
    if path.is_absolute() or re.match(r"^[A-Za-z]:", key):
        raise InvalidRequest("key_template", f"key {key!r} is absolute", allowed="relative keys")
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise InvalidRequest("key_template", f"key {key!r} leaves the storage root")
    if any(len(p) > 255 for p in parts):
        raise InvalidRequest("key_template", "a key segment is longer than 255 characters")
    return "/".join(_UNSAFE.sub("-", p) for p in parts)


def sidecar_key(key: str) -> str:
    return f"{key}.json"


class OutputStorage(ABC):
    """Somewhere verified outputs and their sidecars are kept."""

    @abstractmethod
    def location(self, key: str) -> str:
        """Where ``key`` is, as a path or URI a person can follow."""

    @abstractmethod
    def staging_dir(self) -> Path:
        """A local directory for partial downloads (same filesystem as the target, if local)."""

    @abstractmethod
    async def put(
        self, path: Path, key: str, media_type: str, sha256: str | None = None
    ) -> str:
        """Move/upload the finished file at ``path`` to ``key``; returns its location.

        ``sha256`` is the digest already computed while downloading, for storages that
        record it beside the bytes (S3 object metadata).
        """

    @abstractmethod
    async def read_bytes(self, key: str) -> bytes | None:
        """The bytes at ``key``, or None when absent (used for sidecars and small files)."""

    @abstractmethod
    async def write_bytes(self, key: str, data: bytes) -> str:
        """Write small content (a sidecar) at ``key``, atomically where possible."""

    async def sha256(self, key: str) -> str | None:
        """sha256 of what is stored at ``key`` (None when absent)."""
        data = await self.read_bytes(key)
        return None if data is None else hashlib.sha256(data).hexdigest()

    async def presigned_url(self, key: str, expires_seconds: int = 900) -> str | None:
        """A short-lived https URL for ``key``, where the storage can make one."""
        return None

    async def read_sidecar(self, key: str) -> StoredOutput | None:
        data = await self.read_bytes(sidecar_key(key))
        if data is None:
            return None
        try:
            return StoredOutput.model_validate_json(data)
        except ValueError:
            return None

    async def write_sidecar(self, stored: StoredOutput) -> str:
        payload = json.dumps(stored.model_dump(mode="json"), indent=2, sort_keys=True).encode()
        return await self.write_bytes(sidecar_key(stored.key), payload)

    async def verified(self, key: str) -> StoredOutput | None:
        """The sidecar of a stored output whose bytes still match it, else None."""
        stored = await self.read_sidecar(key)
        if stored is None:
            return None
        if await self.sha256(key) != stored.sha256:
            return None
        return stored


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
    :class:`~prefect_runway.s3.S3Storage` for large videos.
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


def resolve_storage(value: Any = None) -> OutputStorage:
    """An :class:`OutputStorage` from a path, an ``s3://`` URI, or a Prefect filesystem block.

    ``None`` means ``./runway-outputs``.
    """
    if isinstance(value, OutputStorage):
        return value
    if value is None:
        return LocalStorage("runway-outputs")
    if isinstance(value, (str, os.PathLike)):
        text = os.fspath(value)
        if text.startswith("s3://"):
            from prefect_runway.s3 import S3Storage

            return S3Storage.from_uri(text)
        return LocalStorage(text)
    from prefect.filesystems import LocalFileSystem

    if isinstance(value, LocalFileSystem):
        return LocalStorage(value.basepath or ".")
    try:
        from prefect_aws.s3 import S3Bucket
    except ImportError:  # pragma: no cover - prefect-aws is a dependency
        S3Bucket = None  # type: ignore[assignment]  # noqa: N806
    if S3Bucket is not None and isinstance(value, S3Bucket):
        from prefect_runway.s3 import S3Storage

        return S3Storage(value)
    if hasattr(value, "write_path") and hasattr(value, "read_path"):
        return FileSystemBlockStorage(value)
    raise InvalidRequest(
        "storage", f"{type(value).__name__} is not a storage",
        allowed="a directory path, s3://bucket/prefix, LocalFileSystem, S3Bucket, or a WritableFileSystem block",
    )


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
