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
import hashlib
import json
import os
import shlex
import socket
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from prefect_runway.errors import (
    InvalidRequest,
    LedgerAmbiguous,
    LedgerError,
    LedgerNotFound,
    LedgerRecordUnreadable,
    SubmissionInDoubt,
    SubmissionUncertain,
)
from prefect_runway.models import Generation
from prefect_runway.providers.wire import api_origin
from prefect_runway.storage.records import RecordBackend, check_scope, ledger_backend

__all__ = [
    "Doubt", "Intent", "IntentMeta", "JobRecord", "LedgerRecord", "SubmissionLedger",
    "doubts_markdown", "format_ledger", "ledger_for", "ledger_of", "scope_for", "scope_id",
]

#: What every submission scope starts with (``submission_cache_key``); the rest tells them apart.
SCOPE_PREFIX = "prefect-runway-submit-"
#: Bumped when the record layout changes incompatibly.
RECORD_VERSION = 1

State = Literal["intent", "job", "cleared"]


# ---- records ---------------------------------------------------------------------------------


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


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


def scope_for(fingerprint: str, base_url: str) -> str:
    """The submission scope of a request at an API: its fingerprint and the base URL it goes
    to (``submission_cache_key``, also the submit task's cache key); no secret."""
    return SCOPE_PREFIX + hashlib.sha256(f"{fingerprint}|{base_url}".encode()).hexdigest()[:40]


def scope_id(scope: str) -> str:
    """The part of a submission scope that tells it apart from the others (what ``ledger ls``
    shows of a record it cannot read, and what ``ledger resolve`` takes for it)."""
    return scope.removeprefix(SCOPE_PREFIX)


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

    def __init__(self, backend: RecordBackend) -> None:
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
        check_scope(scope)
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


def ledger_for(storage: Any = None) -> SubmissionLedger:
    """The ledger that lives with ``storage``'s results (where: see
    :func:`prefect_runway.storage.records.ledger_backend`).

    Raises:
        InvalidRequest: ``storage`` is of a kind the ledger cannot live in.
    """
    if isinstance(storage, SubmissionLedger):
        return storage
    return SubmissionLedger(ledger_backend(storage))


def ledger_of(storage: Any = None) -> SubmissionLedger:
    """The submission ledger that lives with a run's ``storage`` (see :func:`ledger_for`).

    A local directory keeps it in ``<dir>/prefect-runway-ledger``, S3 in the bucket under
    ``<prefix>/prefect-runway-ledger``; a storage the ledger cannot live in (a generic
    filesystem block) and None keep it beside Prefect's local results.
    """
    if isinstance(storage, SubmissionLedger):
        return storage
    return SubmissionLedger(ledger_backend(storage, fallback=True))



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
