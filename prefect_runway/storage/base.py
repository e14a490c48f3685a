"""What every storage of outputs does: :class:`OutputStorage`."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Protocol

from prefect_runway.models import StoredOutput
from prefect_runway.storage.keys import sidecar_key

__all__ = ["OutputStorage", "StreamedPut"]


class StreamedPut(Protocol):
    """An output sent to its storage while it downloads (see :meth:`OutputStorage.streamed`)."""

    def written(self, fd: int, end: int) -> None:
        """The partial file at ``fd`` now holds ``end`` bytes (less: it started over)."""

    async def land(self, path: Path, key: str, media_type: str, sha256: str, size: int) -> str:
        """Put the verified download at ``path`` under ``key`` (from what was sent, when it
        is whole and hashes to ``sha256``; else from the file) and delete the file; returns
        the location."""

    async def close(self) -> None:
        """Remove whatever was sent that did not land (also after a failure)."""


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

    def streamed(self, key: str, media_type: str, logger: Any = None) -> StreamedPut | None:
        """A way to send the output for ``key`` (of the ``media_type`` expected) while it
        downloads (``logger`` says when it falls back to the file); None (the default):
        :meth:`put` takes the finished file."""
        return None

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

    async def link(self, key: str) -> str | None:
        """A URL for a person to open ``key`` from an artifact, valid for the storage's link
        lifetime (S3: ``link_seconds``); None where the storage makes no URLs."""
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

    async def annotated(self, stored: StoredOutput, **fields: Any) -> StoredOutput:
        """A copy of ``stored`` with ``fields`` set (a fallback record, a lineage), its
        sidecar rewritten to match."""
        output = stored.model_copy(update=fields)
        output.sidecar = await self.write_sidecar(output)
        return output

    async def verified(self, key: str) -> StoredOutput | None:
        """The sidecar of a stored output whose bytes still match it, else None."""
        stored = await self.read_sidecar(key)
        if stored is None:
            return None
        if await self.sha256(key) != stored.sha256:
            return None
        return stored
