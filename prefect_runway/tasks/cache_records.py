"""The submit task's cache records: JSON we wrote, read back only as a ``Generation``.

Whoever can write the result storage can write these records: what they write is data,
never code (see the README's security section).
"""

from __future__ import annotations

import json
import threading
from typing import Any, ClassVar

from prefect.filesystems import WritableFileSystem
from prefect.serializers import Serializer
from pydantic import Field, ValidationError

from prefect_runway.errors import CacheRecordRejected, PrefectRunwayError
from prefect_runway.models import Generation

__all__ = [
    "CACHE_FOLDER",
    "GENERATION_SERIALIZER",
    "SUBMIT_RECORD_KEYS",
    "GenerationSerializer",
    "SubmitRecordKeys",
    "read_generation",
    "submitted_generation",
    "take_rejection",
]

#: The folder of the records' metadata, beside the results (each result is at its cache key).
CACHE_FOLDER = "prefect-runway-cache"
#: The serializer our records name; a record naming any other is refused unread.
SERIALIZER_TYPE = "prefect-runway-generation"
#: The largest record read: a Generation is about a kilobyte.
MAX_RECORD_BYTES = 256 * 1024
_METADATA_FIELDS = frozenset(
    {"storage_key", "expiration", "serializer", "prefect_version", "storage_block_id"}
)


class _Refused(ValueError):
    """Why a record is refused (made into a CacheRecordRejected where its key is known)."""


def _generation(blob: bytes) -> Generation:
    if len(blob) > MAX_RECORD_BYTES:
        raise _Refused(f"{len(blob)} bytes, larger than a record")
    try:
        return Generation.model_validate_json(blob)
    except ValidationError as exc:
        raise _Refused(f"not a Generation as JSON: {exc.error_count()} error(s)") from None


def read_generation(blob: bytes, scope: str = "", location: str = "") -> Generation:
    """The :class:`Generation` a submit record holds, decoded as JSON into that model only.

    Raises:
        CacheRecordRejected: anything else (a pickle, another object, too large).
    """
    try:
        return _generation(blob)
    except _Refused as exc:
        raise CacheRecordRejected(str(exc), scope, location) from None


class GenerationSerializer(Serializer):
    """The submit task's result serializer: a :class:`Generation` as JSON, read back into
    that model only (Prefect's ``JSONSerializer`` imports whatever class a record names, its
    ``PickleSerializer`` runs whatever a record holds).

    A failed submit's exception is kept as its type name and message, and read back as a
    :class:`~prefect_runway.errors.PrefectRunwayError` saying so.
    """

    type: str = Field(default=SERIALIZER_TYPE, frozen=True)

    def dumps(self, obj: Any) -> bytes:
        if isinstance(obj, Generation):
            return obj.model_dump_json().encode()
        if isinstance(obj, BaseException):
            return json.dumps({"error": {"type": type(obj).__name__, "message": str(obj)}}).encode()
        raise TypeError(f"{type(obj).__name__} is not a Generation")

    def loads(self, blob: bytes) -> Any:
        if len(blob) <= MAX_RECORD_BYTES and blob.lstrip().startswith(b'{"error"'):
            try:
                error = json.loads(blob)["error"]
                return PrefectRunwayError(f"{error['type']}: {error['message']}")
            except (ValueError, KeyError, TypeError):
                pass
        return read_generation(blob)


#: The submit task's result serializer.
GENERATION_SERIALIZER = GenerationSerializer()


async def submitted_generation(state: Any) -> Generation | None:
    """The :class:`Generation` a finished submit task run's state (as the Prefect API gives
    it) points to, read as our record only; None for anything else.

    Where ``state.aresult()`` would decode the stored record with the serializer the record
    names, this reads it as JSON into a ``Generation`` or not at all.
    """
    data = getattr(state, "data", None)
    key = getattr(data, "storage_key", None)
    if getattr(getattr(data, "serializer", None), "type", None) != SERIALIZER_TYPE or not key:
        return None
    from prefect.results import aget_default_result_storage, aresolve_result_storage

    try:
        block_id = getattr(data, "storage_block_id", None)
        storage = (await aresolve_result_storage(block_id) if block_id is not None
                   else await aget_default_result_storage())
        return _generation(await _call(storage, "read_path", str(key)))
    except Exception:  # noqa: BLE001 - unreadable, absent or not ours: no job to name
        return None


# ---- which records a lookup refused, for the submit that follows ------------------------------

_REJECTED: dict[tuple[str, str], CacheRecordRejected] = {}
_REJECTED_LOCK = threading.Lock()


def _task_run() -> str | None:
    from prefect.context import TaskRunContext

    context = TaskRunContext.get()
    return str(context.task_run.id) if context and context.task_run else None


def take_rejection(key: str) -> CacheRecordRejected | None:
    """The record of ``key`` that this task run's cache lookup refused (Prefect then runs
    the task as if there were no record), or None."""
    run = _task_run()
    if run is None:
        return None
    with _REJECTED_LOCK:
        return _REJECTED.pop((run, key), None)


# ---- the key storage ----------------------------------------------------------------------------


class SubmitRecordKeys(WritableFileSystem):
    """The submit task's cache key storage: each record's metadata, in the run's result
    storage under ``prefect-runway-cache/``; the record's result stays at its cache key.

    Prefect decodes a record with the serializer the record names itself, so a pickle
    planted at a cache key would run as soon as the key is looked up. Through this key
    storage Prefect gets only metadata that names :class:`GenerationSerializer` and whose
    result decodes as a ``Generation``; anything else is refused
    (:class:`~prefect_runway.errors.CacheRecordRejected`), which Prefect takes as "no
    record", and the submit then weighs against the ledger (:func:`take_rejection`).
    """

    _block_type_name: ClassVar[str] = "Prefect Runway Submit Record Keys"
    _block_type_slug: ClassVar[str] = "prefect-runway-submit-record-keys"

    @staticmethod
    def metadata_path(key: str) -> str:
        """Where the metadata of ``key``'s record is, in the result storage."""
        name = key.rsplit("/", 1)[-1].removeprefix("prefect-runway-submit-")
        return f"{CACHE_FOLDER}/{name}.json"

    async def _storage(self) -> Any:
        """The result storage of the current task run (else flow run, else Prefect's
        default): where Prefect reads and writes the records' results."""
        from prefect.context import FlowRunContext, TaskRunContext
        from prefect.filesystems import LocalFileSystem
        from prefect.results import aget_default_result_storage
        from prefect.settings import get_current_settings

        for context in (TaskRunContext.get(), FlowRunContext.get()):
            store = getattr(context, "result_store", None) if context else None
            if store is not None and store.result_storage is not None:
                return store.result_storage
        settings = get_current_settings()
        if settings.api.url is None and settings.results.default_storage_block is None:
            # No run and no Prefect server (``prefect-runway plan``): the local result
            # storage, without starting a temporary server to ask for a default.
            return LocalFileSystem(basepath=str(settings.results.local_storage_path))
        return await aget_default_result_storage()

    async def aread_path(self, path: str) -> bytes:
        storage = await self._storage()
        where = self.metadata_path(path)
        metadata = await _call(storage, "read_path", where)  # absent: Prefect's "no record"
        try:
            _generation(await _call(storage, "read_path", _result_key(metadata, path)))
        except _Refused as exc:
            rejection = CacheRecordRejected(str(exc), path, _location(storage, where))
            run = _task_run()
            if run is not None:
                with _REJECTED_LOCK:
                    _REJECTED[(run, path)] = rejection
            raise rejection from None
        return metadata

    async def awrite_path(self, path: str, content: bytes) -> Any:
        return await _call(await self._storage(), "write_path", self.metadata_path(path), content)

    def read_path(self, path: str, _sync: bool = True) -> bytes:  # type: ignore[override]
        from prefect.utilities.asyncutils import run_coro_as_sync

        return run_coro_as_sync(self.aread_path(path))  # type: ignore[return-value]

    def write_path(self, path: str, content: bytes, _sync: bool = True) -> Any:  # type: ignore[override]
        from prefect.utilities.asyncutils import run_coro_as_sync

        return run_coro_as_sync(self.awrite_path(path, content))


#: The key storage of the submit task's cache policies.
SUBMIT_RECORD_KEYS = SubmitRecordKeys()


def _result_key(data: bytes, key: str) -> str:
    """Where the result of a record is, from metadata that names our serializer and has
    the shape Prefect writes, nothing else."""
    if len(data) > MAX_RECORD_BYTES:
        raise _Refused("metadata larger than a record")
    try:
        metadata = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise _Refused("metadata that is not JSON") from None
    if isinstance(metadata, dict) and isinstance(metadata.get("metadata"), dict):
        metadata = metadata["metadata"]  # a whole record in Prefect's layout: say what it names
        if metadata.get("serializer") == {"type": SERIALIZER_TYPE}:
            raise _Refused("a whole record where its metadata belongs")
    if not isinstance(metadata, dict) or not set(metadata) <= _METADATA_FIELDS:
        raise _Refused("metadata of another shape")
    if metadata.get("serializer") != {"type": SERIALIZER_TYPE}:
        named = metadata.get("serializer")
        kind = named.get("type") if isinstance(named, dict) else type(named).__name__
        raise _Refused(f"it names the serializer {str(kind)[:40]!r}")
    result_key = metadata.get("storage_key")
    if not isinstance(result_key, str) or result_key.rsplit("/", 1)[-1] != key.rsplit("/", 1)[-1]:
        raise _Refused("its result is not at its key")
    return result_key


def _location(storage: Any, path: str) -> str:
    base = getattr(storage, "basepath", None) or getattr(storage, "bucket_folder", None) or ""
    where = f"{str(base).rstrip('/')}/{path}" if base else path
    bucket = getattr(storage, "bucket_name", None)
    return f"s3://{bucket}/{where}" if bucket else where


async def _call(block: Any, method: str, *args: Any) -> Any:
    """``block.a<method>(*args)`` where the block has it, else its (maybe async) method."""
    explicit = getattr(block, f"a{method}", None)
    if explicit is not None:
        return await explicit(*args)
    value = getattr(block, method)(*args)
    return await value if hasattr(value, "__await__") else value
