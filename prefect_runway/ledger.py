"""The submission ledger: a durable record of every paid submit, written before the POST.

A paid submit leaves three kinds of trace here, one small JSON record per submission scope
(the request fingerprint and the API it goes to, see ``submission_cache_key``):

* ``intent``: written durably and atomically *before* the POST leaves the process (who is
  sending what, from which flow run, when);
* ``job``: written after the provider's answer, with the job id and the ``Generation``;
* ``cleared``: the intent is known to have made no job (a 4xx that provably created
  nothing), or a user resolved the doubt (``force=True``, ``prefect-runway ledger resolve``).

An intent without a job means the outcome of a submit is unknown: a crash, a lost answer,
a kill right after the provider accepted the job. :meth:`SubmissionLedger.begin` then
refuses with :class:`SubmissionInDoubt` (a :class:`~prefect_runway.errors.SubmissionUncertain`)
instead of paying again, until a person settles it: clears it (the next run submits again)
or adopts the job the provider's dashboard shows (:meth:`SubmissionLedger.adopt`: the next run
continues with it). A record that cannot be read is never taken as absent: it raises
:class:`LedgerRecordUnreadable`, also a doubt. Each doubt a run meets is a :class:`Doubt`: a
Prefect event and a line of the run's summary, with the commands that settle it.

Records live where the results live: under Prefect's local result storage
(``PREFECT_RESULTS_LOCAL_STORAGE_PATH``) in ``prefect-runway-ledger/`` by default, or in S3
(``s3://bucket/prefix``, an ``S3Storage`` or a prefect-aws ``S3Bucket``) under
``<prefix>/prefect-runway-ledger/``. Locally a record is written to a temporary file,
fsynced, then linked (a new intent: fails if one appeared meanwhile) or renamed into place,
and the directory is fsynced. On S3 each record is one ``PUT``; a new intent is a
conditional ``PUT`` (``If-None-Match: *``) so two workers cannot both create it.

Records hold no secret: the API key never reaches this module, and of the base URL only the
origin (scheme, host, port) is kept.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import json
import os
import re
import shlex
import socket
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, ValidationError

from prefect_runway.errors import InvalidRequest, RunwayError, StorageError, SubmissionUncertain
from prefect_runway.models import Generation

__all__ = [
    "LEDGER_FOLDER",
    "Doubt",
    "Intent",
    "IntentMeta",
    "JobRecord",
    "LedgerAmbiguous",
    "LedgerError",
    "LedgerNotFound",
    "LedgerRecord",
    "LedgerRecordUnreadable",
    "LedgerStorageError",
    "LocalLedgerBackend",
    "S3LedgerBackend",
    "SubmissionInDoubt",
    "SubmissionLedger",
    "api_origin",
    "default_ledger_directory",
    "doubts_markdown",
    "format_ledger",
    "ledger_for",
    "ledger_of",
    "scope_for",
    "scope_id",
]

#: The folder of the ledger beside the results (locally and in S3).
LEDGER_FOLDER = "prefect-runway-ledger"
#: What every submission scope starts with (``submission_cache_key``); the rest tells them apart.
SCOPE_PREFIX = "prefect-runway-submit-"
#: Bumped when the record layout changes incompatibly.
RECORD_VERSION = 1
_SAFE_SCOPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")

State = Literal["intent", "job", "cleared"]


# ---- errors ----------------------------------------------------------------------------------


class LedgerError(RunwayError):
    """Something about the submission ledger itself (not the provider) went wrong."""


class LedgerStorageError(LedgerError, StorageError):
    """The ledger's storage could not be read or written (permissions, no bucket, a file
    where a directory should be). Nothing was sent; no retry cures it."""


class LedgerNotFound(LedgerError, LookupError):
    """No ledger record matches the fingerprint (or prefix) given."""


class LedgerAmbiguous(LedgerError, LookupError):
    """A fingerprint prefix matches several ledger records; give more of it.

    Attributes:
        matches: The fingerprints that matched.
    """

    def __init__(self, message: str, matches: list[str]) -> None:
        self.matches = matches
        super().__init__(message)

    def __reduce__(self) -> Any:
        return (type(self), (self.args[0], self.matches))


class SubmissionInDoubt(SubmissionUncertain):
    """An earlier submit of this request has an intent and no job: it may have been billed.

    Raised by :meth:`SubmissionLedger.begin` instead of submitting again.

    Attributes:
        intent: The ledger record of the earlier submit.
    """

    def __init__(self, intent: LedgerRecord) -> None:
        self.intent = intent
        run = intent.flow_run_id or "no flow run"
        message = (
            f"a submit of this request was sent at {intent.created_at.isoformat()} by flow run "
            f"{run} (attempt {intent.attempt_id}, {intent.host}:{intent.pid}) and no job was "
            f"recorded for it: it may exist and be billed, so it was not sent again. Check the "
            f"{intent.provider} dashboard, then adopt the job it shows with `prefect-runway "
            f"ledger resolve {intent.fingerprint[:16]} --job JOB_ID` (the next run continues "
            f"with it, nothing paid again), or clear the doubt with `prefect-runway ledger "
            f"resolve {intent.fingerprint[:16]}` or force=True (a new, billed job)"
        )
        super().__init__(message, fingerprint=intent.fingerprint, provider=intent.provider)

    def __reduce__(self) -> Any:
        return (type(self), (self.intent,))


class LedgerRecordUnreadable(SubmissionUncertain):
    """A ledger record exists but cannot be read; it is never taken as absent.

    Attributes:
        scope: The submission scope of the record.
        location: Where the record is.
    """

    def __init__(self, scope: str, location: str, reason: str) -> None:
        self.scope = scope
        self.location = location
        self.reason = reason
        super().__init__(
            f"the ledger record at {location} cannot be read ({reason}); a submit of this "
            f"request may have been sent, so nothing is sent until it is resolved: check the "
            f"provider's dashboard, then use force=True or `prefect-runway ledger resolve "
            f"{scope}`",
            fingerprint=scope,
        )

    def __reduce__(self) -> Any:
        return (type(self), (self.scope, self.location, self.reason))


# ---- records ---------------------------------------------------------------------------------


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def api_origin(base_url: str) -> str:
    """The origin of an API base URL: scheme, host and port; no path, query or user info."""
    parts = urlsplit(base_url)
    if not parts.scheme or not parts.hostname:
        raise InvalidRequest("base_url", f"{base_url!r} is not an absolute URL",
                             allowed="http(s)://host[:port][/path]")
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


@dataclass(frozen=True)
class IntentMeta:
    """What an intent records about the submit about to be sent.

    Attributes:
        fingerprint: The request fingerprint (``PreparedRequest.fingerprint``).
        provider: The provider's name.
        base_url: The API base URL (only its origin is stored).
        model: The model name.
        flow_run_id: The flow run sending it (default: the current one, if any).
        task_run_id: The task run sending it (default: the current one, if any).
        kind: ``image`` or ``video``.
        request: The request's summary as sent (``PreparedRequest.summary``: no data URI,
            no signed URL's query).
    """

    fingerprint: str
    provider: str
    base_url: str
    model: str
    flow_run_id: str | None = None
    task_run_id: str | None = None
    kind: str | None = None
    request: dict[str, Any] | None = None

    @classmethod
    def from_prepared(cls, prepared: Any, **kwargs: Any) -> IntentMeta:
        """From a ``PreparedRequest``: its fingerprint, provider, base URL, model, kind and
        summary (what a job adopted for it later carries, as a submit's answer would)."""
        return cls(fingerprint=prepared.fingerprint, provider=prepared.provider,
                   base_url=prepared.base_url, model=prepared.model, kind=prepared.kind,
                   request=prepared.summary, **kwargs)


class LedgerRecord(BaseModel):
    """One submission scope's record: the latest of intent, job, cleared."""

    version: int = RECORD_VERSION
    scope: str
    state: State
    fingerprint: str
    provider: str
    api_origin: str
    model: str
    created_at: datetime = Field(description="When the intent was written (UTC).")
    flow_run_id: str | None = None
    task_run_id: str | None = None
    attempt_id: str = Field(description="Unique id of this submit attempt.")
    host: str
    pid: int
    job_id: str | None = None
    generation: dict[str, Any] | None = Field(
        default=None, description="The serialized Generation (state job)."
    )
    job_recorded_at: datetime | None = None
    cleared_reason: str | None = None
    cleared_by: str | None = None
    cleared_at: datetime | None = None
    supersedes: str | None = Field(
        default=None, description="The attempt id of the record this one replaced (force)."
    )
    kind: str | None = Field(default=None, description="image or video.")
    request: dict[str, Any] | None = Field(
        default=None, description="The request's summary as sent (no data URI, no signature)."
    )
    adopted_by: str | None = Field(
        default=None, description="Who adopted the job the provider showed for an intent in "
                                  "doubt (``prefect-runway ledger resolve FP --job ID``).",
    )

    def to_generation(self) -> Generation:
        """The recorded job as a ``Generation`` (state ``job`` only)."""
        if self.generation is None:
            raise LedgerError(f"ledger record {self.scope} holds no job (state {self.state})")
        return Generation.model_validate(self.generation)

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=1).encode() + b"\n"


class Intent(LedgerRecord):
    """An intent: the submit is about to be sent (or was, with an unknown outcome)."""

    state: Literal["intent"] = "intent"


class JobRecord(LedgerRecord):
    """A job: the provider accepted the submit; reuse the job instead of paying again."""

    state: Literal["job"] = "job"


class ClearedRecord(LedgerRecord):
    """A cleared intent: provably no job, or resolved by the user."""

    state: Literal["cleared"] = "cleared"


_BY_STATE: dict[str, type[LedgerRecord]] = {
    "intent": Intent, "job": JobRecord, "cleared": ClearedRecord,
}


def parse_record(data: bytes, scope: str, location: str) -> LedgerRecord:
    """A record from its JSON; :class:`LedgerRecordUnreadable` for anything else."""
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise LedgerRecordUnreadable(scope, location, f"not JSON: {type(exc).__name__}") from None
    if not isinstance(raw, dict) or raw.get("state") not in _BY_STATE:
        raise LedgerRecordUnreadable(scope, location, "no known state")
    if raw.get("version") != RECORD_VERSION:
        raise LedgerRecordUnreadable(scope, location, f"unknown version {raw.get('version')!r}")
    try:
        record = _BY_STATE[raw["state"]].model_validate(raw)
    except ValidationError as exc:
        raise LedgerRecordUnreadable(
            scope, location, f"{exc.error_count()} invalid field(s)"
        ) from None
    if record.scope != scope:
        raise LedgerRecordUnreadable(scope, location, f"it is the record of {record.scope}")
    if record.state == "job" and (record.generation is None or not record.job_id):
        raise LedgerRecordUnreadable(scope, location, "a job record without its job")
    return record


# ---- backends --------------------------------------------------------------------------------


class LedgerBackend(Protocol):
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


def scope_for(fingerprint: str, base_url: str) -> str:
    """The submission scope of a request at an API: its fingerprint and the base URL it goes
    to (``submission_cache_key``, also the submit task's cache key); no secret."""
    return SCOPE_PREFIX + hashlib.sha256(f"{fingerprint}|{base_url}".encode()).hexdigest()[:40]


def scope_id(scope: str) -> str:
    """The part of a submission scope that tells it apart from the others (what ``ledger ls``
    shows of a record it cannot read, and what ``ledger resolve`` takes for it)."""
    return scope.removeprefix(SCOPE_PREFIX)


def _check_scope(scope: str) -> str:
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

    def path(self, scope: str) -> Path:
        return self.directory / f"{_check_scope(scope)}.json"

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


_S3_ABSENT = frozenset({"NoSuchKey", "404", "NotFound"})
_S3_EXISTS = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})
_S3_UNSUPPORTED = frozenset({"NotImplemented", "501"})


def _s3_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str((response.get("Error") or {}).get("Code") or "") or None
    return None


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

    def key(self, scope: str) -> str:
        name = f"{_check_scope(scope)}.json"
        return f"{self.prefix}/{name}" if self.prefix else name

    def location(self, scope: str) -> str:
        return f"s3://{self.bucket}/{self.key(scope)}"

    @property
    def storage(self) -> str:
        folder = self.prefix.removesuffix(LEDGER_FOLDER).rstrip("/")
        return f"s3://{self.bucket}/{folder}" if folder else f"s3://{self.bucket}"

    def _storage_error(self, exc: BaseException, what: str) -> LedgerStorageError:
        code = _s3_code(exc) or type(exc).__name__
        return LedgerStorageError(f"S3 refused to {what} s3://{self.bucket}/{self.prefix} ({code})")

    def read(self, scope: str) -> bytes | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key(scope))
        except Exception as exc:
            if _s3_code(exc) in _S3_ABSENT:
                return None
            if _s3_code(exc) is None:
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
                code = _s3_code(exc)
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


# ---- the ledger ------------------------------------------------------------------------------


def _current_run_ids() -> tuple[str | None, str | None]:
    try:
        from prefect.context import FlowRunContext, TaskRunContext
    except ImportError:  # pragma: no cover - prefect is a dependency
        return None, None
    flow_ctx = FlowRunContext.get()
    task_ctx = TaskRunContext.get()
    flow_run = str(flow_ctx.flow_run.id) if flow_ctx and flow_ctx.flow_run else None
    task_run = str(task_ctx.task_run.id) if task_ctx and task_ctx.task_run else None
    if flow_run is None and task_ctx and task_ctx.task_run and task_ctx.task_run.flow_run_id:
        flow_run = str(task_ctx.task_run.flow_run_id)
    return flow_run, task_run


def _too_old(record: LedgerRecord, max_age: float | None) -> bool:
    if max_age is None:
        return False
    since = record.job_recorded_at or record.created_at
    return (_utc_now() - since).total_seconds() > max_age


def _who() -> str:
    user = os.environ.get("USER") or os.environ.get("USERNAME") or "unknown"
    return f"{user}@{socket.gethostname()}"


class SubmissionLedger:
    """The submission ledger: intents before paying, jobs after, doubts until resolved.

    Every method is async; storage calls run in a worker thread.

    Args:
        backend: Where records live: a :class:`LocalLedgerBackend` or :class:`S3LedgerBackend`
            (see :func:`ledger_for` to choose one from a storage setting).

    Example:
        ```python
        from prefect_runway.ledger import IntentMeta, JobRecord, ledger_for

        ledger = ledger_for(storage)
        began = await ledger.begin(scope, IntentMeta.from_prepared(prepared), force=force)
        if isinstance(began, JobRecord):
            generation = began.to_generation()          # paid before: reuse the job
        else:
            generation = await client.submit(prepared)  # the paid POST
            await ledger.record_job(began, generation)
        ```
    """

    def __init__(self, backend: LedgerBackend) -> None:
        self.backend = backend

    def __repr__(self) -> str:
        return f"SubmissionLedger({self.backend!r})"

    def _get(self, scope: str) -> LedgerRecord | None:
        data = self.backend.read(scope)
        if data is None:
            return None
        return parse_record(data, scope, self.backend.location(scope))

    async def get(self, scope: str) -> LedgerRecord | None:
        """The record of ``scope``, or None when there is none.

        Raises:
            LedgerRecordUnreadable: a record exists but cannot be read.
        """
        return await asyncio.to_thread(self._get, scope)

    def _begin(
        self, scope: str, meta: IntentMeta, force: bool, job_max_age: float | None = None
    ) -> Intent | JobRecord:
        _check_scope(scope)
        flow_run, task_run = _current_run_ids()
        intent = Intent(
            scope=scope, fingerprint=meta.fingerprint, provider=meta.provider,
            api_origin=api_origin(meta.base_url), model=meta.model, created_at=_utc_now(),
            flow_run_id=meta.flow_run_id or flow_run, task_run_id=meta.task_run_id or task_run,
            attempt_id=uuid.uuid4().hex, host=socket.gethostname(), pid=os.getpid(),
            kind=meta.kind, request=meta.request,
        )
        if force:
            try:
                previous = self._get(scope)
            except LedgerRecordUnreadable:
                previous = None  # the user chose to resend: the unreadable record is replaced
            if previous is not None:
                intent.supersedes = previous.attempt_id
            self.backend.replace(scope, intent.to_json())
            return intent
        for _ in range(3):
            existing = self._get(scope)
            if existing is None:
                if self.backend.create(scope, intent.to_json()):
                    return intent
                continue  # another writer created it first: look at theirs
            if isinstance(existing, JobRecord) and not _too_old(existing, job_max_age):
                return existing
            if isinstance(existing, Intent):
                raise SubmissionInDoubt(existing)
            intent.supersedes = existing.attempt_id
            self.backend.replace(scope, intent.to_json())
            return intent
        raise LedgerError(f"the ledger record {self.backend.location(scope)} keeps changing")

    def _reusable(self, scope: str, job_max_age: float | None) -> JobRecord | None:
        try:
            existing = self._get(scope)
        except LedgerRecordUnreadable:
            return None
        if isinstance(existing, JobRecord) and not _too_old(existing, job_max_age):
            return existing
        return None

    async def reusable(self, scope: str, job_max_age: float | None = None) -> JobRecord | None:
        """The job recorded for ``scope`` that :meth:`begin` would reuse now, or None."""
        return await asyncio.to_thread(self._reusable, scope, job_max_age)

    async def begin(
        self, scope: str, meta: IntentMeta, *, force: bool = False,
        job_max_age: float | None = None,
    ) -> Intent | JobRecord:
        """Before a paid submit: reuse a recorded job, refuse a doubt, or write the intent.

        Args:
            scope: The submission scope (``submission_cache_key(...)``).
            meta: What the submit is.
            force: Write a new intent whatever is recorded (a deliberate resubmit).
            job_max_age: Seconds after which a recorded job is no longer reused (the
                provider forgot it: pass its retention); a new intent replaces it.

        Returns:
            The :class:`JobRecord` if this scope has a job (send nothing; reuse it), else the
            :class:`Intent` now durably written (send the POST, then :meth:`record_job`).

        Raises:
            SubmissionInDoubt: an intent without a job exists (and not ``force``).
            LedgerRecordUnreadable: the record exists but cannot be read (and not ``force``).
            LedgerStorageError: the ledger cannot be written; nothing may be sent.
        """
        return await asyncio.to_thread(self._begin, scope, meta, force, job_max_age)

    def _record_job(self, intent: LedgerRecord, generation: Generation,
                    adopted_by: str | None = None) -> JobRecord:
        record = JobRecord(
            **intent.model_dump(exclude={"state", "job_id", "generation", "job_recorded_at",
                                         "adopted_by"}),
            job_id=generation.job_id, generation=generation.model_dump(mode="json"),
            job_recorded_at=_utc_now(), adopted_by=adopted_by,
        )
        self.backend.replace(intent.scope, record.to_json())
        return record

    async def record_job(self, intent: LedgerRecord, generation: Generation) -> JobRecord:
        """After the provider's answer: the job, written over the intent."""
        return await asyncio.to_thread(self._record_job, intent, generation)

    def _clear(self, scope: str, reason: str, by: str | None, record: LedgerRecord | None) -> ClearedRecord:
        if record is None:
            record = self._get(scope)
        if record is None:
            raise LedgerNotFound(f"no ledger record for {scope}")
        cleared = ClearedRecord(
            **record.model_dump(exclude={"state", "cleared_reason", "cleared_by", "cleared_at"}),
            cleared_reason=reason, cleared_by=by or _who(), cleared_at=_utc_now(),
        )
        self.backend.replace(scope, cleared.to_json())
        return cleared

    async def clear(
        self, scope: str | LedgerRecord, reason: str, *, by: str | None = None
    ) -> ClearedRecord:
        """Clear the record of ``scope``: provably no job, or resolved by a user.

        Args:
            scope: The scope, or the record (an ``Intent`` from :meth:`begin`).
            reason: Why, e.g. ``"http 422: provably no job"``.
            by: Who (default: the current user and host).
        """
        record = scope if isinstance(scope, LedgerRecord) else None
        name = record.scope if record is not None else scope
        return await asyncio.to_thread(self._clear, name, reason, by, record)  # type: ignore[arg-type]

    def _records(self, doubts_only: bool) -> list[LedgerRecord | LedgerRecordUnreadable]:
        out: list[LedgerRecord | LedgerRecordUnreadable] = []
        for scope in self.backend.scopes():
            try:
                record = self._get(scope)
            except LedgerRecordUnreadable as exc:
                out.append(exc)
                continue
            if record is None:
                continue
            if not doubts_only or isinstance(record, Intent):
                out.append(record)
        return out

    async def list(self, *, doubts_only: bool = False) -> list[LedgerRecord | LedgerRecordUnreadable]:
        """Every record (newest first); with ``doubts_only``, intents without a job and
        unreadable records (both are doubts), as :class:`LedgerRecordUnreadable` items."""
        items = await asyncio.to_thread(self._records, doubts_only)

        def when(item: LedgerRecord | LedgerRecordUnreadable) -> datetime:
            return item.created_at if isinstance(item, LedgerRecord) else datetime.max.replace(
                tzinfo=timezone.utc)

        return sorted(items, key=when, reverse=True)

    def _doubts(self, prefix: str) -> builtins.list[LedgerRecord | LedgerRecordUnreadable]:
        prefix = prefix.strip().lower()
        if len(prefix) < 4:
            raise InvalidRequest("fingerprint", f"{prefix!r} is too short to name a submission",
                                 allowed="at least 4 characters of a fingerprint or scope")
        doubts = self._records(doubts_only=True)
        matches: list[LedgerRecord | LedgerRecordUnreadable] = []
        for item in doubts:
            keys: tuple[str, ...]
            if isinstance(item, LedgerRecord):
                keys = (item.fingerprint.lower(), item.scope.lower())
            else:
                keys = (item.scope.lower(), scope_id(item.scope).lower())
            if any(k.startswith(prefix) for k in keys):
                matches.append(item)
        if not matches:
            raise LedgerNotFound(f"no submission in doubt matches {prefix!r}")
        fingerprints = {m.fingerprint if isinstance(m, LedgerRecord) else m.scope for m in matches}
        if len(fingerprints) > 1:
            raise LedgerAmbiguous(
                f"{prefix!r} matches {len(fingerprints)} submissions in doubt; give more of the "
                f"fingerprint", sorted(fingerprints),
            )
        return matches

    async def doubts(
        self, fingerprint_prefix: str
    ) -> builtins.list[LedgerRecord | LedgerRecordUnreadable]:
        """The records in doubt of the one submission whose fingerprint (or scope) starts so:
        one per API it was sent to (unreadable ones as :class:`LedgerRecordUnreadable`).

        Raises:
            LedgerNotFound: nothing in doubt matches.
            LedgerAmbiguous: the prefix matches several fingerprints.
        """
        return await asyncio.to_thread(self._doubts, fingerprint_prefix)

    def _resolve(self, prefix: str, by: str | None) -> builtins.list[ClearedRecord]:
        matches = self._doubts(prefix)
        cleared: builtins.list[ClearedRecord] = []
        for item in matches:
            if isinstance(item, LedgerRecord):
                cleared.append(self._clear(item.scope, "resolved by the user", by, item))
            else:
                # Unreadable: replace it with a cleared tombstone that keeps what is known.
                tomb = ClearedRecord(
                    scope=item.scope, fingerprint=item.scope, provider="unknown",
                    api_origin="unknown://", model="unknown", created_at=_utc_now(),
                    attempt_id=uuid.uuid4().hex, host=socket.gethostname(), pid=os.getpid(),
                    cleared_reason=f"unreadable record resolved by the user ({item.reason})",
                    cleared_by=by or _who(), cleared_at=_utc_now(),
                )
                self.backend.replace(item.scope, tomb.to_json())
                cleared.append(tomb)
        return cleared

    async def resolve(self, fingerprint_prefix: str, *, by: str | None = None) -> builtins.list[ClearedRecord]:
        """Clear the doubt(s) of the submission whose fingerprint (or scope) starts so.

        One request sent to two APIs has two scopes with one fingerprint: both are cleared.

        Raises:
            LedgerNotFound: nothing in doubt matches.
            LedgerAmbiguous: the prefix matches several fingerprints.
        """
        return await asyncio.to_thread(self._resolve, fingerprint_prefix, by)

    async def adopt(
        self, fingerprint_prefix: str, job_id: str, credentials: Any, *, by: str | None = None
    ) -> tuple[JobRecord, Any]:
        """Settle a doubt with the job the provider's dashboard shows for it: the ledger
        records ``job_id`` as the submission's job, so the next run continues with it (waits
        for it, stores its outputs) and pays nothing.

        The job is checked first with one status read (``credentials``' client): the provider
        must know it. Nothing is written when it does not, or when the record changed since
        it was read (another run, another resolve).

        Args:
            fingerprint_prefix: The fingerprint (or its first characters), as
                ``prefect-runway ledger ls --doubts`` shows it.
            job_id: The provider's id of the job (its dashboard, its logs).
            credentials: The credentials block the submission was sent with: the record's
                provider and API; its key reads the job's status.
            by: Who adopted it (default: the current user and host).

        Returns:
            The job record now written, and the provider's answer to the status read
            (a :class:`~prefect_runway.models.StatusUpdate`).

        Raises:
            LedgerNotFound: nothing in doubt matches.
            LedgerAmbiguous: the prefix matches several fingerprints.
            InvalidRequest: ``job`` is empty or unknown to the provider, ``credentials`` are
                for another provider or API than the record's, or the record cannot be read
                (clear it instead: :meth:`resolve`).
            ProviderError: the status read failed otherwise (bad key, provider down).
        """
        from prefect_runway.errors import GenerationExpired
        from prefect_runway.models import IMAGE_MODELS

        job_id = (job_id or "").strip()
        if not job_id:
            raise InvalidRequest("job", "is empty", allowed="the job id the provider shows")
        matches = await self.doubts(fingerprint_prefix)
        if any(isinstance(m, LedgerRecordUnreadable) for m in matches):
            raise InvalidRequest(
                "fingerprint", "the ledger record in doubt cannot be read, so no job can be "
                "matched to it", allowed="resolve it without --job (clear it: the next run "
                "submits again)",
            )
        base_url = credentials.resolved_base_url()
        records = [m for m in matches if isinstance(m, LedgerRecord)]
        record = next((r for r in records if r.scope == scope_for(r.fingerprint, base_url)),
                      None)
        if record is None or record.provider != credentials.provider_name:
            sent = ", ".join(f"{r.provider} at {r.api_origin}" for r in records)
            raise InvalidRequest(
                "credentials", f"the submission was sent to {sent}; these credentials are "
                f"for {credentials.provider_name} at {api_origin(base_url)}",
                allowed=f"the credentials block it was sent with ({sent})",
            )
        generation = Generation(
            provider=record.provider, model=record.model, job_id=job_id,
            kind=record.kind or ("image" if record.model in IMAGE_MODELS else "video"),
            fingerprint=record.fingerprint, base_url=base_url, request=record.request or {},
            submitted_at=record.created_at,
        )
        try:
            async with credentials.get_client() as client:
                update = await client.status(generation)
        except GenerationExpired as exc:
            raise InvalidRequest(
                "job", f"{record.provider} holds no job {job_id!r} (http {exc.status_code})",
                allowed=f"the id of a job {record.provider} still holds, as its dashboard "
                        "shows it",
            ) from None
        job = await asyncio.to_thread(self._adopt, record, generation, by)
        return job, update

    def _adopt(self, record: LedgerRecord, generation: Generation, by: str | None) -> JobRecord:
        current = self._get(record.scope)  # still the intent that was read: not raced
        if current is None or current.attempt_id != record.attempt_id or current.state != "intent":
            raise LedgerError(f"the ledger record {self.backend.location(record.scope)} changed "
                              "since it was read; look again with `prefect-runway ledger ls`")
        return self._record_job(record, generation, adopted_by=by or _who())


# ---- where the ledger lives ------------------------------------------------------------------


def default_ledger_directory() -> Path:
    """``<PREFECT_RESULTS_LOCAL_STORAGE_PATH>/prefect-runway-ledger``: beside Prefect's
    local results (``~/.prefect/storage`` unless set)."""
    from prefect.settings import get_current_settings

    return Path(get_current_settings().results.local_storage_path).expanduser() / LEDGER_FOLDER


def ledger_for(storage: Any = None) -> SubmissionLedger:
    """The ledger that lives with ``storage``'s results.

    Args:
        storage: None or ``""`` (Prefect's local result storage path); a local directory
            (``str`` or ``Path``: the ledger goes in its ``prefect-runway-ledger/``);
            ``s3://bucket/prefix``, an ``S3Storage`` or a prefect-aws ``S3Bucket`` (the
            ledger goes under ``<prefix>/prefect-runway-ledger/`` in that bucket); or a
            ``LocalStorage``-like object with a ``root`` directory.

    Raises:
        InvalidRequest: ``storage`` is of a kind the ledger cannot live in.
    """
    if storage is None or storage == "":
        return SubmissionLedger(LocalLedgerBackend(default_ledger_directory()))
    if isinstance(storage, SubmissionLedger):
        return storage
    if isinstance(storage, str) and storage.startswith("s3://"):
        from prefect_runway.storage.s3 import S3Storage

        storage = S3Storage.from_uri(storage)
    if isinstance(storage, (str, os.PathLike)):
        return SubmissionLedger(LocalLedgerBackend(Path(storage) / LEDGER_FOLDER))
    bucket = getattr(storage, "bucket", None) if hasattr(storage, "object_key") else storage
    if bucket is not None and hasattr(bucket, "bucket_name") and hasattr(bucket, "credentials"):
        folder = (getattr(bucket, "bucket_folder", "") or "").strip("/")
        prefix = f"{folder}/{LEDGER_FOLDER}" if folder else LEDGER_FOLDER
        return SubmissionLedger(
            S3LedgerBackend(bucket.credentials.get_s3_client(), bucket.bucket_name, prefix)
        )
    root = getattr(storage, "root", None) or getattr(storage, "basepath", None)
    if isinstance(root, (str, os.PathLike)) and "://" not in str(root):
        return SubmissionLedger(LocalLedgerBackend(Path(root) / LEDGER_FOLDER))
    raise InvalidRequest(
        "storage", f"the submission ledger cannot live in {type(storage).__name__}",
        allowed="a local directory, s3://bucket/prefix, an S3Storage or an S3Bucket block",
    )


def ledger_of(storage: Any = None) -> SubmissionLedger:
    """The submission ledger that lives with a run's ``storage`` (see :func:`ledger_for`).

    A local directory keeps it in ``<dir>/prefect-runway-ledger``, S3 in the bucket under
    ``<prefix>/prefect-runway-ledger``; a storage the ledger cannot live in (a generic
    filesystem block) and None keep it beside Prefect's local results.
    """
    if isinstance(storage, SubmissionLedger):
        return storage
    try:
        return ledger_for(storage)
    except InvalidRequest:
        from prefect_runway.storage.base import OutputStorage

        if isinstance(storage, OutputStorage):
            return ledger_for(None)
        raise



# ---- doubts a person settles -------------------------------------------------------------------

class Doubt(BaseModel):
    """A submission in doubt that a run met: sent, its answer lost (now, or by an earlier
    run), so it may exist and be billed. What it was, where its record is, and the two
    commands that settle it. Holds no secret.
    """

    fingerprint: str = Field(description="The request's fingerprint.")
    reference: str = Field(description="What `prefect-runway ledger resolve` takes for it.")
    provider: str
    model: str
    kind: str | None = Field(default=None, description="image or video.")
    name: str | None = Field(default=None, description="The shot's name, as given.")
    sent_at: datetime | None = Field(default=None, description="When the submit was sent.")
    sent_by_flow_run: str | None = Field(default=None, description="The flow run that sent it.")
    flow_run_id: str | None = Field(default=None, description="The flow run that met it.")
    storage: str = Field(description="Where its record is: what `--storage` takes.")
    credentials: str | None = Field(
        default=None, description="The saved credentials block it was sent with, where known.")
    error: str = Field(description="SubmissionUncertain (the answer was lost just now), "
                                   "SubmissionInDoubt or LedgerRecordUnreadable.")

    @classmethod
    def of(cls, error: SubmissionUncertain, prepared: Any, credentials: Any, storage: Any,
           *, name: str | None = None, flow_run_id: str | None = None) -> Doubt:
        """The doubt ``error`` says ``prepared`` is in, sent with ``credentials`` by a run
        whose ``storage`` holds the ledger."""
        reference = prepared.fingerprint[:16]
        sent_at: datetime | None = _utc_now()
        sent_by = flow_run_id
        if isinstance(error, SubmissionInDoubt):  # an earlier run's
            sent_at, sent_by = error.intent.created_at, error.intent.flow_run_id
        elif isinstance(error, LedgerRecordUnreadable):  # its record says nothing
            reference, sent_at, sent_by = scope_id(error.scope)[:16], None, None
        return cls(
            fingerprint=prepared.fingerprint, reference=reference,
            provider=credentials.provider_name, model=prepared.model, kind=prepared.kind,
            name=name, sent_at=sent_at, sent_by_flow_run=sent_by, flow_run_id=flow_run_id,
            storage=ledger_of(storage).backend.storage, credentials=credentials.saved_name(),
            error=type(error).__name__,
        )

    @property
    def adopt_command(self) -> str | None:
        """Adopt the job the provider's dashboard shows (None for a record that cannot be
        read: it can only be cleared)."""
        if self.error == LedgerRecordUnreadable.__name__:
            return None
        block = f" --credentials {shlex.quote(self.credentials)}" if self.credentials else ""
        return (f"prefect-runway ledger resolve {self.reference} --job JOB_ID --storage "
                f"{shlex.quote(self.storage)}{block}")

    @property
    def clear_command(self) -> str:
        """Clear the doubt: the next run submits again (a new, billed job)."""
        return f"prefect-runway ledger resolve {self.reference} --storage {shlex.quote(self.storage)}"


def doubts_markdown(doubts: Sequence[Doubt]) -> str:
    """The submissions in doubt a run met, each with the two commands that settle it."""
    lines = [
        f"## Submissions in doubt: {len(doubts)}", "",
        "Each was sent and its answer was lost: it may exist and be billed. Check the "
        "provider's dashboard, then adopt the job it shows (the next run continues with it "
        "and pays nothing), or clear the doubt (the next run submits again: a new, billed "
        "job).", "",
    ]
    for d in doubts:
        step = {"image": "still", "video": "video"}.get(d.kind or "", d.kind or "job")
        when = f", sent {d.sent_at:%Y-%m-%d %H:%M:%S}Z" if d.sent_at else ""
        by = f" by flow run {_code(d.sent_by_flow_run)}" if d.sent_by_flow_run else ""
        shot = f"{_code(d.name)}: " if d.name else ""
        lines.append(f"- {shot}the {step} on {d.provider} {d.model}, fingerprint "
                     f"{_code(d.reference)}{when}{by} ({d.error})")
        if d.adopt_command:
            lines.append(f"  - adopt the job the dashboard shows: {_code(d.adopt_command)}")
        lines.append(f"  - or clear it: {_code(d.clear_command)}")
    return "\n".join(lines)


def _code(text: str) -> str:
    return "`" + text.replace("`", "'") + "`"


# ---- for the CLI -----------------------------------------------------------------------------


def _fmt_time(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def format_ledger(records: Iterable[LedgerRecord | LedgerRecordUnreadable | Mapping[str, Any]]) -> str:
    """A plain-text table of ledger records for ``prefect-runway ledger ls``.

    Columns: fingerprint (first 16; of a record that cannot be read, its scope's own part:
    :func:`scope_id`), state (``doubt`` for an intent without a job,
    ``unreadable`` for a record that cannot be read), provider, model, job id, time (UTC,
    of the intent), flow run.
    """
    header = ("FINGERPRINT", "STATE", "PROVIDER", "MODEL", "JOB ID", "TIME (UTC)", "FLOW RUN")
    rows: list[tuple[str, ...]] = []
    for item in records:
        if isinstance(item, Mapping):
            item = LedgerRecord.model_validate(item)
        if isinstance(item, LedgerRecordUnreadable):
            rows.append((scope_id(item.scope)[:16], "unreadable", "-", "-", "-", "-",
                         item.reason[:40]))
            continue
        state = "doubt" if item.state == "intent" else item.state
        rows.append((
            item.fingerprint[:16], state, item.provider, item.model, item.job_id or "-",
            _fmt_time(item.created_at), item.flow_run_id or "-",
        ))
    if not rows:
        return "No submissions recorded."
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip()
             for r in (header, *rows)]
    return "\n".join(lines)
