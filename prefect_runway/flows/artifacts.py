"""What a flow run leaves for a person to look at in the Prefect UI."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import io
import logging
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar
from uuid import UUID

from prefect.artifacts import (
    acreate_image_artifact,
    acreate_markdown_artifact,
    acreate_table_artifact,
)
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger

from prefect_runway.flows.doubts import Doubt, doubts_markdown
from prefect_runway.flows.markdown import code, cost_text, md, size_text
from prefect_runway.flows.results import first_frame_key
from prefect_runway.models import StoredOutput
from prefect_runway.providers.wire import redact_url
from prefect_runway.storage import OutputStorage
from prefect_runway.storage.keys import slug

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


def artifact_key(text: str) -> str:
    """``text`` as an artifact key (lowercase ASCII letters, digits and dashes)."""
    # Artifact keys: lowercase ASCII letters, digits and dashes only ("still-café": "still-cafe").
    return slug(text, allowed="a-z0-9-", lower=True, max_length=60, collapse=False)


#: Thumbnails made in this process, by their picture's sha256 (hex), media type and width: a
#: run shows its still in the still's artifact and again in its summary. At most
#: :data:`THUMBNAILS_KEPT` (a JPEG of at most 480 pixels wide each, some 10-40 KB).
_THUMBNAILS: OrderedDict[tuple[str, str, int], str] = OrderedDict()
_THUMBNAILS_LOCK = threading.Lock()
THUMBNAILS_KEPT = 64


def _thumbnail_made(seen: tuple[str, str, int]) -> str | None:
    with _THUMBNAILS_LOCK:
        made = _THUMBNAILS.get(seen)
        if made is not None:
            _THUMBNAILS.move_to_end(seen)
        return made


def inline_image(data: bytes, media_type: str, width: int = THUMBNAIL_WIDTH,
                 sha256: str | None = None) -> str:
    """A ``data:`` URI of a picture small enough to live inside an artifact.

    A GIF of at most :data:`INLINE_GIF_BYTES` stays as it is (it keeps its animation); any
    other picture becomes a JPEG thumbnail at most :data:`THUMBNAIL_WIDTH` pixels wide (made
    once per picture and width in a process; ``sha256``: the picture's, when known).
    """
    if media_type == "image/gif" and len(data) <= INLINE_GIF_BYTES:
        return "data:image/gif;base64," + base64.b64encode(data).decode()
    seen = (sha256 or hashlib.sha256(data).hexdigest(), media_type, width)
    if (made := _thumbnail_made(seen)) is not None:
        return made
    from PIL import Image  # loaded for a thumbnail, not with the module

    with Image.open(io.BytesIO(data)) as image:
        image.seek(0)
        thumb = image.convert("RGB")
        thumb.thumbnail((width, width * 4))
        out = io.BytesIO()
        thumb.save(out, "JPEG", quality=80, optimize=True)
    made = "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode()
    with _THUMBNAILS_LOCK:
        _THUMBNAILS[seen] = made
        while len(_THUMBNAILS) > THUMBNAILS_KEPT:
            _THUMBNAILS.popitem(last=False)
    return made


async def picture(
    store: OutputStorage, key: str, media_type: str, size: int | None = None,
    width: int = THUMBNAIL_WIDTH, sha256: str | None = None,
) -> tuple[str, bool] | None:
    """What an artifact shows for a stored picture: ``(data URI, False)``, a thumbnail
    inlined, for a picture of at most :data:`INLINE_SOURCE_BYTES` (``size``; None: a
    preview, which is small); else ``(link, True)`` where the storage makes links; None when
    it can be neither read nor linked. A picture known by its ``sha256`` (a stored output's)
    is read and made into a thumbnail once per width in a process."""
    if size is None or size <= INLINE_SOURCE_BYTES:
        if sha256 and (made := _thumbnail_made((sha256, media_type, width))) is not None:
            return made, False
        data = await store.read_bytes(key)
        if data is not None:
            return await asyncio.to_thread(inline_image, data, media_type, width, sha256), False
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
    shown = await picture(store, still.key, still.media_type, still.size, sha256=still.sha256)
    if shown is None:
        return None
    src, is_url = shown
    key = artifact_key(f"still-{name or still.fingerprint[:12]}")
    description = f"{still.provider} {still.model} still{_named(name)}, job {still.job_id}"
    if is_url:
        return await acreate_image_artifact(image_url=src, key=key, description=description)
    link = await store.link(still.key)
    opened = f" ([open]({link}))" if link else ""
    return await acreate_markdown_artifact(
        markdown=f"![{md(still.key)}]({src})\n\n{code(still.key)}{opened}\n", key=key,
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
    key = artifact_key(f"preview-{name or video.fingerprint[:12]}")
    description = (
        f"{video.provider} {video.model} video{_named(name)}, job {video.job_id}: "
        f"{'animated GIF' if video.preview_key.endswith('.gif') else 'contact sheet'}"
    )
    if is_url:
        return await acreate_image_artifact(image_url=src, key=key, description=description)
    link = await store.link(video.key)
    opened = f" ([open]({link}))" if link else ""
    return await acreate_markdown_artifact(
        markdown=f"# Preview of {code(video.key)}{opened}\n\n![{md(video.preview_key)}]({src})\n",
        key=key, description=description,
    )


def _named(name: str | None) -> str:
    """A name as it was given, for a description (the key holds its slug)."""
    return f" {name!r}" if name else ""


def output_rows(
    outputs: Sequence[StoredOutput],
    links: Mapping[str, str] | None = None,
    shot: str | None = None,
) -> list[dict[str, Any]]:
    """One table row per output, the columns a person reads first on the left: shot, kind,
    provider/model, seconds, cost, size, link; then job, bytes, sha256, preview, source, the
    cost's unit and whether it is an estimate, and last the full location (see
    :func:`prefect_runway.money.costs.charged_cost`).

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
            "size": size_text(o.size),
            "link": f"[open]({url})" if url else o.key,
            "output": o.key,
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
            # Last: a full path or URL is the widest cell, and pushes no column off the page.
            "location": o.location,
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
    lines = [f"# {md(title)}" + (f": {md(shot)}" if shot else ""), ""]
    captions, pictures = [], []
    for output in outputs:
        if output.kind == "image":
            shown = await picture(store, output.key, output.media_type, output.size,
                                  sha256=output.sha256)
            caption = "still"
        elif output.preview_key:
            shown = await picture(store, output.preview_key, _preview_media_type(output.preview_key))
            caption = "video (preview: " + (
                "animated GIF)" if output.preview_key.endswith(".gif") else "contact sheet)")
        else:
            shown = None
        if shown is not None:
            captions.append(caption)
            pictures.append(f"![{md(output.kind)} {md(output.key)}]({shown[0]})")
    if pictures:  # side by side, each under its caption
        lines += ["| " + " | ".join(captions) + " |", "|" + "---|" * len(captions),
                  "| " + " | ".join(pictures) + " |", ""]
    lines.append("| " + " | ".join(_SUMMARY_COLUMNS) + " |")
    lines.append("|" + "---|" * len(_SUMMARY_COLUMNS))
    for row in rows:
        cells = [
            row["link"] if column == "link" and row["link"].startswith("[open](")
            else cost_text(row["cost"], row["cost_unit"]) if column == "cost"
            else md("" if row[column] is None else row[column])
            for column in _SUMMARY_COLUMNS
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for row in rows:
        lines.append(f"- {code(row['output'])}: {code(row['location'])} "
                     f"(sha256 {code(row['sha256'])}, job {code(row['job'])})")
    await acreate_markdown_artifact(
        markdown="\n".join(lines), key=artifact_key(f"summary-{title}"),
        description=f"{title}{_named(shot)}: {len(outputs)} output(s) — start here",
    )
    return await acreate_table_artifact(
        table=rows,
        key=artifact_key(f"outputs-{title}"),
        description=f"{title}{_named(shot)}: {len(outputs)} output(s)",
    )


#: The key of the storyboard summary artifact (its history across runs shows in the UI).
SUMMARY_ARTIFACT_KEY = "storyboard-summary"


#: The key of a single-step or chain run's submissions in doubt (a storyboard's are in its
#: summary).
DOUBTS_ARTIFACT_KEY = "submission-doubts"


@_never_fails
async def publish_doubts(doubts: Sequence[Doubt]) -> UUID:
    """The submissions in doubt a run met, each with the commands that settle it
    (:func:`prefect_runway.flows.doubts.doubts_markdown`), as a markdown artifact."""
    return await acreate_markdown_artifact(
        markdown=doubts_markdown(doubts), key=DOUBTS_ARTIFACT_KEY,
        description=f"{len(doubts)} submission(s) in doubt: settle each with "
                    "`prefect-runway ledger resolve` (adopt the job, or clear it)",
    )


#: How wide a still is in a storyboard's contact sheet (a still and a preview side by side).
SHEET_THUMBNAIL_WIDTH = 320
#: A storyboard summary shows the pictures of its shots up to this many characters of
#: inlined pictures (about 6 MB); the shots after that show their keys and links only.
SUMMARY_PICTURE_CHARS = 8_000_000


@_never_fails
async def publish_summary(summary: Any, store: OutputStorage | None = None) -> None:
    """The summary as a markdown contact sheet (each shot's still and its video's preview
    inlined, as the single chain's summary shows them, up to :data:`SUMMARY_PICTURE_CHARS`),
    keyed so the UI shows its history across runs."""
    pictures: dict[str, str] = {}
    links: dict[str, str] = {}
    if store is not None:
        left = SUMMARY_PICTURE_CHARS
        for shot in summary.shots:
            if shot.same_as:  # an identical shot shows the outputs of the one it repeats
                continue
            for output in (shot.still, shot.video, shot.finished):
                if output is None:
                    continue
                if url := await store.link(output.key):
                    links[output.key] = url
                key, media = ((output.preview_key, _preview_media_type(output.preview_key))
                              if output.kind == "video" and output.preview_key
                              else (output.key, output.media_type))
                if output.kind == "video" and not output.preview_key or left <= 0:
                    continue
                own = key == output.key  # the output itself, not its preview
                shown = await picture(store, key, media, output.size if own else None,
                                      width=SHEET_THUMBNAIL_WIDTH,
                                      sha256=output.sha256 if own else None)
                if shown is not None:
                    pictures[key] = shown[0]
                    left -= len(shown[0])
            frame = first_frame_key(shot)  # a continued shot shows the frame it started on
            if frame and left > 0 and (shown := await picture(
                    store, frame, "image/png", None, width=SHEET_THUMBNAIL_WIDTH)) is not None:
                pictures[frame] = shown[0]
                left -= len(shown[0])
    await acreate_markdown_artifact(
        markdown=summary.markdown(pictures, links),
        key=SUMMARY_ARTIFACT_KEY,
        description=summary.describe(limit=3),
    )


async def publish_cost_plan(plan: Any, key: str = "cost-plan") -> None:
    """The plan (a :class:`~prefect_runway.money.cost_plan.CostPlan`) as a markdown artifact,
    published before the run's first submit."""
    usd = plan.total_usd
    await acreate_markdown_artifact(
        markdown=plan.markdown(), key=key,
        description=f"{plan.requests} request(s) to pay"
        + ("" if usd is None else f", about USD {usd:.2f}"),
    )


#: The review's stills, for a person to decide on (see :mod:`prefect_runway.flows.review`).
REVIEW_ARTIFACT_KEY = "review-stills"


async def review_markdown(
    made: Sequence[Any], store: OutputStorage, title: str, *, inline: bool = True
) -> str:
    """The stills as markdown: per shot, each variant's picture, seed and stored key."""
    lines = [f"# Review: {md(title)}", "",
             "Approve, reject or regenerate each shot in the flow run's **Resume** form "
             "(or with `resume_flow_run(flow_run_id, run_input={\"shots\": [...]})`); "
             "a shot not named is rejected.", ""]
    by_shot: dict[str, list[Any]] = {}
    for m in made:
        by_shot.setdefault(m.name, []).append(m)
    for name, variants in by_shot.items():
        lines += [f"## {md(name)}", ""]
        for m in variants:
            if m.still is None:
                lines.append(f"- variant {m.variant}: failed: {md(m.error)}")
                continue
            seed = m.still.request.get("seed")
            label = f"variant {m.variant}" + (f", seed {seed}" if seed is not None else "")
            shown = await picture(store, m.still.key, m.still.media_type, m.still.size,
                                  sha256=m.still.sha256) if inline else None
            if shown is not None:
                lines.append(f"**{label}**\n\n![{md(name)} {label}]({shown[0]})\n")
            # A blank line after the item: the next variant's label is not read as its
            # continuation (indented under it).
            lines.append(f"- {label}: {code(m.still.key)} ({m.still.provider} job "
                         f"{code(m.still.job_id)})\n")
        lines.append("")
    return "\n".join(lines)


async def publish_review(made: Sequence[Any], store: OutputStorage, title: str) -> str:
    """Publish the stills for review (the ``review-stills`` artifact); returns its markdown."""
    from prefect.artifacts import acreate_markdown_artifact

    text = await review_markdown(made, store, title)
    shots = len({m.name for m in made})
    await acreate_markdown_artifact(
        markdown=text, key=REVIEW_ARTIFACT_KEY,
        description=f"{title}: {len(made)} still(s) of {shots} shot(s) for review",
    )
    return text
