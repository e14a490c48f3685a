"""What a flow run leaves for a person to look at in the Prefect UI.

- each still as an **image** artifact (:func:`publish_still`);
- each video's preview (GIF or contact sheet, stored beside it) as an **image** artifact, or a
  markdown link where the storage cannot give the UI a URL (:func:`publish_video_preview`);
- a **table** per flow run listing every output with its link, provider, seconds and cost
  (:func:`publish_outputs`);
- for batches, a **progress** artifact updated as jobs finish (:class:`BatchProgress`).

Links to S3 objects are presigned ``GET`` URLs (7 days by default); nothing here holds a key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from prefect.artifacts import (
    acreate_image_artifact,
    acreate_markdown_artifact,
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)

from prefect_runway.models import StoredOutput
from prefect_runway.providers.base import redact_url


def _artifact_key(text: str) -> str:
    # Artifact keys: lowercase letters, digits and dashes only.
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:60]


async def publish_still(
    still: StoredOutput, image_url: str | None, name: str | None = None
) -> UUID | None:
    """The still as an image artifact (where there is a URL the UI can show).

    Returns:
        The artifact's id, or None when there was no http(s) URL to show.
    """
    if image_url and image_url.startswith(("http://", "https://")):
        return await acreate_image_artifact(
            image_url=image_url,
            key=_artifact_key(f"still-{name or still.fingerprint[:12]}"),
            description=f"{still.provider} {still.model} still, job {still.job_id}",
        )
    return None


async def publish_video_preview(
    video: StoredOutput,
    preview_url: str | None,
    name: str | None = None,
    preview_location: str | None = None,
) -> UUID | None:
    """A video's preview (GIF or contact sheet) as an image artifact.

    Args:
        video: The stored video; its sidecar names the preview (``preview_key``).
        preview_url: An http(s) URL of the preview (a presigned S3 URL), if there is one.
        name: Used in the artifact key (default: the video's fingerprint).
        preview_location: Where the preview is (a local path), linked in a markdown
            artifact when there is no URL the UI could load.

    Returns:
        The artifact's id, or None when the video has no preview.
    """
    key = _artifact_key(f"preview-{name or video.fingerprint[:12]}")
    description = (
        f"{video.provider} {video.model} video, job {video.job_id}: "
        f"{'animated GIF' if (video.preview_key or '').endswith('.gif') else 'contact sheet'}"
    )
    if preview_url and preview_url.startswith(("http://", "https://")):
        return await acreate_image_artifact(image_url=preview_url, key=key, description=description)
    if preview_location:
        link = preview_location if "://" in preview_location else f"file://{preview_location}"
        return await acreate_markdown_artifact(
            markdown=f"# Preview of `{video.key}`\n\n[{video.preview_key}]({link})\n",
            key=key, description=description,
        )
    return None


def output_rows(
    outputs: Sequence[StoredOutput], links: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """One table row per output: link, provider, model, job, seconds, cost, size, sha256.

    ``links`` maps an output's key to a URL a person can open (a presigned S3 URL); without
    one the row links the output's location.
    """
    links = links or {}
    rows = []
    for o in outputs:
        seconds = (
            round((o.completed_at - o.submitted_at).total_seconds(), 1)
            if o.completed_at and o.submitted_at else None
        )
        location = o.location if "://" in o.location else f"file://{o.location}"
        rows.append({
            "kind": o.kind,
            "output": o.key,
            "link": links.get(o.key) or location,
            "location": o.location,
            "provider": o.provider,
            "model": o.model,
            "job": o.job_id,
            "seconds": seconds,
            "cost": o.cost,
            "bytes": o.size,
            "sha256": o.sha256[:16],
            "preview": o.preview_key or "",
            "source": redact_url(o.source_url),
        })
    return rows


async def publish_outputs(
    outputs: Sequence[StoredOutput], title: str, links: Mapping[str, str] | None = None
) -> UUID:
    """A markdown artifact linking every stored output, and a table artifact listing each
    with its link and provenance.

    Args:
        outputs: The flow run's stored outputs.
        title: Says what the run made (e.g. ``"image-to-video"``); also names the key.
        links: Output key -> URL to open it (presigned S3 URLs), where there is one.

    Returns:
        The artifact's id.
    """
    rows = output_rows(outputs, links)
    lines = [f"# {title}", ""]
    for row in rows:
        lines.append(
            f"- **{row['kind']}** [{row['output']}]({row['link']}) — {row['provider']} "
            f"{row['model']}, job `{row['job']}`, {row['bytes']} bytes, sha256 `{row['sha256']}`"
        )
    await acreate_markdown_artifact(
        markdown="\n".join(lines), key=_artifact_key(f"links-{title}"),
        description=f"{title}: links to the outputs",
    )
    return await acreate_table_artifact(
        table=rows,
        key=_artifact_key(f"outputs-{title}"),
        description=f"{title}: {len(outputs)} output(s)",
    )


class BatchProgress:
    """A progress artifact for a batch of jobs, advanced as each one finishes.

    Safe to advance from concurrent tasks of one flow run (updates are coalesced).

    Args:
        total: How many jobs the batch has.
        key: Artifact key (lowercase letters, digits, dashes); default ``"batch-progress"``.
        description: What the batch is; the counts are appended to it.

    Example:
        ```python
        import asyncio
        from prefect import flow
        from prefect_runway import SegmindCredentials, image_to_video
        from prefect_runway.artifacts import BatchProgress

        @flow
        async def storyboard(prompts: list[str]):
            credentials = await SegmindCredentials.load("BLOCK_NAME")
            progress = BatchProgress(len(prompts), description="storyboard")
            await progress.start()

            async def one(prompt):
                try:
                    result = await image_to_video(prompt, "slow pan", credentials=credentials,
                        reference_images=[{"uri": "https://example.com/r.png", "tag": "ref"}])
                except Exception:
                    await progress.advance(failed=True)
                    raise
                await progress.advance()
                return result

            return await asyncio.gather(*(one(p) for p in prompts), return_exceptions=True)
        ```
    """

    def __init__(self, total: int, *, key: str | None = "batch-progress",
                 description: str | None = None) -> None:
        if total < 0:
            raise ValueError("total must be >= 0")
        self.total = total
        self.key = _artifact_key(key) if key else None
        self.description = description
        self.done = 0
        self.failed = 0
        self.artifact_id: UUID | None = None
        self._lock = asyncio.Lock()
        self._publishing = False
        self._stale = False

    @property
    def percent(self) -> float:
        """Finished (done or failed) jobs as a percentage of ``total``."""
        if self.total == 0:
            return 100.0
        return min(100.0, 100.0 * (self.done + self.failed) / self.total)

    def summary(self) -> str:
        counts = f"{self.done + self.failed} of {self.total} finished"
        if self.failed:
            counts += f" ({self.failed} failed)"
        return f"{self.description}: {counts}" if self.description else counts

    async def start(self) -> UUID:
        """Create the artifact at its current progress (once); returns its id."""
        async with self._lock:
            if self.artifact_id is None:
                self.artifact_id = await acreate_progress_artifact(
                    progress=self.percent, key=self.key, description=self.summary(),
                )
            return self.artifact_id

    async def advance(self, count: int = 1, *, failed: bool = False) -> float:
        """Count ``count`` more jobs as finished (or failed) and update the artifact.

        Updates are coalesced: while one is on its way to the API, further advances only
        count, and the update in flight is followed by one more with the latest counts. A
        batch of N jobs finishing together then costs a few API calls, not N in a row (each
        waiting for the one before). Once every advance has returned, the artifact shows the
        final counts.

        Returns:
            The new percentage.
        """
        if self.artifact_id is None:
            await self.start()
        if failed:
            self.failed += count
        else:
            self.done += count
        percent = self.percent
        if self._publishing:
            self._stale = True  # the update in flight is followed by one with these counts
            return percent
        self._publishing = True
        try:
            self._stale = True
            while self._stale:
                self._stale = False
                assert self.artifact_id is not None
                await aupdate_progress_artifact(
                    self.artifact_id, progress=self.percent, description=self.summary(),
                )
        finally:
            self._publishing = False
        return percent

    async def __aenter__(self) -> BatchProgress:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


#: The key of the storyboard summary artifact (its history across runs shows in the UI).
SUMMARY_ARTIFACT_KEY = "storyboard-summary"


async def publish_summary(summary: Any) -> None:
    """The summary as a markdown artifact, keyed so the UI shows its history across runs."""
    await acreate_markdown_artifact(
        markdown=summary.markdown(),
        key=SUMMARY_ARTIFACT_KEY,
        description=summary.describe(limit=3),
    )
