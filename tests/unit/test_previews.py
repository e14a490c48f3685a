"""Video previews: small, deterministic GIFs and contact sheets made with PyAV and Pillow."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from prefect_runway.emulator import media
from prefect_runway.storage.keys import preview_key
from prefect_runway.storage.previews import make_preview, sample_frames


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("previews") / "clip.mp4"
    picture = media.render_still("preview clip", 5, 640, 360)
    path.write_bytes(media.make_video(picture, 640, 360, 3.0, 8))  # 24 frames
    return path


def test_gif_is_small_animated_and_deterministic(video):
    first = make_preview(video, "gif")
    assert first.data == make_preview(video, "gif").data
    assert first.media_type == "image/gif" and first.frames == 10
    with Image.open(io.BytesIO(first.data)) as gif:
        assert gif.format == "GIF" and gif.n_frames == 10 and gif.size == (320, 180)
        assert gif.info.get("loop") == 0
    assert len(first.data) < 300_000


def test_contact_sheet_is_a_grid_png_and_deterministic(video):
    sheet = make_preview(video, "png", frames=8, width=160)
    assert sheet.data == make_preview(video, "png", frames=8, width=160).data
    with Image.open(io.BytesIO(sheet.data)) as image:
        assert image.format == "PNG"
        assert image.size == (4 * 160 + 5 * 4, 2 * 90 + 3 * 4) == sheet.size


def test_first_sampled_frame_is_the_first_frame(video):
    frames = sample_frames(video, 3, 640)
    assert len(frames) == 3
    original = media.fit(media.render_still("preview clip", 5, 640, 360), 640, 360)
    diff = np.abs(np.asarray(frames[0], np.int16) - np.asarray(original, np.int16)).mean()
    assert diff < 12


def test_more_frames_than_the_video_has_gives_every_frame(video):
    assert len(sample_frames(video, 100, 64)) == 24


def test_not_a_video_or_unknown_format_is_a_value_error(tmp_path, video):
    not_video = tmp_path / "x.mp4"
    not_video.write_bytes(b"\x00" * 1000)
    with pytest.raises(ValueError):  # PyAV's InvalidDataError is a ValueError
        make_preview(not_video)
    with pytest.raises(ValueError):
        make_preview(video, "webm")  # type: ignore[arg-type]


def test_preview_key_sits_beside_the_video():
    assert preview_key("run/clip.mp4") == "run/clip.mp4.preview.gif"
    assert preview_key("run/clip.mp4", "png") == "run/clip.mp4.preview.png"


def test_a_thumbnail_is_made_once_per_picture_and_width(monkeypatch):
    """A run shows its still twice (its artifact, its summary): the JPEG thumbnail is made
    once, and the memo stays bounded."""
    from prefect_runway.flows import artifacts

    monkeypatch.setattr(artifacts, "_THUMBNAILS", type(artifacts._THUMBNAILS)())
    monkeypatch.setattr(artifacts, "THUMBNAILS_KEPT", 2)
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(1) or real_open(*a, **k))
    still = media.make_still("a thumbnail", 1, 1280, 720)
    first = artifacts.inline_image(still, "image/png")
    assert artifacts.inline_image(still, "image/png") == first and len(opened) == 1
    with real_open(io.BytesIO(base64.b64decode(first.split(",", 1)[1]))) as jpeg:
        assert jpeg.format == "JPEG" and jpeg.size == (480, 270)
    assert artifacts.inline_image(still, "image/png", width=240) != first and len(opened) == 2
    other = media.make_still("another", 2, 640, 360)
    artifacts.inline_image(other, "image/png")  # the third: the oldest is let go
    assert len(artifacts._THUMBNAILS) == 2 and len(opened) == 3
    assert artifacts.inline_image(still, "image/png") == first and len(opened) == 4


async def test_a_stored_picture_known_by_its_sha256_is_read_once(tmp_path, monkeypatch):
    """The still's artifact and the run's summary show the same stored still: with its
    sha256 given, the second is neither read from the storage again nor made again."""
    import hashlib

    from prefect_runway.flows import artifacts
    from prefect_runway.storage import LocalStorage

    monkeypatch.setattr(artifacts, "_THUMBNAILS", type(artifacts._THUMBNAILS)())
    still = media.make_still("read once", 3, 1280, 720)
    store = LocalStorage(tmp_path)
    await store.write_bytes("still.png", still)
    reads = []
    real_read = store.read_bytes
    monkeypatch.setattr(store, "read_bytes", lambda *a, **k: reads.append(a) or real_read(*a, **k))
    digest = hashlib.sha256(still).hexdigest()
    first = await artifacts.picture(store, "still.png", "image/png", len(still), sha256=digest)
    again = await artifacts.picture(store, "still.png", "image/png", len(still), sha256=digest)
    assert first == again and first[1] is False and len(reads) == 1
    assert first[0] == artifacts.inline_image(still, "image/png")  # the same thumbnail, by bytes
    await artifacts.picture(store, "still.png", "image/png", len(still))  # no sha256: read
    assert len(reads) == 2
