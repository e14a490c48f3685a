"""Provider-neutral request rules (prefect_runway.models).

Every rule is checked on both sides of its boundary, and every rejection must be the typed
``InvalidRequest`` (never pydantic's ``ValidationError``) naming the field at fault.
"""

from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError

from prefect_runway.errors import InvalidRequest, RunwayError
from prefect_runway.models import (
    ImageRequest,
    ReferenceImage,
    VideoRequest,
    bytes_to_data_uri,
    sniff_media_type,
    utf16_len,
)

URL = "https://img.example.com/still.png"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 32
EMOJI = "\N{GRINNING FACE}"  # outside the BMP: two UTF-16 code units


def invalid(fn, field: str) -> InvalidRequest:
    """Run ``fn``; it must raise InvalidRequest (not ValidationError) naming ``field``."""
    with pytest.raises(InvalidRequest) as info:
        fn()
    err = info.value
    assert not isinstance(err, ValidationError)
    assert isinstance(err, RunwayError) and isinstance(err, ValueError)
    assert err.field == field, f"field was {err.field!r}, message {err}"
    assert str(err).startswith(f"{field}:")
    return err


def video(**kw) -> VideoRequest:
    kw.setdefault("image", URL)
    kw.setdefault("prompt", "slow dolly in")
    return VideoRequest(**kw)


def image(**kw) -> ImageRequest:
    kw.setdefault("prompt", "a lighthouse at dusk")
    return ImageRequest(**kw)


# ---- prompt ------------------------------------------------------------------------------


def test_utf16_len_counts_an_emoji_as_two_units():
    assert utf16_len("abc") == 3
    assert utf16_len(EMOJI) == 2
    assert utf16_len("é") == 1


@pytest.mark.parametrize(
    "prompt",
    ["a" * 1000, EMOJI * 500, "a" * 998 + EMOJI],
    ids=["1000-ascii", "500-emoji", "998+emoji"],
)
def test_prompt_of_exactly_1000_utf16_units_is_accepted(prompt):
    assert utf16_len(prompt) == 1000
    assert video(prompt=prompt).prompt == prompt
    assert image(prompt=prompt).prompt == prompt


@pytest.mark.parametrize(
    "prompt",
    ["a" * 1001, "a" + EMOJI * 500, "a" * 999 + EMOJI],
    ids=["1001-ascii", "1+500-emoji", "999+emoji"],
)
def test_prompt_over_1000_utf16_units_is_rejected(prompt):
    # "a" * 999 + emoji is 1000 code points but 1001 UTF-16 units.
    assert utf16_len(prompt) == 1001
    err = invalid(lambda: video(prompt=prompt), "prompt")
    assert err.allowed is not None and "1000" in str(err.allowed)
    invalid(lambda: image(prompt=prompt), "prompt")


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t"])
def test_image_prompt_must_not_be_empty(prompt):
    invalid(lambda: image(prompt=prompt), "prompt")


def test_video_prompt_may_be_empty_at_model_level():
    # Emptiness of a video prompt is a provider rule (Segmind requires it), not a model rule.
    assert video(prompt="").prompt == ""


# ---- seed --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 4_294_967_295, None])
def test_seed_in_range_is_accepted(seed):
    assert video(seed=seed).seed == seed
    assert image(seed=seed).seed == seed


@pytest.mark.parametrize("seed", [-1, 4_294_967_296, 2**64])
def test_seed_out_of_range_is_rejected(seed):
    err = invalid(lambda: video(seed=seed), "seed")
    assert err.allowed == "0-4294967295"
    invalid(lambda: image(seed=seed), "seed")


def test_non_integer_seed_is_rejected():
    invalid(lambda: video(seed="abc"), "seed")
    invalid(lambda: video(seed=1.5), "seed")


# ---- duration ----------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [(5, 5), (10, 10), ("5", 5), ("10", 10), (5.0, 5)])
def test_duration_5_or_10_is_accepted(value, expected):
    request = video(duration=value)
    assert request.duration == expected
    assert type(request.duration) is int


def test_duration_defaults_to_5():
    assert video().duration == 5


@pytest.mark.parametrize("value", [11, 1, 0, -5, 5.5, "x", "5.5", "", None, True])
def test_duration_other_values_are_rejected(value):
    # gen4_turbo (the default) takes 2-10 s on Runway's API, 5 or 10 elsewhere: the request
    # allows the union; each provider's prepare checks its own lengths.
    err = invalid(lambda: video(duration=value), "duration")
    assert err.allowed == list(range(2, 11))


@pytest.mark.parametrize("value", [2, 3, 7, 9, "8"])
def test_gen4_turbo_and_gen4_5_take_2_to_10(value):
    assert video(duration=value).duration == int(value)
    assert video(model="gen4.5", duration=value).duration == int(value)


@pytest.mark.parametrize("value", [2, 7, 11])
def test_gen3a_turbo_takes_5_or_10(value):
    err = invalid(lambda: video(model="gen3a_turbo", duration=value), "duration")
    assert err.allowed == [5, 10]


# ---- ratio -------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", ["1280:720", "16:9", "9:16", "1:1", " 16:9 ", None])
def test_well_formed_ratio_is_accepted(ratio):
    expected = ratio.strip() if ratio else None
    assert video(ratio=ratio).ratio == expected
    assert image(ratio=ratio).ratio == expected


@pytest.mark.parametrize(
    "ratio", ["16x9", "16:", ":9", "0:9", "16:0", "16:9:1", "-16:9", "1280 : 720", "abc", "", "123456:1"]
)
def test_malformed_ratio_is_rejected(ratio):
    err = invalid(lambda: video(ratio=ratio), "ratio")
    assert err.allowed is not None
    invalid(lambda: image(ratio=ratio), "ratio")


# ---- reference image tags ----------------------------------------------------------------


@pytest.mark.parametrize("tag", ["abc", "Style", "a_1", "x" * 16, "A2345678901234_6"])
def test_valid_tag_is_accepted(tag):
    request = image(reference_images=[{"uri": URL, "tag": tag}])
    assert request.reference_images[0].tag == tag
    assert ReferenceImage(uri=URL, tag=tag).tag == tag


@pytest.mark.parametrize(
    "tag",
    ["ab", "x" * 17, "1abc", "_abc", "ab-c", "ab c", "abç", "", "abc!"],
    ids=["2-chars", "17-chars", "digit-first", "underscore-first", "dash", "space", "non-ascii",
         "empty", "punct"],
)
def test_invalid_tag_is_rejected(tag):
    err = invalid(lambda: image(reference_images=[{"uri": URL, "tag": tag}]), "reference_images.tag")
    assert err.allowed is not None
    invalid(lambda: ReferenceImage(uri=URL, tag=tag), "reference_images.tag")


def test_tag_with_trailing_newline_is_rejected():
    invalid(lambda: ReferenceImage(uri=URL, tag="style\n"), "reference_images.tag")


def test_duplicate_tags_are_rejected():
    refs = [{"uri": URL, "tag": "style"}, {"uri": URL + "?2", "tag": "style"}]
    err = invalid(lambda: image(reference_images=refs), "reference_images.tag")
    assert "style" in str(err)


def test_distinct_tags_are_accepted():
    refs = [{"uri": URL, "tag": "style"}, {"uri": URL, "tag": "subject"}]
    assert [r.tag for r in image(reference_images=refs).reference_images] == ["style", "subject"]


# ---- images ------------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "media"), [(PNG, "image/png"), (JPEG, "image/jpeg"), (WEBP, "image/webp")])
def test_image_bytes_become_a_data_uri(data, media):
    for value in (data, bytearray(data), memoryview(data)):
        request = video(image=value)
        assert request.image == f"data:{media};base64,{base64.b64encode(data).decode()}"
    ref = ReferenceImage(uri=data, tag="style")
    assert ref.uri.startswith(f"data:{media};base64,")
    assert base64.b64decode(ref.uri.split(",", 1)[1]) == data


def test_last_image_bytes_become_a_data_uri():
    assert video(last_image=PNG).last_image == bytes_to_data_uri(PNG)


@pytest.mark.parametrize(
    "data",
    [b"GIF89a" + b"\x00" * 20, b"\x00\x00\x00\x18ftypmp42", b"<html>nope</html>", b"", b"hello"],
    ids=["gif", "mp4", "html", "empty", "text"],
)
def test_non_image_bytes_are_rejected(data):
    err = invalid(lambda: video(image=data), "image")
    assert err.allowed is not None and "PNG" in str(err.allowed)
    invalid(lambda: video(last_image=data), "last_image")
    invalid(lambda: ReferenceImage(uri=data, tag="style"), "reference_images.uri")


def test_empty_image_string_is_rejected():
    invalid(lambda: video(image="  "), "image")


def test_missing_image_is_rejected():
    invalid(lambda: VideoRequest(prompt="x"), "image")


def test_sniff_media_type():
    assert sniff_media_type(PNG) == "image/png"
    assert sniff_media_type(JPEG) == "image/jpeg"
    assert sniff_media_type(WEBP) == "image/webp"
    assert sniff_media_type(b"\x00\x00\x00\x18ftypisom") == "video/mp4"
    assert sniff_media_type(b"<!doctype html>") is None


# ---- unknown fields, wrong models, construction paths -----------------------------------


def test_unknown_field_is_rejected_on_video():
    invalid(lambda: video(colour="red"), "colour")


def test_unknown_field_is_rejected_on_image():
    invalid(lambda: image(negative_prompt="blur"), "negative_prompt")


def test_unknown_field_is_rejected_on_reference_image():
    invalid(lambda: ReferenceImage(uri=URL, tag="style", weight=1), "weight")


def test_unknown_model_is_rejected():
    invalid(lambda: video(model="gen4_image"), "model")
    invalid(lambda: image(model="gen4_turbo"), "model")


def test_unknown_field_in_nested_reference_is_rejected():
    with pytest.raises(InvalidRequest) as info:
        image(reference_images=[{"uri": URL, "tag": "style", "weight": 2}])
    assert "weight" in info.value.field


def test_model_validate_also_raises_invalid_request():
    with pytest.raises(InvalidRequest) as info:
        VideoRequest.model_validate({"image": URL, "prompt": "x", "duration": 11})
    assert info.value.field == "duration"


def test_requests_are_frozen():
    request = video()
    with pytest.raises((ValidationError, TypeError, AttributeError)):
        request.prompt = "changed"  # type: ignore[misc]


def test_kind():
    assert video().kind == "video"
    assert image().kind == "image"
