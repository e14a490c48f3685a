"""Cancelling a flow run cancels its remote jobs, so they stop billing.

When a flow run is cancelled, Prefect's worker or runner stops the flow's process and runs
the flow's ``on_cancellation`` hooks — usually in *another* process. So the hook finds the
jobs through the Prefect API: the persisted results of the run's ``submit-generation`` task
runs (and those of its subflow runs) are the submitted :class:`Generation` objects. Each job
that is not yet finished is cancelled where the provider can cancel (Runway's
``DELETE /v1/tasks/{id}``); where it cannot (Segmind, AIMLAPI), the log says so.

The credentials come from the flow run's parameters: a saved block's name
(``"runway-credentials/nightly"``) or reference. Jobs submitted by a flow running in this same
process are also known from memory, so an in-process cancellation finds their blocks even
when they were passed as objects.
"""

from __future__ import annotations

import logging
import threading
from typing import Any
from uuid import UUID

from prefect_runway.blocks.credentials import ProviderCredentials
from prefect_runway.models import Generation
from prefect_runway.tasks.cache_records import submitted_generation

logger = logging.getLogger("prefect_runway.cancellation")

_CREDENTIAL_PARAMETERS = ("credentials", "image_credentials", "video_credentials")
_active: dict[str, dict[str, tuple[ProviderCredentials, Generation]]] = {}
_lock = threading.Lock()


def track(flow_run_id: str | None, credentials: ProviderCredentials, generation: Generation) -> None:
    """Remember an unfinished job of a flow run (in this process)."""
    if flow_run_id:
        with _lock:
            _active.setdefault(flow_run_id, {})[generation.job_id] = (credentials, generation)


def untrack(flow_run_id: str | None, generation: Generation) -> None:
    """Forget a job once it is finished and stored."""
    if flow_run_id:
        with _lock:
            _active.get(flow_run_id, {}).pop(generation.job_id, None)


async def cancel_remote_jobs(flow: Any, flow_run: Any, state: Any) -> None:
    """A flow ``on_cancellation`` hook: cancel every unfinished remote job of the run."""
    run_logger = _hook_logger(flow_run)
    jobs: dict[str, tuple[ProviderCredentials | None, Generation]] = dict(
        _active.pop(str(flow_run.id), {})
    )
    try:
        for generation in await _submitted_generations(flow_run.id):
            jobs.setdefault(generation.job_id, (None, generation))
    except Exception as exc:  # the API may be unreachable; cancel what we know
        run_logger.warning("Could not list the run's submitted jobs: %s", type(exc).__name__)
    if not jobs:
        run_logger.info("No remote jobs to cancel")
        return
    blocks = await _parameter_credentials(flow_run)
    for own, generation in jobs.values():
        await _cancel_one(own or _matching(blocks, generation), generation, run_logger)


async def _cancel_one(
    credentials: ProviderCredentials | None, generation: Generation, run_logger: Any
) -> None:
    if credentials is None:
        run_logger.warning(
            "Cannot cancel %s job %s: no credentials block for it in the run's parameters "
            "(pass a saved block's name to let cancellation find it)",
            generation.provider, generation.job_id,
        )
        return
    if not credentials.provider().can_cancel:
        run_logger.warning(
            "%s cannot cancel jobs: job %s keeps running remotely and may be billed",
            generation.provider, generation.job_id,
        )
        return
    try:
        async with credentials.get_client() as client:
            status = await client.status(generation)
            if status.state.terminal:
                run_logger.info("%s job %s had already finished", generation.provider, generation.job_id)
                return
            await client.cancel(generation)
        run_logger.info("Cancelled %s job %s", generation.provider, generation.job_id)
    except Exception as exc:
        run_logger.warning(
            "Could not cancel %s job %s: %s", generation.provider, generation.job_id, exc,
        )


async def _submitted_generations(flow_run_id: UUID) -> list[Generation]:
    """The Generations that the run (and its subflow runs) submitted, from the API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterParentFlowRunId,
        TaskRunFilter,
        TaskRunFilterName,
    )

    found: list[Generation] = []
    async with get_client() as client:
        run_ids = [flow_run_id]
        frontier = [flow_run_id]
        while frontier:  # the run and its subflow runs, any depth
            children = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=frontier))
            )
            frontier = [c.id for c in children if c.id not in run_ids]
            run_ids += frontier
        task_runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=run_ids)),
            # "submit still 'harbour' on segmind" (and "submit-generation-86a" of older
            # releases); what is not our record of a Generation is skipped below.
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="submit")),
        )
        for task_run in task_runs:
            if task_run.state is None or not task_run.state.is_completed():
                continue
            # Read as our JSON record only: state.aresult() would decode whatever the
            # stored record names (a pickle planted in the result storage included).
            value = await submitted_generation(task_run.state)
            if value is not None:
                found.append(value)
    return found


async def _parameter_credentials(flow_run: Any) -> list[ProviderCredentials]:
    from prefect.blocks.core import Block

    blocks: list[ProviderCredentials] = []
    parameters = getattr(flow_run, "parameters", None) or {}
    for name in _CREDENTIAL_PARAMETERS:
        value = parameters.get(name)
        block: Any = None
        try:
            if isinstance(value, ProviderCredentials):
                block = value
            elif isinstance(value, str) and "/" in value:
                block = await Block.aload(value)
            elif isinstance(value, dict):
                ref = value["$ref"] if isinstance(value.get("$ref"), dict) else value
                doc_id = ref.get("block_document_id")
                if doc_id:
                    from prefect.client.orchestration import get_client

                    async with get_client() as client:
                        document = await client.read_block_document(UUID(str(doc_id)))
                    block = Block._from_block_document(document)
        except Exception:
            block = None
        if isinstance(block, ProviderCredentials):
            blocks.append(block)
    return blocks


def _matching(
    blocks: list[ProviderCredentials], generation: Generation
) -> ProviderCredentials | None:
    for block in blocks:
        if block.provider_name == generation.provider and block.resolved_base_url() == generation.base_url:
            return block
    for block in blocks:
        if block.provider_name == generation.provider:
            return block
    return None


def _hook_logger(flow_run: Any) -> Any:
    try:
        from prefect.logging import get_run_logger

        return get_run_logger()
    except Exception:
        try:
            from prefect.logging.loggers import flow_run_logger

            return flow_run_logger(flow_run)
        except Exception:
            return logger
