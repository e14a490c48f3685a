"""Submissions in doubt a run met, each with the two commands that settle it."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from prefect_runway.errors import LedgerRecordUnreadable, SubmissionInDoubt, SubmissionUncertain
from prefect_runway.flows.markdown import code
from prefect_runway.models import utc_now
from prefect_runway.tasks.ledger import ledger_of
from prefect_runway.tasks.ledger_records import scope_id

__all__ = ["Doubt", "doubts_markdown"]


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
        sent_at: datetime | None = utc_now()
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
        by = f" by flow run {code(d.sent_by_flow_run)}" if d.sent_by_flow_run else ""
        shot = f"{code(d.name)}: " if d.name else ""
        lines.append(f"- {shot}the {step} on {d.provider} {d.model}, fingerprint "
                     f"{code(d.reference)}{when}{by} ({d.error})")
        if d.adopt_command:
            lines.append(f"  - adopt the job the dashboard shows: {code(d.adopt_command)}")
        lines.append(f"  - or clear it: {code(d.clear_command)}")
    return "\n".join(lines)
