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
import os
import socket
import uuid
from datetime import datetime, timezone
from typing import Any

from prefect_runway.errors import (
    InvalidRequest,
    LedgerAmbiguous,
    LedgerError,
    LedgerNotFound,
    LedgerRecordUnreadable,
    SubmissionInDoubt,
)
from prefect_runway.models import Generation, utc_now
from prefect_runway.providers.wire import api_origin
from prefect_runway.storage.records import RecordBackend, check_scope, ledger_backend
from prefect_runway.tasks.ledger_records import (
    ClearedRecord,
    Intent,
    IntentMeta,
    JobRecord,
    LedgerRecord,
    parse_record,
    scope_for,
    scope_id,
)

__all__ = ["SubmissionLedger", "ledger_for", "ledger_of"]



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
    return (utc_now() - since).total_seconds() > max_age


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
            api_origin=api_origin(meta.base_url), model=meta.model, created_at=utc_now(),
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
            job_recorded_at=utc_now(), adopted_by=adopted_by,
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
            cleared_reason=reason, cleared_by=by or _who(), cleared_at=utc_now(),
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
                    api_origin="unknown://", model="unknown", created_at=utc_now(),
                    attempt_id=uuid.uuid4().hex, host=socket.gethostname(), pid=os.getpid(),
                    cleared_reason=f"unreadable record resolved by the user ({item.reason})",
                    cleared_by=by or _who(), cleared_at=utc_now(),
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
