"""Storing a finished job's outputs: refresh expired URLs, download, verify, preview, sidecar."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from prefect_runway.engine.client import GenerationClient
from prefect_runway.engine.download import DownloadedFile, OnWritten
from prefect_runway.errors import DownloadError
from prefect_runway.models import GenerationResult, StoredOutput
from prefect_runway.providers.wire import redact_url
from prefect_runway.storage.base import OutputStorage
from prefect_runway.storage.keys import output_key, partial_name, preview_key, sidecar_key
from prefect_runway.storage.previews import Preview, make_preview

__all__ = ["Charge", "deliver"]

#: Answers to an output URL that mean "expired or revoked": fetch fresh URLs once.
_EXPIRED = (401, 403, 404, 410)


class Charge(Protocol):
    """What a job cost, as its outputs' sidecars record it (a ``prefect_runway.money.costs.Cost``)."""

    @property
    def amount(self) -> float: ...

    @property
    def unit(self) -> str: ...

    @property
    def estimated(self) -> bool: ...


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
    cost: Charge | None = None,
) -> list[StoredOutput]:
    """Download every output of ``result`` into ``store``, verified, with a sidecar each.

    Args:
        result: The finished job.
        client: An open client for the job's provider (to re-fetch expired output URLs).
        store: The resolved storage.
        key_template: Storage key template (default ``"{kind}-{fingerprint}.{ext}"``).
        name: A name for the ``{name}`` placeholder.
        preview: For videos: ``"gif"``, ``"png"`` or None (checked by
            :func:`prefect_runway.storage.previews.check_preview`).
        flow_run: The flow run id, for ``{flow_run}`` and the sidecar.
        logger: Where progress is logged (default this module's logger).
        cost: What the job cost (charged where reported, else estimated), recorded in each
            output and its sidecar; None: not known.

    Returns:
        One StoredOutput per output.
    """
    log = logger or logging.getLogger(__name__)
    outputs = _Outputs(result, client, log)
    stored: list[StoredOutput] = []
    for index in range(len(result.outputs)):
        stored.append(await _deliver_one(outputs, index, store, key_template, name, preview,
                                         flow_run, cost))
    return stored


class _Outputs:
    """A finished job's output URLs, refreshed from the provider once when one has expired."""

    def __init__(self, result: GenerationResult, client: GenerationClient, log: Any) -> None:
        self.result, self.client, self.log = result, client, log
        self.urls = list(result.outputs)

    async def fetch(
        self, index: int, store: OutputStorage, key: str, on_written: OnWritten | None = None,
    ) -> DownloadedFile:
        """Download output ``index`` (verified) into the storage's staging directory;
        ``on_written`` is told how much of it is on disk as it arrives.

        Raises:
            DownloadError: it cannot be fetched, even from a fresh URL.
        """
        try:
            return await self._download(self.urls[index], store, key, on_written)
        except DownloadError as exc:
            if exc.status_code not in _EXPIRED:
                raise
            # A signed URL past its expiry: ask the provider for fresh ones, once.
            self.log.warning(
                "Output URL %s was refused (http %s); fetching fresh URLs",
                redact_url(self.urls[index]), exc.status_code,
            )
            fresh = await self.client.refresh_outputs(self.result.generation)
            if len(fresh.outputs) <= index:
                raise
            self.urls = list(fresh.outputs)
            return await self._download(self.urls[index], store, key, on_written)

    async def _download(
        self, url: str, store: OutputStorage, key: str, on_written: OnWritten | None,
    ) -> DownloadedFile:
        generation = self.result.generation
        return await self.client.download(
            url, store.staging_dir(),
            expected_media=("image/",) if generation.kind == "image" else ("video/",),
            job_id=generation.job_id, partial_name=partial_name(key, url), on_written=on_written,
        )


async def _deliver_one(
    outputs: _Outputs, index: int, store: OutputStorage, key_template: str | None,
    name: str | None, preview: str | None, flow_run: str | None, cost: Charge | None,
) -> StoredOutput:
    """Output ``index``: already stored and verified, or downloaded, previewed and stored."""
    result, log = outputs.result, outputs.log
    generation = result.generation
    default_media = "image/png" if generation.kind == "image" else "video/mp4"
    key_args: dict[str, Any] = dict(
        kind=generation.kind, model=generation.model, provider=generation.provider,
        fingerprint=generation.fingerprint, seed=generation.request.get("seed"),
        name=name, index=index, count=len(outputs.urls), job_id=generation.job_id,
        flow_run=flow_run, date=result.completed_at.strftime("%Y-%m-%d"),
    )
    key = output_key(key_template, media_type=default_media, **key_args)
    existing = await store.verified(key)
    if existing is not None and existing.fingerprint == generation.fingerprint:
        log.info("Already stored and verified: %s", existing.location)
        # Its sidecar was written before its own location was known.
        return existing.model_copy(
            update={"sidecar": existing.sidecar or store.location(sidecar_key(key))}
        )
    # Where the storage can take it, the output is sent while it downloads (S3: its parts).
    streamed = store.streamed(key, default_media, log)
    try:
        downloaded = await outputs.fetch(index, store, key,
                                         streamed.written if streamed else None)
        if downloaded.media_type != default_media:
            key = output_key(key_template, media_type=downloaded.media_type, **key_args)
        made = None
        if preview and downloaded.media_type.startswith("video/"):
            made = await _make_preview(downloaded.path, preview, key, log)
        if streamed is None:
            location = await store.put(downloaded.path, key, downloaded.media_type,
                                       sha256=downloaded.sha256)
        else:
            location = await streamed.land(downloaded.path, key, downloaded.media_type,
                                           downloaded.sha256, downloaded.size)
    finally:
        if streamed is not None:
            await streamed.close()
    previewed = None
    if made is not None:
        previewed = preview_key(key, preview)  # type: ignore[arg-type]
        await store.write_bytes(previewed, made.data)
    output = StoredOutput(
        location=location, key=key, size=downloaded.size, sha256=downloaded.sha256,
        media_type=downloaded.media_type, provider=generation.provider, model=generation.model,
        kind=generation.kind, job_id=generation.job_id, fingerprint=generation.fingerprint,
        source_url=redact_url(downloaded.source_url), request=generation.request,
        metrics=result.metrics,
        cost=None if cost is None else cost.amount,
        cost_unit=None if cost is None else cost.unit,
        cost_estimated=None if cost is None else cost.estimated,
        submitted_at=generation.submitted_at, completed_at=result.completed_at,
        flow_run_id=flow_run, preview_key=previewed,
    )
    output.sidecar = await store.write_sidecar(output)
    log.info(
        "Stored %s (%d bytes, sha256 %s) at %s",
        output.media_type, output.size, output.sha256[:12], output.location,
    )
    return output


async def _make_preview(path: Any, fmt: str, key: str, log: Any) -> Preview | None:
    """A preview of the downloaded video, made in a worker thread; None if it cannot be."""
    try:
        return await asyncio.to_thread(make_preview, path, fmt)  # type: ignore[arg-type]
    except Exception as exc:  # a preview is a convenience: it never fails the download
        log.warning("Could not make a %s preview of %s: %s", fmt, key, exc)
        return None
