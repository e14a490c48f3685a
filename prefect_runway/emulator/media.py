"""Real media for the emulator: PNG stills (Pillow), H.264 MP4 videos (PyAV), and a made
video upscaled or retimed (the finishing step)."""

from __future__ import annotations

import hashlib
import io
import os
import random
import tempfile
import textwrap
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from fractions import Fraction

import av
from PIL import Image, ImageChops, ImageDraw, ImageFont, ImageOps

PNG = "image/png"
MP4 = "video/mp4"

#: How much the last frame is zoomed in, relative to the first.
ZOOM = 0.12


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _colour(rng: random.Random, low: int = 30, high: int = 230) -> tuple[int, int, int]:
    return (rng.randint(low, high), rng.randint(low, high), rng.randint(low, high))


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def make_still(prompt: str, seed: int, width: int, height: int) -> bytes:
    """Draw a PNG still for `prompt` and `seed`, `width` x `height` pixels.

    The same prompt, seed and size always give the same bytes.

    Args:
        prompt: The text prompt; it is written on the picture and seeds its colours.
        seed: The generation seed.
        width: Width in pixels.
        height: Height in pixels.

    Returns:
        The PNG file's bytes.
    """
    return encode_png(render_still(prompt, seed, width, height))


def render_still(prompt: str, seed: int, width: int, height: int) -> Image.Image:
    """The picture `make_still` encodes, as an RGB `PIL.Image`."""
    if width < 8 or height < 8:
        raise ValueError("a still must be at least 8x8 pixels")
    rng = _rng("still", prompt, seed)
    top, bottom = _colour(rng), _colour(rng)
    mask = Image.linear_gradient("L").resize((width, height))
    if rng.random() < 0.5:
        mask = mask.transpose(Image.Transpose.ROTATE_180)
    image = Image.composite(Image.new("RGB", (width, height), bottom),
                            Image.new("RGB", (width, height), top), mask)

    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    scale = min(width, height)
    for _ in range(rng.randint(6, 12)):
        kind = rng.choice(("ellipse", "rectangle", "polygon", "line"))
        fill = (*_colour(rng, 0, 255), rng.randint(60, 170))
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        size = rng.uniform(0.08, 0.35) * scale
        box = (x - size, y - size, x + size, y + size)
        if kind == "ellipse":
            draw.ellipse(box, fill=fill)
        elif kind == "rectangle":
            draw.rectangle((x - size, y - size / 2, x + size, y + size / 2), fill=fill)
        elif kind == "polygon":
            points = [(x + rng.uniform(-size, size), y + rng.uniform(-size, size)) for _ in range(3)]
            draw.polygon(points, fill=fill)
        else:
            draw.line(
                (x - size, y - size, x + size, y + size), fill=fill, width=max(2, int(size / 10))
            )
    image = Image.alpha_composite(image.convert("RGBA"), layer)

    # The prompt, wrapped, on a translucent band across the lower third.
    text_layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(text_layer)
    font_size = max(10, scale // 18)
    font = _font(font_size)
    chars_per_line = max(8, int(width / (font_size * 0.6)) - 2)
    lines = textwrap.wrap(prompt.strip() or "(no prompt)", chars_per_line)[:4]
    footer = f"seed {seed} - {width}x{height}"
    line_height = int(font_size * 1.3)
    band_height = line_height * (len(lines) + 1) + line_height // 2
    band_top = height - band_height - height // 12
    draw.rectangle((0, band_top, width, band_top + band_height), fill=(0, 0, 0, 110))
    y = band_top + line_height // 4
    for line in lines:
        draw.text((width // 20, y), line, font=font, fill=(255, 255, 255, 255))
        y += line_height
    draw.text((width // 20, y), footer, font=_font(max(8, font_size * 2 // 3)),
              fill=(230, 230, 230, 220))
    image = Image.alpha_composite(image, text_layer)
    return image.convert("RGB")


def encode_png(image: Image.Image) -> bytes:
    """Encode an image as PNG (fast compression: these are throw-away files)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def fit(image: Image.Image, width: int, height: int) -> Image.Image:
    """Resize and centre-crop `image` to exactly `width` x `height` (RGB)."""
    image = ImageOps.exif_transpose(image) or image
    image = image.convert("RGB")
    if image.size == (width, height):
        return image.copy()
    return ImageOps.fit(image, (width, height), method=Image.Resampling.LANCZOS)


def frame_count(duration_s: float, fps: int) -> int:
    """Number of frames of a `duration_s` video at `fps`."""
    return max(1, round(duration_s * fps))


def make_video(
    first_frame: Image.Image,
    width: int,
    height: int,
    duration_s: float,
    fps: int,
    last_frame: Image.Image | None = None,
) -> bytes:
    """Animate `first_frame` into an H.264 MP4 (yuv420p, moov atom first).

    Args:
        first_frame: The input image; frame 0 is this image fitted to the video size.
        width: Video width in pixels (even).
        height: Video height in pixels (even).
        duration_s: Duration in seconds.
        fps: Frames per second.
        last_frame: Optional image the video cross-fades to over its final second.

    Returns:
        The MP4 file's bytes.
    """
    if width % 2 or height % 2:
        raise ValueError("H.264 yuv420p needs even width and height")
    start = fit(first_frame, width, height)
    end = fit(last_frame, width, height) if last_frame is not None else None
    count = frame_count(duration_s, fps)
    fade_frames = min(count - 1, fps) if end is not None else 0

    with tempfile.TemporaryDirectory(prefix="emulator-video-") as directory:
        path = os.path.join(directory, "out.mp4")
        # faststart moves the index to the front (streamable), which needs a real file.
        with av.open(path, mode="w", format="mp4", options={"movflags": "faststart"}) as out:
            stream = out.add_stream(
                "libx264", rate=fps, options={"preset": "ultrafast", "crf": "18"}
            )
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for index in range(count):
                frame_image = _zoomed(start, index, count)
                if end is not None and fade_frames and index >= count - fade_frames:
                    alpha = (index - (count - fade_frames) + 1) / fade_frames
                    frame_image = Image.blend(frame_image, end, alpha)
                frame = av.VideoFrame.from_image(frame_image)
                frame.pts = index
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        with open(path, "rb") as handle:
            return handle.read()


def decode_frames(data: bytes) -> tuple[list[Image.Image], float]:
    """Every frame of a video (RGB) and its length in seconds."""
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        frames = [frame.to_image().convert("RGB") for frame in container.decode(stream)]
        rate = float(stream.average_rate or 0)
    if not frames:
        raise ValueError("video has no frames")
    return frames, (len(frames) / rate if rate else float(len(frames)))


def finish_video(data: bytes, width: int, height: int, fps: Fraction) -> bytes:
    """A made video at another size and frame rate, over the same length: each new frame
    the source's frames around its time, blended, and scaled (an upscale, a new frame rate).

    Args:
        data: The source MP4's bytes.
        width: The new width (even).
        height: The new height (even).
        fps: The new frame rate (``Fraction(24000, 1001)`` for 23.98).
    """
    frames, seconds = decode_frames(data)
    count = max(1, round(seconds * fps))
    with tempfile.TemporaryDirectory(prefix="emulator-finish-") as directory:
        path = os.path.join(directory, "out.mp4")
        with av.open(path, mode="w", format="mp4", options={"movflags": "faststart"}) as out:
            stream = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast",
                                                                  "crf": "23"})
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.codec_context.time_base = 1 / fps
            for index in range(count):
                at = min(index / count * len(frames), len(frames) - 1)  # source frame time
                low = int(at)
                high = min(low + 1, len(frames) - 1)
                image = Image.blend(frames[low], frames[high], at - low) if high != low else frames[low]
                frame = av.VideoFrame.from_image(image.resize((width, height), Image.Resampling.BILINEAR))
                frame.pts = index
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        with open(path, "rb") as handle:
            return handle.read()


def write_padded_video(path: str | os.PathLike[str], size: int, fps: int = 4) -> str:
    """Write a real, decodable MP4 of exactly ``size`` bytes to ``path``; return its sha256.

    A large output for tests and benchmarks, without encoding hundreds of megabytes: a short
    video (moov first) followed by one top-level ``free`` box that fills the file up to
    ``size``; players and PyAV skip it. Written 1 MiB at a time.
    """
    picture = render_still("a very large output", 7, 640, 360)
    video = make_video(picture, 640, 360, 2.0, fps)
    padding = size - len(video)
    if not 8 <= padding < 2**32:
        raise ValueError(f"size must leave 8 bytes to 4 GiB of padding after {len(video)} bytes of video")
    digest = hashlib.sha256()
    zeros = bytes(1 << 20)
    with open(path, "wb") as out:
        for chunk in (video, padding.to_bytes(4, "big") + b"free"):
            out.write(chunk)
            digest.update(chunk)
        left = padding - 8
        while left:
            chunk = zeros[: min(left, len(zeros))]
            out.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def _zoomed(image: Image.Image, index: int, count: int) -> Image.Image:
    if index == 0 or count == 1:
        return image
    width, height = image.size
    zoom = 1.0 + ZOOM * index / (count - 1)
    crop_w, crop_h = width / zoom, height / zoom
    left, top = (width - crop_w) / 2, (height - crop_h) / 2
    return image.resize(
        (width, height), Image.Resampling.BILINEAR, box=(left, top, left + crop_w, top + crop_h)
    )


def image_digest(image: Image.Image) -> str:
    """A content hash of a decoded image, for cache keys."""
    digest = hashlib.sha256(f"{image.mode}{image.size}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class VideoInfo:
    """What `probe_video` found in an MP4."""

    codec: str
    width: int
    height: int
    pix_fmt: str
    fps: float
    frames: int
    duration: float
    first_frame: Image.Image
    last_frame: Image.Image


def probe_video(data: bytes) -> VideoInfo:
    """Decode an MP4 fully (for tests and checks): size, frame count, duration, frames."""
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        first = last = None
        count = 0
        for frame in container.decode(stream):
            if first is None:
                first = frame.to_image()
            last = frame
            count += 1
        if first is None or last is None:
            raise ValueError("video has no frames")
        duration = (
            float(stream.duration * stream.time_base)
            if stream.duration is not None and stream.time_base is not None
            else (container.duration or 0) / av.time_base
        )
        return VideoInfo(
            codec=stream.codec_context.name,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            pix_fmt=stream.codec_context.pix_fmt or "unknown",
            fps=float(stream.average_rate or 0),
            frames=count,
            duration=duration,
            first_frame=first,
            last_frame=last.to_image(),
        )


def mean_abs_difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute per-channel difference of two same-size images (0..255)."""
    a, b = a.convert("RGB"), b.convert("RGB")
    if a.size != b.size:
        raise ValueError(f"sizes differ: {a.size} vs {b.size}")
    histogram = ImageChops.difference(a, b).histogram()
    total = sum(value * count for index, count in enumerate(histogram) for value in [index % 256])
    return total / (a.size[0] * a.size[1] * 3)


class MediaCache:
    """A small thread-safe LRU of made media, keyed by the inputs that made them."""

    def __init__(self, max_entries: int = 128) -> None:
        self._entries: OrderedDict[Hashable, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_entries
        self.hits = 0
        self.misses = 0

    def get_or_make(self, key: Hashable, make: Callable[[], bytes]) -> bytes:
        """Return the cached bytes for `key`, making (and storing) them on a miss."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return self._entries[key]
            self.misses += 1
        data = make()
        with self._lock:
            self._entries[key] = data
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return data

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = 0
