"""media.py: real stills and videos, made deterministically."""

from __future__ import annotations

import io

import pytest
from emu_helpers import picture
from PIL import Image

from prefect_runway.emulator.media import (
    MediaCache,
    fit,
    make_still,
    make_video,
    mean_abs_difference,
    probe_video,
)

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("size", [(1280, 720), (720, 1280), (1920, 1080), (960, 960)])
def test_still_is_a_png_of_the_exact_size(size):
    data = make_still("a lighthouse at dusk", 7, *size)
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    assert image.size == size


def test_still_is_deterministic_for_prompt_and_seed():
    one = make_still("a lighthouse at dusk", 7, 640, 360)
    assert make_still("a lighthouse at dusk", 7, 640, 360) == one
    assert make_still("a lighthouse at dusk", 8, 640, 360) != one
    assert make_still("a lighthouse at dawn", 7, 640, 360) != one


def test_still_is_not_blank():
    image = Image.open(io.BytesIO(make_still("colourful shapes", 1, 640, 360))).convert("RGB")
    colours = image.getcolors(maxcolors=1_000_000)
    assert colours is not None and len(colours) > 100


def test_video_first_frame_is_the_input_and_duration_is_exact():
    source = picture(800, 600)
    info = probe_video(make_video(source, 640, 360, duration_s=2, fps=6))
    assert (info.codec, info.pix_fmt) == ("h264", "yuv420p")
    assert (info.width, info.height) == (640, 360)
    assert info.frames == 12
    assert info.duration == pytest.approx(2.0)
    assert info.fps == pytest.approx(6.0)
    # Frame 0 is the input, fitted (resize + centre crop) to the video size ...
    assert mean_abs_difference(info.first_frame, fit(source, 640, 360)) < 4
    # ... and the picture moves (slow zoom).
    assert mean_abs_difference(info.last_frame, fit(source, 640, 360)) > 4


def test_video_cross_fades_to_a_last_frame():
    first, last = picture(colour=(200, 40, 40)), picture(colour=(30, 200, 60))
    info = probe_video(make_video(first, 320, 180, duration_s=2, fps=4, last_frame=last))
    assert mean_abs_difference(info.first_frame, fit(first, 320, 180)) < 4
    assert mean_abs_difference(info.last_frame, fit(last, 320, 180)) < 4


def test_video_rejects_odd_sizes():
    with pytest.raises(ValueError):
        make_video(picture(), 641, 360, duration_s=1, fps=2)


def test_media_cache_makes_once():
    cache = MediaCache(max_entries=2)
    calls = []

    def make():
        calls.append(1)
        return b"x"

    assert cache.get_or_make("a", make) == b"x"
    assert cache.get_or_make("a", make) == b"x"
    assert (len(calls), cache.hits, cache.misses) == (1, 1, 1)
    cache.get_or_make("b", make)
    cache.get_or_make("c", make)
    cache.get_or_make("a", make)  # evicted (LRU of 2)
    assert len(calls) == 4
