"""Small JSON records, one per scope, written atomically: locally or in S3 (one PUT each).

The submission ledger keeps its records here, and the daily budgets theirs beside it.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from pathlib import Path
from typing import Any, Protocol

from prefect_runway.errors import InvalidRequest, LedgerRecordUnreadable, LedgerStorageError
from prefect_runway.storage.base import OutputStorage
from prefect_runway.storage.s3 import S3_ABSENT, S3Storage, s3_error_code

__all__ = [
    "LEDGER_FOLDER", "LocalLedgerBackend", "RecordBackend", "S3LedgerBackend", "check_scope",
    "default_ledger_directory", "ledger_backend", "prefect_results_directory",
]

#: The folder of the ledger beside the results (locally and in S3).
LEDGER_FOLDER = "prefect-runway-ledger"
_SAFE_SCOPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_S3_EXISTS = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})
_S3_UNSUPPORTED = frozenset({"NotImplemented", "501"})


class RecordBackend(Protocol):
    """Where records are stored: bytes per scope, created exclusively or replaced."""

    def location(self, scope: str) -> str: ...

    @property
    def storage(self) -> str:
        """What ``prefect-runway ledger --storage`` takes to reach these records."""

    def read(self, scope: str) -> bytes | None:
        """The record's bytes; None only when there provably is no record."""

    def create(self, scope: str, data: bytes) -> bool:
        """Write a new record; False if one already exists (nothing written)."""

    def replace(self, scope: str, data: bytes) -> None:
        """Write a record over whatever is there, atomically."""

    def scopes(self) -> list[str]:
        """Every scope with a record."""

    def sibling(self, *parts: str) -> RecordBackend:
        """The records of folder ``parts`` beside this one."""


def check_scope(scope: str) -> str:
    if not isinstance(scope, str) or not _SAFE_SCOPE.match(scope):
        raise InvalidRequest("scope", f"{scope!r} is not a ledger scope",
                             allowed="1-200 characters of A-Z a-z 0-9 . _ - (not starting with . _ -)")
    return scope


class LocalLedgerBackend:
    """Records as files ``<directory>/<scope>.json``, written atomically and durably.

    Each write goes to a temporary file in the same directory, is fsynced, then is linked
    (create: fails if a record appeared meanwhile) or renamed (replace) into place; the
    directory is fsynced after, so a record that was acknowledged survives a power cut.

    Args:
        directory: The ledger directory (created on first write).
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory).expanduser()

    def __repr__(self) -> str:
        return f"LocalLedgerBackend({str(self.directory)!r})"

    def sibling(self, *parts: str) -> LocalLedgerBackend:
        """The records of folder ``parts`` beside this one (a daily budget's, the ledger's)."""
        return LocalLedgerBackend(self.directory.parent.joinpath(*parts))

    def path(self, scope: str) -> Path:
        return self.directory / f"{check_scope(scope)}.json"

    def location(self, scope: str) -> str:
        return str(self.path(scope))

    @property
    def storage(self) -> str:
        return str(self.directory.parent.resolve())

    def read(self, scope: str) -> bytes | None:
        path = self.path(scope)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            if self.directory.exists() and not self.directory.is_dir():
                raise LedgerStorageError(f"ledger directory {self.directory} is not a directory") from None
            return None
        except NotADirectoryError:
            raise LedgerStorageError(
                f"ledger directory {self.directory} is not a directory"
            ) from None
        except OSError as exc:
            raise LedgerRecordUnreadable(scope, str(path), f"{type(exc).__name__}: {exc.strerror}") from None

    def _prepare_dir(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LedgerStorageError(
                f"cannot create the ledger directory {self.directory} "
                f"({type(exc).__name__}: {exc.strerror})"
            ) from None

    def _temp(self, scope: str, data: bytes) -> Path:
        tmp = self.directory / f".{scope}.{uuid.uuid4().hex}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise LedgerStorageError(
                f"cannot write to the ledger directory {self.directory} "
                f"({type(exc).__name__}: {exc.strerror})"
            ) from None
        return tmp

    def _sync_dir(self) -> None:
        with contextlib.suppress(OSError):  # some filesystems cannot fsync a directory
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def create(self, scope: str, data: bytes) -> bool:
        path = self.path(scope)
        self._prepare_dir()
        tmp = self._temp(scope, data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as exc:
            raise LedgerStorageError(
                f"cannot write the ledger record {path} ({type(exc).__name__}: {exc.strerror})"
            ) from None
        finally:
            tmp.unlink(missing_ok=True)
        self._sync_dir()
        return True

    def replace(self, scope: str, data: bytes) -> None:
        path = self.path(scope)
        self._prepare_dir()
        tmp = self._temp(scope, data)
        try:
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise LedgerStorageError(
                f"cannot write the ledger record {path} ({type(exc).__name__}: {exc.strerror})"
            ) from None
        self._sync_dir()

    def scopes(self) -> list[str]:
        try:
            names = sorted(os.listdir(self.directory))  # a third of pathlib's iterdir's time
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise LedgerStorageError(
                f"cannot list the ledger directory {self.directory} ({type(exc).__name__})"
            ) from None
        return [n[:-5] for n in names if n.endswith(".json") and _SAFE_SCOPE.match(n[:-5])]


class S3LedgerBackend:
    """Records as objects ``<prefix>/<scope>.json`` in an S3 bucket, one PUT each.

    A new intent is created with a conditional PUT (``If-None-Match: *``): of two workers
    creating the same intent, one gets 412 and reads the other's. Where the store does not
    implement conditional writes (501 NotImplemented), it falls back to HEAD then PUT and
    says so in :attr:`conditional_writes`.

    Args:
        client: A boto3 S3 client.
        bucket: The bucket name.
        prefix: The key prefix of the ledger (e.g. ``"outputs/prefect-runway-ledger"``).
    """

    def __init__(self, client: Any, bucket: str, prefix: str = LEDGER_FOLDER) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.conditional_writes: bool | None = None

    def __repr__(self) -> str:
        return f"S3LedgerBackend('s3://{self.bucket}/{self.prefix}')"

    def sibling(self, *parts: str) -> S3LedgerBackend:
        """The records of folder ``parts`` beside this one, in the same bucket."""
        parent = self.prefix.rsplit("/", 1)[0] if "/" in self.prefix else ""
        return S3LedgerBackend(self.client, self.bucket, "/".join(p for p in (parent, *parts) if p))

    def key(self, scope: str) -> str:
        name = f"{check_scope(scope)}.json"
        return f"{self.prefix}/{name}" if self.prefix else name

    def location(self, scope: str) -> str:
        return f"s3://{self.bucket}/{self.key(scope)}"

    @property
    def storage(self) -> str:
        folder = self.prefix.removesuffix(LEDGER_FOLDER).rstrip("/")
        return f"s3://{self.bucket}/{folder}" if folder else f"s3://{self.bucket}"

    def _storage_error(self, exc: BaseException, what: str) -> LedgerStorageError:
        code = s3_error_code(exc) or type(exc).__name__
        return LedgerStorageError(f"S3 refused to {what} s3://{self.bucket}/{self.prefix} ({code})")

    def read(self, scope: str) -> bytes | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key(scope))
        except Exception as exc:
            if s3_error_code(exc) in S3_ABSENT:
                return None
            if s3_error_code(exc) is None:
                raise LedgerRecordUnreadable(scope, self.location(scope), type(exc).__name__) from None
            raise self._storage_error(exc, "read") from None
        body = response["Body"]
        try:
            return body.read()
        except Exception as exc:
            raise LedgerRecordUnreadable(scope, self.location(scope), type(exc).__name__) from None
        finally:
            body.close()

    def _put(self, scope: str, data: bytes, **extra: Any) -> None:
        self.client.put_object(
            Bucket=self.bucket, Key=self.key(scope), Body=data,
            ContentType="application/json", **extra,
        )

    def create(self, scope: str, data: bytes) -> bool:
        if self.conditional_writes is not False:
            try:
                self._put(scope, data, IfNoneMatch="*")
                self.conditional_writes = True
                return True
            except Exception as exc:
                code = s3_error_code(exc)
                if code in _S3_EXISTS:
                    return False
                if code not in _S3_UNSUPPORTED:
                    raise self._storage_error(exc, "write") from None
                self.conditional_writes = False
        if self.read(scope) is not None:
            return False
        try:
            self._put(scope, data)
        except Exception as exc:
            raise self._storage_error(exc, "write") from None
        return True

    def replace(self, scope: str, data: bytes) -> None:
        try:
            self._put(scope, data)
        except Exception as exc:
            raise self._storage_error(exc, "write") from None

    def scopes(self) -> list[str]:
        prefix = f"{self.prefix}/" if self.prefix else ""
        found: list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            ):
                for item in page.get("Contents", []):
                    name = item["Key"][len(prefix):]
                    if "/" not in name and name.endswith(".json") and _SAFE_SCOPE.match(name[:-5]):
                        found.append(name[:-5])
        except Exception as exc:
            raise self._storage_error(exc, "list") from None
        return sorted(found)


def prefect_results_directory() -> Path:
    """Prefect's local result storage (``PREFECT_RESULTS_LOCAL_STORAGE_PATH``,
    ``~/.prefect/storage`` unless set): where records live when a run names no storage."""
    from prefect.settings import get_current_settings

    return Path(get_current_settings().results.local_storage_path).expanduser()


def default_ledger_directory() -> Path:
    """``<PREFECT_RESULTS_LOCAL_STORAGE_PATH>/prefect-runway-ledger``: beside Prefect's
    local results (``~/.prefect/storage`` unless set)."""
    return prefect_results_directory() / LEDGER_FOLDER


def ledger_backend(storage: Any = None, *, fallback: bool = False) -> RecordBackend:
    """Where the submission ledger that lives with ``storage``'s results keeps its records.

    Args:
        storage: None or ``""`` (Prefect's local result storage path); a local directory
            (``str`` or ``Path``: the ledger goes in its ``prefect-runway-ledger/``);
            ``s3://bucket/prefix``, an ``S3Storage`` or a prefect-aws ``S3Bucket`` (the
            ledger goes under ``<prefix>/prefect-runway-ledger/`` in that bucket); or a
            ``LocalStorage``-like object with a ``root`` directory.
        fallback: Beside Prefect's local results for any other :class:`OutputStorage` (a
            generic filesystem block), instead of an error.

    Raises:
        InvalidRequest: ``storage`` is of a kind the ledger cannot live in.
    """
    if storage is None or storage == "":
        return LocalLedgerBackend(default_ledger_directory())
    if isinstance(storage, str) and storage.startswith("s3://"):
        storage = S3Storage.from_uri(storage)
    if isinstance(storage, (str, os.PathLike)):
        return LocalLedgerBackend(Path(storage) / LEDGER_FOLDER)
    bucket = getattr(storage, "bucket", None) if hasattr(storage, "object_key") else storage
    if bucket is not None and hasattr(bucket, "bucket_name") and hasattr(bucket, "credentials"):
        folder = (getattr(bucket, "bucket_folder", "") or "").strip("/")
        prefix = f"{folder}/{LEDGER_FOLDER}" if folder else LEDGER_FOLDER
        return S3LedgerBackend(bucket.credentials.get_s3_client(), bucket.bucket_name, prefix)
    root = getattr(storage, "root", None) or getattr(storage, "basepath", None)
    if isinstance(root, (str, os.PathLike)) and "://" not in str(root):
        return LocalLedgerBackend(Path(root) / LEDGER_FOLDER)
    if fallback and isinstance(storage, OutputStorage):
        return LocalLedgerBackend(default_ledger_directory())
    raise InvalidRequest(
        "storage", f"the submission ledger cannot live in {type(storage).__name__}",
        allowed="a local directory, s3://bucket/prefix, an S3Storage or an S3Bucket block",
    )
