"""The submission ledger's records: an intent before the paid POST, a job after, cleared
when provably no job was made or a person settled it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from prefect_runway.errors import LedgerError, LedgerRecordUnreadable
from prefect_runway.models import Generation

__all__ = [
    "RECORD_VERSION", "SCOPE_PREFIX", "ClearedRecord", "Intent", "IntentMeta", "JobRecord",
    "LedgerRecord", "parse_record", "scope_for", "scope_id",
]

#: What every submission scope starts with (``submission_cache_key``); the rest tells them apart.
SCOPE_PREFIX = "prefect-runway-submit-"
#: Bumped when the record layout changes incompatibly.
RECORD_VERSION = 1

State = Literal["intent", "job", "cleared"]


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


def scope_for(fingerprint: str, base_url: str) -> str:
    """The submission scope of a request at an API: its fingerprint and the base URL it goes
    to (``submission_cache_key``, also the submit task's cache key); no secret."""
    return SCOPE_PREFIX + hashlib.sha256(f"{fingerprint}|{base_url}".encode()).hexdigest()[:40]


def scope_id(scope: str) -> str:
    """The part of a submission scope that tells it apart from the others (what ``ledger ls``
    shows of a record it cannot read, and what ``ledger resolve`` takes for it)."""
    return scope.removeprefix(SCOPE_PREFIX)
