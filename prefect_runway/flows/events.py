"""The Prefect events this package emits for automations: a generation charged, a submission
in doubt. Emitting one never fails a run."""

from __future__ import annotations

import logging
from typing import Any

from prefect_runway.flows.doubts import Doubt
from prefect_runway.models import GenerationResult
from prefect_runway.money.costs import Cost

__all__ = ["CHARGED_EVENT", "DOUBT_EVENT", "emit_charged", "emit_doubt", "emit_quietly",
           "runway_resource"]

#: The Prefect event emitted once per finished generation.
CHARGED_EVENT = "prefect-runway.generation.charged"


def runway_resource(kind: str, ident: str, provider: str, model: str,
                    **labels: str) -> dict[str, str]:
    """The resource of one of this package's Prefect events: ``prefect-runway.<kind>.<ident>``,
    named ``<provider> <model> <ident>``, its provider and model (and ``labels``) as
    ``prefect-runway.*`` labels an automation can match."""
    return {
        "prefect.resource.id": f"prefect-runway.{kind}.{ident}",
        "prefect.resource.name": f"{provider} {model} {ident}",
        "prefect-runway.provider": provider,
        "prefect-runway.model": model,
        **{f"prefect-runway.{name}": value for name, value in labels.items()},
    }


def emit_quietly(event: str, resource: dict[str, str], payload: dict[str, Any],
                 related: list[dict[str, str]] | None = None) -> None:
    """Emit a Prefect event for automations; never raises (an event never fails a run)."""
    try:
        from prefect.events import emit_event

        emit_event(event=event, resource=resource, payload=payload, related=related)
    except Exception:  # noqa: BLE001 - an event is for automations; the run goes on
        logging.getLogger(__name__).debug("Could not emit %s", event, exc_info=True)


#: The Prefect event of a submission in doubt (one per doubt a run meets), for automations.
DOUBT_EVENT = "prefect-runway.submission.in-doubt"


def emit_doubt(doubt: Doubt) -> None:
    """Emit :data:`DOUBT_EVENT` for ``doubt``: the submission
    as the resource (provider, model, fingerprint), the flow run that met it as a related
    resource, the doubt and both commands as the payload. No secret is in any of them."""
    related = [{"prefect.resource.id": f"prefect.flow-run.{doubt.flow_run_id}",
                "prefect.resource.role": "flow-run"}] if doubt.flow_run_id else []
    emit_quietly(
        DOUBT_EVENT,
        runway_resource("submission", doubt.fingerprint, doubt.provider, doubt.model,
                        fingerprint=doubt.fingerprint),
        {**doubt.model_dump(mode="json"), "adopt_command": doubt.adopt_command,
         "clear_command": doubt.clear_command},
        related,
    )


async def emit_charged(result: GenerationResult, cost: Cost | None) -> None:
    """Emit ``prefect-runway.generation.charged`` for a finished generation (never raises)."""
    g = result.generation
    emit_quietly(CHARGED_EVENT, runway_resource("generation", g.job_id, g.provider, g.model), {
        "amount": None if cost is None else cost.amount,
        "unit": None if cost is None else cost.unit,
        "estimated": None if cost is None else cost.estimated,
        "provider": g.provider,
        "model": g.model,
        "kind": g.kind,
        "job_id": g.job_id,
        "fingerprint": g.fingerprint,
    })
