"""The last frame of a real MP4 (made by the emulator's media module), decoded with PyAV and
written as the same PNG bytes every time; bounded in the frames it decodes."""

from __future__ import annotations

import io

import av
import pytest
from PIL import Image

from prefect_runway.emulator.media import make_video, mean_abs_difference, probe_video
from prefect_runway.flows import continuity
from prefect_runway.flows.continuity import last_frame_png

RED, BLUE = (230, 40, 40), (40, 40, 230)


@pytest.fixture(scope="module")
def video() -> bytes:
    """Four seconds at 6 fps from a red frame, cross-fading to blue over the last second."""
    return make_video(Image.new("RGB", (320, 180), RED), 320, 180, 4, 6,
                      last_frame=Image.new("RGB", (320, 180), BLUE))


def test_the_last_frame_is_the_videos_last_frame_as_png(video):
    png = last_frame_png(video)
    frame = Image.open(io.BytesIO(png))
    assert (frame.format, frame.mode, frame.size) == ("PNG", "RGB", (320, 180))
    decoded = probe_video(video)  # every frame decoded, front to back
    assert mean_abs_difference(frame, decoded.last_frame) == 0  # the same frame, exactly
    assert mean_abs_difference(frame, Image.new("RGB", (320, 180), BLUE)) < 8
    assert mean_abs_difference(frame, decoded.first_frame) > 50  # not the first (red) one


def test_the_same_video_gives_the_same_bytes(video):
    assert last_frame_png(video) == last_frame_png(bytes(video))


def test_decoding_is_bounded(video, monkeypatch):
    # The emulator's short videos have one keyframe: the seek lands on frame 0, and all 24
    # frames are decoded from there; a bound below that refuses rather than decode on.
    monkeypatch.setattr(continuity, "MAX_TAIL_FRAMES", 10)
    with pytest.raises(ValueError, match="more than 10 frames"):
        last_frame_png(video)


def _keyframed(frames: int, gop: int) -> tuple[bytes, Image.Image]:
    """An MP4 of ``frames`` frames, a keyframe every ``gop``, each frame a new grey; its last
    frame as encoded."""
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=6, options={"g": str(gop),
                                                                  "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for index in range(frames):
            frame = av.VideoFrame.from_image(Image.new("RGB", (64, 64), (index * 4,) * 3))
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    data = out.getvalue()
    return data, probe_video(data).last_frame


def test_only_the_tail_is_decoded(monkeypatch):
    # 60 frames at 6 fps, a keyframe every 6: the seek lands a second before the end, so
    # 12 frames at most are decoded (the bound of 15 would refuse the whole video).
    data, last = _keyframed(60, 6)
    monkeypatch.setattr(continuity, "MAX_TAIL_FRAMES", 15)
    frame = Image.open(io.BytesIO(last_frame_png(data)))
    assert mean_abs_difference(frame, last) == 0


def test_what_is_not_a_video_is_refused():
    with pytest.raises(ValueError, match="not a video"):
        last_frame_png(b"not a video at all")
