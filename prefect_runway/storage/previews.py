"""Small previews of videos for people: an animated GIF or a contact-sheet PNG."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from prefect_runway.errors import InvalidRequest

if TYPE_CHECKING:  # PyAV and Pillow load when a preview is made (not for runs without one)
    import av
    from PIL import Image

PreviewFormat = Literal["gif", "png"]
PREVIEW_FORMATS: tuple[str, ...] = ("gif", "png")
#: Stop decoding after this many frames when a video does not say how long it is.
MAX_SCAN_FRAMES = 3000


@dataclass(frozen=True)
class Preview:
    """A preview's bytes and what it shows."""

    data: bytes
    media_type: str
    frames: int
    size: tuple[int, int]


def make_preview(
    video: str | Path,
    fmt: PreviewFormat = "gif",
    *,
    frames: int | None = None,
    width: int = 320,
) -> Preview:
    """A GIF (``fmt="gif"``) or contact-sheet PNG (``fmt="png"``) of a video file.

    Args:
        video: Path of an MP4 (or anything PyAV reads).
        fmt: ``"gif"`` (animated, loops) or ``"png"`` (a grid of frames).
        frames: How many evenly spaced frames (default 10 for a GIF, 8 for a sheet).
        width: Width of each frame in pixels (height keeps the aspect ratio).

    Returns:
        The preview.

    Raises:
        ValueError: an unknown format, or a file without a decodable video stream.
    """
    if fmt == "gif":
        return gif_preview(video, frames=frames or 10, width=width)
    if fmt == "png":
        return contact_sheet(video, frames=frames or 8, width=width)
    raise ValueError(f"unknown preview format {fmt!r}; use one of {PREVIEW_FORMATS}")


def gif_preview(video: str | Path, *, frames: int = 10, width: int = 320, frame_ms: int = 250) -> Preview:
    """An animated, looping GIF of ``frames`` evenly spaced frames, ``frame_ms`` each."""
    from PIL import Image

    images = sample_frames(video, frames, width)
    paletted = [
        image.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        for image in images
    ]
    out = io.BytesIO()
    paletted[0].save(
        out, format="GIF", save_all=True, append_images=paletted[1:], duration=frame_ms,
        loop=0, optimize=False, disposal=1,
    )
    return Preview(out.getvalue(), "image/gif", len(images), images[0].size)


def contact_sheet(
    video: str | Path, *, frames: int = 8, width: int = 320, columns: int = 4, gap: int = 4
) -> Preview:
    """A PNG grid of ``frames`` evenly spaced frames, ``columns`` to a row."""
    from PIL import Image

    images = sample_frames(video, frames, width)
    w, h = images[0].size
    cols = max(1, min(columns, len(images)))
    rows = -(-len(images) // cols)
    sheet = Image.new("RGB", (cols * w + (cols + 1) * gap, rows * h + (rows + 1) * gap), (16, 16, 16))
    for index, image in enumerate(images):
        row, col = divmod(index, cols)
        sheet.paste(image, (gap + col * (w + gap), gap + row * (h + gap)))
    out = io.BytesIO()
    sheet.save(out, format="PNG", optimize=False)
    return Preview(out.getvalue(), "image/png", len(images), sheet.size)


def sample_frames(video: str | Path, count: int, width: int) -> list[Image.Image]:
    """``count`` evenly spaced frames (first and last included), each ``width`` wide.

    Decodes once, front to back, keeping only the chosen frames (downscaled).

    Raises:
        ValueError: no video stream, or not a single frame could be decoded.
    """
    import av

    if count < 1 or width < 8:
        raise ValueError("a preview needs at least one frame and 8 pixels of width")
    with av.open(str(video)) as container:
        if not container.streams.video:
            raise ValueError(f"{Path(video).name} has no video stream")
        stream = container.streams.video[0]
        total = _frame_count(container, stream)
        if total:
            wanted = _spread(total, count)
            picked = [
                _thumbnail(frame.to_image(), width)
                for index, frame in enumerate(_frames(container, stream, max(wanted) + 1))
                if index in wanted
            ]
        else:  # length unknown: keep a bounded, evenly thinned set while decoding
            picked = _thin_while_decoding(container, stream, count, width)
    if not picked:
        raise ValueError(f"no frame of {Path(video).name} could be decoded")
    if len(picked) > count:
        picked = [picked[i] for i in sorted(_spread(len(picked), count))]
    return picked


def _frames(container: av.container.InputContainer, stream: av.VideoStream, limit: int) -> Iterator[av.VideoFrame]:
    for index, frame in enumerate(container.decode(stream)):
        if index >= limit:
            return
        yield frame


def _frame_count(container: av.container.InputContainer, stream: av.VideoStream) -> int:
    import av

    if stream.frames:
        return int(stream.frames)
    rate = stream.average_rate
    if stream.duration and stream.time_base and rate:
        return max(1, int(round(float(stream.duration * stream.time_base * Fraction(rate)))))
    if container.duration and rate:
        return max(1, int(round(container.duration / av.time_base * float(rate))))
    return 0


def _spread(total: int, count: int) -> set[int]:
    if count >= total:
        return set(range(total))
    if count == 1:
        return {0}
    return {round(i * (total - 1) / (count - 1)) for i in range(count)}


def _thin_while_decoding(
    container: av.container.InputContainer, stream: av.VideoStream, count: int, width: int
) -> list[Image.Image]:
    kept: list[Image.Image] = []
    step = 1
    for index, frame in enumerate(container.decode(stream)):
        if index >= MAX_SCAN_FRAMES:
            break
        if index % step == 0:
            kept.append(_thumbnail(frame.to_image(), width))
            if len(kept) >= 4 * count:  # halve: keep every other frame, sample half as often
                kept = kept[::2]
                step *= 2
    return kept


def _thumbnail(image: Image.Image, width: int) -> Image.Image:
    from PIL import Image

    image = image.convert("RGB")
    w, h = image.size
    if w <= width:
        return image
    height = max(2, round(h * width / w))
    return image.resize((width, height), Image.Resampling.BILINEAR)


def check_preview(preview: str | None) -> None:
    """Raise :class:`InvalidRequest` unless ``preview`` is a preview format or None."""
    if preview is not None and preview not in PREVIEW_FORMATS:
        raise InvalidRequest("preview", f"{preview!r} is not a preview format",
                             allowed=(*PREVIEW_FORMATS, None))
