"""Where outputs land: a local directory, S3, or any Prefect writable filesystem block."""

from __future__ import annotations

import os
from typing import Any

from prefect_runway.errors import InvalidRequest
from prefect_runway.storage.base import OutputStorage
from prefect_runway.storage.keys import (
    DEFAULT_KEY_TEMPLATE,
    KEY_FIELDS,
    STORYBOARD_KEY_TEMPLATE,
    output_key,
    partial_name,
    preview_key,
    render_key,
    safe_key,
    sidecar_key,
)
from prefect_runway.storage.local import FileSystemBlockStorage, LocalStorage
from prefect_runway.storage.s3 import S3Storage

__all__ = [
    "DEFAULT_KEY_TEMPLATE", "KEY_FIELDS", "STORYBOARD_KEY_TEMPLATE", "FileSystemBlockStorage",
    "LocalStorage", "OutputStorage", "S3Storage", "output_key", "partial_name", "preview_key",
    "render_key", "resolve", "resolve_storage", "safe_key", "sidecar_key",
]


def resolve_storage(value: Any = None) -> OutputStorage:
    """An :class:`OutputStorage` from a path, an ``s3://`` URI, or a Prefect filesystem block.

    ``None`` means ``./runway-outputs``; an empty string is refused.

    Raises:
        InvalidRequest: ``value`` is empty or not a storage.
    """
    if isinstance(value, OutputStorage):
        return value
    if value is None:
        return LocalStorage("runway-outputs")
    if isinstance(value, (str, os.PathLike)):
        text = os.fspath(value)
        if not text.strip():
            raise InvalidRequest(
                "storage", "is empty (it would write into the current directory)",
                allowed="a directory, s3://bucket/prefix or a filesystem block; None for ./runway-outputs",
            )
        if text.startswith("s3://"):
            return S3Storage.from_uri(text)
        return LocalStorage(text)
    from prefect.filesystems import LocalFileSystem

    if isinstance(value, LocalFileSystem):
        return LocalStorage(value.basepath or ".")
    try:
        from prefect_aws.s3 import S3Bucket
    except ImportError:  # pragma: no cover - prefect-aws is a dependency
        pass
    else:
        if isinstance(value, S3Bucket):
            return S3Storage(value)
    if hasattr(value, "write_path") and hasattr(value, "read_path"):
        return FileSystemBlockStorage(value)
    raise InvalidRequest(
        "storage", f"{type(value).__name__} is not a storage",
        allowed="a directory path, s3://bucket/prefix, LocalFileSystem, S3Bucket, or a WritableFileSystem block",
    )


#: :func:`resolve_storage` by its short name.
resolve = resolve_storage
