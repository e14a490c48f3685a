"""Storing a finished job's outputs: refresh expired URLs, download, verify, preview, sidecar.

Plain code (no Prefect): the tasks in :mod:`prefect_runway.tasks` call :func:`deliver` with
a client, a resolved storage and a logger.

Each output streams to a temporary file while being hashed, is checked (length, media type,
magic bytes), then lands atomically under its key (to S3: a multipart upload from that
file); a JSON sidecar beside it records the request (no secrets), provider, job, timings,
metrics, sha256 and size. A video also gets a small preview beside it
(``<key>.preview.gif`` or ``.preview.png``), named in its sidecar as ``preview_key``. An
output already stored and still matching its sidecar is not downloaded again. A signed
output URL that has expired is refreshed from the provider once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from prefect_runway.costs import charged_cost
from prefect_runway.engine.client import GenerationClient
from prefect_runway.engine.download import DownloadedFile
from prefect_runway.errors import DownloadError
from prefect_runway.models import GenerationResult, StoredOutput
from prefect_runway.previews import Preview, make_preview
from prefect_runway.pricing import PriceTable
from prefect_runway.providers.base import redact_url
from prefect_runway.storage import (
    OutputStorage,
    output_key,
    partial_name,
    preview_key,
    sidecar_key,
)

__all__ = ["deliver"]

#: Answers to an output URL that mean "expired or revoked": fetch fresh URLs once.
_EXPIRED = (401, 403, 404, 410)


async def deliver(
    result: GenerationResult,
    client: GenerationClient,
    store: OutputStorage,
    *,
    key_template: str | None = None,
    name: str | None = None,
    preview: str | None = "gif",
    flow_run: str | None = None,
    logger: Any = None,
    prices: PriceTable | None = None,
) -> list[StoredOutput]:
    """Download every output of ``result`` into ``store``, verified, with a sidecar each.

    Args:
        result: The finished job.
        client: An open client for the job's provider (to re-fetch expired output URLs).
        store: The resolved storage.
        key_template: Storage key template (default ``"{kind}-{fingerprint}.{ext}"``).
        name: A name for the ``{name}`` placeholder.
        preview: For videos: ``"gif"``, ``"png"`` or None (checked by
            :func:`prefect_runway.plan.check_run`).
        flow_run: The flow run id, for ``{flow_run}`` and the sidecar.
        logger: Where progress is logged (default this module's logger).
        prices: The prices an estimated cost comes from (default: the built-in table).

    Returns:
        One StoredOutput per output.
    """
    log = logger or logging.getLogger("prefect_runway.delivery")
    generation = result.generation
    charged = charged_cost(result, prices)  # the cost ledger: charged where reported, else estimated
    expected_media = ("image/",) if generation.kind == "image" else ("video/",)
    default_media = "image/png" if generation.kind == "image" else "video/mp4"
    stored: list[StoredOutput] = []
    outputs = list(result.outputs)
    for index in range(len(outputs)):
        key_args: dict[str, Any] = dict(
            kind=generation.kind, model=generation.model, provider=generation.provider,
            fingerprint=generation.fingerprint, seed=generation.request.get("seed"),
            name=name, index=index, count=len(outputs), job_id=generation.job_id,
            flow_run=flow_run, date=result.completed_at.strftime("%Y-%m-%d"),
        )
        key = output_key(key_template, media_type=default_media, **key_args)
        existing = await store.verified(key)
        if existing is not None and existing.fingerprint == generation.fingerprint:
            log.info("Already stored and verified: %s", existing.location)
            # Its sidecar was written before its own location was known.
            stored.append(existing.model_copy(
                update={"sidecar": existing.sidecar or store.location(sidecar_key(key))}
            ))
            continue

        async def fetch(url: str, key: str = key) -> DownloadedFile:
            return await client.download(
                url, store.staging_dir(), expected_media=expected_media,
                job_id=generation.job_id, partial_name=partial_name(key, url),
            )

        try:
            downloaded = await fetch(outputs[index])
        except DownloadError as exc:
            if exc.status_code not in _EXPIRED:
                raise
            # A signed URL past its expiry: ask the provider for fresh ones, once.
            log.warning(
                "Output URL %s was refused (http %s); fetching fresh URLs",
                redact_url(outputs[index]), exc.status_code,
            )
            fresh = await client.refresh_outputs(generation)
            if len(fresh.outputs) <= index:
                raise
            outputs = list(fresh.outputs)
            downloaded = await fetch(outputs[index])
        if downloaded.media_type != default_media:
            key = output_key(key_template, media_type=downloaded.media_type, **key_args)
        made = None
        if preview and downloaded.media_type.startswith("video/"):
            made = await _make_preview(downloaded.path, preview, key, log)
        location = await store.put(downloaded.path, key, downloaded.media_type, sha256=downloaded.sha256)
        previewed = None
        if made is not None:
            previewed = preview_key(key, preview)  # type: ignore[arg-type]
            await store.write_bytes(previewed, made.data)
        output = StoredOutput(
            location=location,
            key=key,
            size=downloaded.size,
            sha256=downloaded.sha256,
            media_type=downloaded.media_type,
            provider=generation.provider,
            model=generation.model,
            kind=generation.kind,
            job_id=generation.job_id,
            fingerprint=generation.fingerprint,
            source_url=redact_url(downloaded.source_url),
            request=generation.request,
            metrics=result.metrics,
            cost=None if charged is None else charged.amount,
            cost_unit=None if charged is None else charged.unit,
            cost_estimated=None if charged is None else charged.estimated,
            submitted_at=generation.submitted_at,
            completed_at=result.completed_at,
            flow_run_id=flow_run,
            preview_key=previewed,
        )
        output.sidecar = await store.write_sidecar(output)
        log.info(
            "Stored %s (%d bytes, sha256 %s) at %s",
            output.media_type, output.size, output.sha256[:12], output.location,
        )
        stored.append(output)
    return stored


async def _make_preview(path: Any, fmt: str, key: str, log: Any) -> Preview | None:
    """A preview of the downloaded video, made in a worker thread; None if it cannot be."""
    try:
        return await asyncio.to_thread(make_preview, path, fmt)  # type: ignore[arg-type]
    except Exception as exc:  # a preview is a convenience: it never fails the download
        log.warning("Could not make a %s preview of %s: %s", fmt, key, exc)
        return None
