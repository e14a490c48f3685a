"""What a flow run leaves for a person to look at in the Prefect UI.

- a **summary** per flow run, the artifact to look at first (:func:`publish_outputs`): the
  still and the video's preview as pictures, and a table of every output (shot, kind,
  provider/model, seconds, cost, size, link);
- the same outputs as a **table** artifact, the columns a person reads first on the left;
- each still (:func:`publish_still`) and each video's preview, a GIF or contact sheet stored
  beside it (:func:`publish_video_preview`), keyed so the UI shows their history across runs;
- for batches, a **progress** artifact updated as jobs finish (:class:`BatchProgress`);
- a run's **submissions in doubt**, each with the commands that settle it
  (:func:`publish_doubts`; a storyboard's are in its summary).

Every picture renders wherever the outputs are: it is **inlined** as a small ``data:`` URI
(a JPEG thumbnail, or the GIF preview itself) inside a markdown artifact, which the Prefect
UI renders, so it shows after the run and holds no URL to the output; only a picture too
large to read for a thumbnail is shown by its link. Links to open an output (S3: presigned
``GET`` URLs) live as long as the storage says (``S3Storage.link_seconds``, one day by
default). Never a provider's temporary URL, never a ``file://`` link (browsers do not open
them from a web page). Nothing here holds a key.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import io
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar
from uuid import UUID

from PIL import Image
from prefect.artifacts import (
    acreate_image_artifact,
    acreate_markdown_artifact,
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger

from prefect_runway.ledger import Doubt, doubts_markdown
from prefect_runway.models import StoredOutput
from prefect_runway.names import slug
from prefect_runway.providers.base import redact_url
from prefect_runway.storage import OutputStorage

P = ParamSpec("P")
R = TypeVar("R")

#: A GIF preview up to this size is inlined as it is (animated); anything else becomes a JPEG
#: thumbnail of at most THUMBNAIL_WIDTH pixels.
INLINE_GIF_BYTES = 600_000
THUMBNAIL_WIDTH = 480
#: A stored picture up to this size is read to inline it (as a thumbnail); a larger one is
#: shown by its link, where the storage makes links.
INLINE_SOURCE_BYTES = 32 * 1024 * 1024


def _never_fails(publish: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R | None]]:
    """A publishing step that never fails the run it reports on: the outputs are stored
    before anything is published, so what it raises is logged as a warning (the run's
    logger, else this module's) and it returns None."""

    @functools.wraps(publish)
    async def published(*args: P.args, **kwargs: P.kwargs) -> R | None:
        try:
            return await publish(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - an artifact is for people; the output is kept
            try:
                logger: Any = get_run_logger()
            except MissingContextError:
                logger = logging.getLogger(__name__)
            logger.warning("Could not publish an artifact (%s: %s: %s); the outputs are stored",
                           publish.__name__, type(exc).__name__, exc)
            return None

    return published


def _artifact_key(text: str) -> str:
    # Artifact keys: lowercase ASCII letters, digits and dashes only ("still-café": "still-cafe").
    return slug(text, allowed="a-z0-9-", lower=True, max_length=60, collapse=False)


def inline_image(data: bytes, media_type: str) -> str:
    """A ``data:`` URI of a picture small enough to live inside an artifact.

    A GIF of at most :data:`INLINE_GIF_BYTES` stays as it is (it keeps its animation); any
    other picture becomes a JPEG thumbnail at most :data:`THUMBNAIL_WIDTH` pixels wide.
    """
    if media_type == "image/gif" and len(data) <= INLINE_GIF_BYTES:
        return "data:image/gif;base64," + base64.b64encode(data).decode()
    with Image.open(io.BytesIO(data)) as image:
        image.seek(0)
        thumb = image.convert("RGB")
        thumb.thumbnail((THUMBNAIL_WIDTH, THUMBNAIL_WIDTH * 4))
        out = io.BytesIO()
        thumb.save(out, "JPEG", quality=80, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode()


async def picture(
    store: OutputStorage, key: str, media_type: str, size: int | None = None,
) -> tuple[str, bool] | None:
    """What an artifact shows for a stored picture: ``(data URI, False)``, a thumbnail
    inlined, for a picture of at most :data:`INLINE_SOURCE_BYTES` (``size``; None: a
    preview, which is small); else ``(link, True)`` where the storage makes links; None when
    it can be neither read nor linked."""
    if size is None or size <= INLINE_SOURCE_BYTES:
        data = await store.read_bytes(key)
        if data is not None:
            return await asyncio.to_thread(inline_image, data, media_type), False
    url = await store.link(key)
    return (url, True) if url else None


def _preview_media_type(preview_key: str) -> str:
    return "image/gif" if preview_key.endswith(".gif") else "image/png"


@_never_fails
async def publish_still(
    still: StoredOutput, store: OutputStorage, name: str | None = None
) -> UUID | None:
    """The still as an artifact: an image artifact of its presigned URL, or, where the storage
    has no URLs, a markdown artifact with the picture inlined.

    Returns:
        The artifact's id, or None when the stored still cannot be read (or the artifact
        not published: logged as a warning).
    """
    shown = await picture(store, still.key, still.media_type, still.size)
    if shown is None:
        return None
    src, is_url = shown
    key = _artifact_key(f"still-{name or still.fingerprint[:12]}")
    description = f"{still.provider} {still.model} still{_named(name)}, job {still.job_id}"
    if is_url:
        return await acreate_image_artifact(image_url=src, key=key, description=description)
    link = await store.link(still.key)
    opened = f" ([open]({link}))" if link else ""
    return await acreate_markdown_artifact(
        markdown=f"![{_md(still.key)}]({src})\n\n{_code(still.key)}{opened}\n", key=key,
        description=description,
    )


@_never_fails
async def publish_video_preview(
    video: StoredOutput, store: OutputStorage, name: str | None = None
) -> UUID | None:
    """A video's preview (GIF or contact sheet, named in its sidecar) as an artifact: an image
    artifact of its presigned URL, or a markdown artifact with the preview inlined.

    Returns:
        The artifact's id, or None when the video has no preview (or the artifact could not
        be published: logged as a warning).
    """
    if not video.preview_key:
        return None
    shown = await picture(store, video.preview_key, _preview_media_type(video.preview_key))
    if shown is None:
        return None
    src, is_url = shown
    key = _artifact_key(f"preview-{name or video.fingerprint[:12]}")
    description = (
        f"{video.provider} {video.model} video{_named(name)}, job {video.job_id}: "
        f"{'animated GIF' if video.preview_key.endswith('.gif') else 'contact sheet'}"
    )
    if is_url:
        return await acreate_image_artifact(image_url=src, key=key, description=description)
    link = await store.link(video.key)
    opened = f" ([open]({link}))" if link else ""
    return await acreate_markdown_artifact(
        markdown=f"# Preview of {_code(video.key)}{opened}\n\n![{_md(video.preview_key)}]({src})\n",
        key=key, description=description,
    )


def _named(name: str | None) -> str:
    """A name as it was given, for a description (the key holds its slug)."""
    return f" {name!r}" if name else ""


def _md(text: Any) -> str:
    """A value safe inside a markdown table cell or link text."""
    return str(text).replace("|", "\\|").replace("\n", " ").replace("[", "\\[").replace("]", "\\]")


def _code(text: Any) -> str:
    """A value as inline code (backticks inside it become quotes)."""
    return "`" + str(text).replace("`", "'") + "`"


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover


def output_rows(
    outputs: Sequence[StoredOutput],
    links: Mapping[str, str] | None = None,
    shot: str | None = None,
) -> list[dict[str, Any]]:
    """One table row per output, the columns a person reads first on the left: shot, kind,
    provider/model, seconds, cost, size, link; then location, job, bytes, sha256, preview,
    source, and the cost's unit and whether it is an estimate (see
    :func:`prefect_runway.costs.charged_cost`).

    ``links`` maps an output's key to a URL a person can open (a presigned S3 URL); the link
    is then the short text ``[open](URL)``. Without one it is the output's key: a local path
    is in ``location``, since a browser does not open ``file://`` links from a page.
    """
    links = links or {}
    rows = []
    for o in outputs:
        seconds = (
            round((o.completed_at - o.submitted_at).total_seconds(), 1)
            if o.completed_at and o.submitted_at else None
        )
        url = links.get(o.key)
        rows.append({
            "shot": shot or "",
            "kind": o.kind,
            "provider/model": f"{o.provider}/{o.model}",
            "seconds": seconds,
            "cost": o.cost,
            "size": _size(o.size),
            "link": f"[open]({url})" if url else o.key,
            "output": o.key,
            "location": o.location,
            "provider": o.provider,
            "model": o.model,
            "job": o.job_id,
            "bytes": o.size,
            "sha256": o.sha256[:16],
            "preview": o.preview_key or "",
            "source": redact_url(o.source_url),
            "cost_unit": o.cost_unit or "",
            "cost_estimated": "" if o.cost_estimated is None else o.cost_estimated,
            "fallback": "; ".join(f"{s['provider']} {s['reason']}" for s in o.fallback or ()),
        })
    return rows


async def output_links(outputs: Sequence[StoredOutput], store: OutputStorage) -> dict[str, str]:
    """Output key -> a URL a person can open (presigned, where the storage makes them,
    valid for its link lifetime)."""
    links = {}
    for output in outputs:
        url = await store.link(output.key)
        if url:
            links[output.key] = url
    return links


_SUMMARY_COLUMNS = ("shot", "kind", "provider/model", "seconds", "cost", "size", "link")


@_never_fails
async def publish_outputs(
    outputs: Sequence[StoredOutput],
    title: str,
    store: OutputStorage,
    shot: str | None = None,
) -> UUID:
    """The run's summary (a markdown artifact with the pictures and a table of the outputs),
    and the same outputs as a table artifact with every column.

    Args:
        outputs: The flow run's stored outputs.
        title: Says what the run made (e.g. ``"image-to-video"``); also names the keys.
        store: Where the outputs are (links and pictures come from it).
        shot: The shot's name, shown in the first column.

    Returns:
        The table artifact's id (None when it could not be published: logged as a warning).
    """
    links = await output_links(outputs, store)
    rows = output_rows(outputs, links, shot)
    lines = [f"# {_md(title)}" + (f": {_md(shot)}" if shot else ""), ""]
    captions, pictures = [], []
    for output in outputs:
        if output.kind == "image":
            shown = await picture(store, output.key, output.media_type, output.size)
            caption = "still"
        elif output.preview_key:
            shown = await picture(store, output.preview_key, _preview_media_type(output.preview_key))
            caption = "video (preview: " + (
                "animated GIF)" if output.preview_key.endswith(".gif") else "contact sheet)")
        else:
            shown = None
        if shown is not None:
            captions.append(caption)
            pictures.append(f"![{_md(output.kind)} {_md(output.key)}]({shown[0]})")
    if pictures:  # side by side, each under its caption
        lines += ["| " + " | ".join(captions) + " |", "|" + "---|" * len(captions),
                  "| " + " | ".join(pictures) + " |", ""]
    lines.append("| " + " | ".join(_SUMMARY_COLUMNS) + " |")
    lines.append("|" + "---|" * len(_SUMMARY_COLUMNS))
    for row in rows:
        cells = [
            row["link"] if column == "link" and row["link"].startswith("[open](")
            else _md("" if row[column] is None else row[column])
            for column in _SUMMARY_COLUMNS
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for row in rows:
        lines.append(f"- {_code(row['output'])}: {_code(row['location'])} "
                     f"(sha256 {_code(row['sha256'])}, job {_code(row['job'])})")
    await acreate_markdown_artifact(
        markdown="\n".join(lines), key=_artifact_key(f"summary-{title}"),
        description=f"{title}{_named(shot)}: {len(outputs)} output(s) — start here",
    )
    return await acreate_table_artifact(
        table=rows,
        key=_artifact_key(f"outputs-{title}"),
        description=f"{title}{_named(shot)}: {len(outputs)} output(s)",
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
                 description: str | None = None, steps: Sequence[str] | None = None) -> None:
        if total < 0:
            raise ValueError("total must be >= 0")
        if steps is not None and len(steps) != total:
            raise ValueError("steps must name each of the total jobs")
        self.total = total
        self.steps = tuple(steps) if steps is not None else None
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
        """The description and the counts; with ``steps``, which step is where."""
        counts = f"{self.done + self.failed} of {self.total} finished"
        if self.failed:
            counts += f" ({self.failed} failed)"
        if self.steps is not None:
            finished = self.done + self.failed
            said = [f"{step} {'failed' if self.failed and i == finished - 1 else 'done'}"
                    for i, step in enumerate(self.steps[:finished])]
            if finished < self.total:
                said.append(f"{self.steps[finished]} {'not started' if self.failed else 'next'}")
            counts += ": " + ", ".join(said)
        return f"{self.description}: {counts}" if self.description else counts

    @classmethod
    async def begin(cls, total: int, **options: Any) -> BatchProgress | None:
        """A started progress artifact, or None when it could not be created (logged at
        DEBUG: progress is for people, and never fails a run)."""
        tracker = cls(total, **options)
        try:
            await tracker.start()
        except Exception as exc:  # noqa: BLE001 - never fail a run over progress
            _log_progress_failure(exc)
            return None
        return tracker

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


def _log_progress_failure(exc: BaseException) -> None:
    import logging

    logging.getLogger(__name__).debug("Could not update a progress artifact: %s", exc)


async def note_progress(tracker: BatchProgress | None, failed: bool = False) -> None:
    """Advance ``tracker`` by one step (if any); a failed update is logged at DEBUG, never
    raised."""
    if tracker is None:
        return
    try:
        await tracker.advance(failed=failed)
    except Exception as exc:  # noqa: BLE001 - never fail a run over progress
        _log_progress_failure(exc)


async def advance_quietly(tracker: BatchProgress | None, step: Awaitable[R]) -> R:
    """Await one step of a batch, then advance ``tracker`` (failed, when the step raised, and
    the error goes on). A progress update that fails is logged at DEBUG, never raised."""
    try:
        result = await step
    except Exception:
        await note_progress(tracker, failed=True)
        raise
    await note_progress(tracker)
    return result


#: The key of the storyboard summary artifact (its history across runs shows in the UI).
SUMMARY_ARTIFACT_KEY = "storyboard-summary"


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


#: The key of a single-step or chain run's submissions in doubt (a storyboard's are in its
#: summary).
DOUBTS_ARTIFACT_KEY = "submission-doubts"


@_never_fails
async def publish_doubts(doubts: Sequence[Doubt]) -> UUID:
    """The submissions in doubt a run met, each with the commands that settle it
    (:func:`prefect_runway.ledger.doubts_markdown`), as a markdown artifact."""
    return await acreate_markdown_artifact(
        markdown=doubts_markdown(doubts), key=DOUBTS_ARTIFACT_KEY,
        description=f"{len(doubts)} submission(s) in doubt: settle each with "
                    "`prefect-runway ledger resolve` (adopt the job, or clear it)",
    )


@_never_fails
async def publish_summary(summary: Any) -> None:
    """The summary as a markdown artifact, keyed so the UI shows its history across runs."""
    await acreate_markdown_artifact(
        markdown=summary.markdown(),
        key=SUMMARY_ARTIFACT_KEY,
        description=summary.describe(limit=3),
    )
