"""The catalogue of Runway's API hub against Runway's own spec (the `runwayml` SDK's TypedDicts),
and requests for its models validated before anything is sent."""

from __future__ import annotations

import copy
import importlib
import importlib.util
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import runwayml

from prefect_runway.emulator import sdk_spec
from prefect_runway.errors import InvalidRequest
from prefect_runway.models import ImageRequest, VideoRequest, catalogue, runway_api
from prefect_runway.models.runway_api import RUNWAY_API, ApiModel
from prefect_runway.providers import get_provider

RUNWAY = get_provider("runway")
IMAGE = "https://example.com/frame.png"


def unordered(shape: Any) -> Any:
    """A field's shape with every enum as a set: a Literal's order carries no meaning (and
    `typing` caches Literals by equality, so the order read back may vary)."""
    if isinstance(shape, dict):
        return {k: (frozenset(v) if k == "enum" else unordered(v)) for k, v in shape.items()}
    if isinstance(shape, list):
        return [unordered(v) for v in shape]
    return shape


def disagreements(data: dict[str, dict[str, ApiModel]], spec: dict[str, dict[str, Any]]) -> list[str]:
    """Every difference between the catalogue's data and the spec, one line each, naming the
    endpoint, the model and the field."""
    lines = []
    for endpoint in sorted(set(data) | set(spec)):
        ours, theirs = data.get(endpoint, {}), spec.get(endpoint, {})
        for model in sorted(set(theirs) - set(ours)):
            lines.append(f"{endpoint} {model}: in the spec ({theirs[model]['class']}), not in the catalogue")
        for model in sorted(set(ours) - set(theirs)):
            lines.append(f"{endpoint} {model}: in the catalogue, not in the spec")
        for model in sorted(set(ours) & set(theirs)):
            mine, real = ours[model].fields, theirs[model]["fields"]
            for name in sorted(set(mine) | set(real)):
                if unordered(mine.get(name)) != unordered(real.get(name)):
                    lines.append(f"{endpoint} {model}: field {name!r}: catalogue {mine.get(name)} "
                                 f"!= spec {real.get(name)}")
    return lines


def test_the_catalogue_agrees_with_the_sdk_it_names():
    assert runway_api.RUNWAY_API_SDK == f"runwayml {runwayml.__version__}"
    problems = disagreements(RUNWAY_API, sdk_spec.spec())
    assert not problems, "\n".join(problems)


def test_it_covers_every_model_of_the_four_endpoints():
    counts = {endpoint: len(models) for endpoint, models in RUNWAY_API.items()}
    assert counts == {"image_to_video": 25, "text_to_video": 24, "text_to_image": 21, "video_upscale": 2}
    assert runway_api.RUNWAY_API_CHECKED == date(2026, 12, 7)
    assert any("runwayml 5.24.0" in s for s in runway_api.RUNWAY_API_SOURCES)


def _sdk_copy_with_veo_ratio(monkeypatch, added: str) -> Any:
    """A copy of the SDK's image_to_video types where veo3.1 (class Veo3_1) takes one more
    ratio, loaded as a module of its own beside the real one."""
    real = importlib.import_module("runwayml.types.image_to_video_create_params")
    source = Path(real.__file__).read_text(encoding="utf-8")
    head, veo = source.split("class Veo3_1(TypedDict, total=False):", 1)
    old = '"1080:1920", "1920:1080"]]'
    assert old in veo.split("class ", 1)[0]
    veo = veo.replace(old, f'"1080:1920", "1920:1080", "{added}"]]', 1)
    name = "runwayml.types._changed_image_to_video_create_params"
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader=None))
    module.__package__ = "runwayml.types"
    monkeypatch.setitem(sys.modules, name, module)
    exec(compile(head + "class Veo3_1(TypedDict, total=False):" + veo, name, "exec"), module.__dict__)
    return module


def test_a_changed_ratio_in_the_sdk_fails_the_check_naming_model_and_field(monkeypatch):
    changed = _sdk_copy_with_veo_ratio(monkeypatch, "2560:1440")
    spec = dict(sdk_spec.spec())
    spec["image_to_video"] = sdk_spec.models_of(changed, "image_to_video")
    problems = disagreements(RUNWAY_API, spec)
    assert len(problems) == 1, problems
    assert problems[0].startswith("image_to_video veo3.1: field 'ratio'") and "2560:1440" in problems[0]
    print("\n".join(problems))  # what a new SDK release would show


def test_a_new_or_dropped_model_is_named():
    spec = copy.deepcopy(sdk_spec.spec())
    spec["text_to_image"]["gen5_image"] = spec["text_to_image"].pop("gen4_image")
    spec["text_to_image"]["gen5_image"]["class"] = "Gen5Image"
    problems = disagreements(RUNWAY_API, spec)
    assert sorted(problems) == ["text_to_image gen4_image: in the catalogue, not in the spec",
                                "text_to_image gen5_image: in the spec (Gen5Image), not in the catalogue"]


def test_limits_name_fields_the_models_take():
    for endpoint, models in RUNWAY_API.items():
        for model, rules in models.items():
            for name, limit in rules.limits.items():
                assert name in rules.fields, (endpoint, model, name)
                assert set(limit) <= {"min", "max", "min_items", "max_items"}, (model, limit)


def test_the_facts_the_issue_names():
    i2v, t2v, t2i = RUNWAY_API["image_to_video"], RUNWAY_API["text_to_video"], RUNWAY_API["text_to_image"]
    assert i2v["gen4.5"].durations == tuple(range(2, 11))
    assert set(i2v["gen4.5"].ratios) == {"1280:720", "720:1280", "1104:832", "960:960", "832:1104", "1584:672"}
    assert {"mp4", "prores", "png_sequence", "hdr10"} <= set(i2v["gen4.5"].output_formats)
    assert i2v["gen4.5"].positions == ("first",)
    for veo in ("veo3.1", "veo3.1_fast"):
        assert i2v[veo].durations == (4, 6, 8)
        assert set(i2v[veo].ratios) == {"1280:720", "720:1280", "1080:1920", "1920:1080"}
        assert i2v[veo].positions == ("first", "last")
        assert "audio" in i2v[veo].options and "negativePrompt" in i2v[veo].options
    assert t2v["gen4.5"].ratios == ("1280:720", "720:1280")
    assert t2i["gen4_image_turbo"].required == ("model", "promptText", "ratio", "referenceImages")
    assert t2i["gen4_image_turbo"].limits["referenceImages"] == {"min_items": 1, "max_items": 3}
    upscale = RUNWAY_API["video_upscale"]["magnific_video_upscaler_creative"]
    assert upscale.values("resolution") == ("720p", "1k", "2k", "4k")
    assert set(upscale.options) == {"creativity", "flavor", "fpsBoost", "resolution", "sharpen", "smartGrain"}


# ---- requests for every hub model ---------------------------------------------------------

HUB_VIDEO = [m for m in RUNWAY_API["image_to_video"]]
HUB_IMAGE = [m for m in RUNWAY_API["text_to_image"]]


def _valid_video(model: str, **extra: Any) -> VideoRequest:
    rules = RUNWAY_API["image_to_video"][model]
    durations = rules.durations or (5,)
    return VideoRequest(model=model, image=IMAGE, prompt="the tide comes in",
                        duration=durations[0], **extra)


def _spec_check(endpoint: str, body: dict[str, Any]) -> None:
    """The body against the model's rules straight from the SDK, by the emulator's own
    checker (neither the catalogue's data nor its code): the referee."""
    sdk_spec.check(sdk_spec.endpoint_models(endpoint)[body["model"]]["fields"], body)


@pytest.mark.parametrize("model", HUB_VIDEO)
def test_every_image_to_video_model_prepares_a_body_the_spec_accepts(model):
    prepared = RUNWAY.prepare(_valid_video(model))
    assert prepared.body["model"] == model
    _spec_check("image_to_video", prepared.body)
    assert RUNWAY.submit_call(prepared).url.endswith("/v1/image_to_video")


@pytest.mark.parametrize("model", HUB_IMAGE)
def test_every_text_to_image_model_prepares_a_body_the_spec_accepts(model):
    rules = RUNWAY_API["text_to_image"][model]
    refs = [{"uri": IMAGE, "tag": "hero"}] if "referenceImages" in rules.fields else []
    prepared = RUNWAY.prepare(ImageRequest(model=model, prompt="a lighthouse", reference_images=refs))
    _spec_check("text_to_image", prepared.body)
    assert RUNWAY.submit_call(prepared).url.endswith("/v1/text_to_image")


@pytest.mark.parametrize("model", [m for m in HUB_VIDEO if RUNWAY_API["image_to_video"][m].ratios])
def test_a_bad_ratio_names_the_field_and_the_models_ratios(model):
    with pytest.raises(InvalidRequest) as caught:
        RUNWAY.prepare(_valid_video(model, ratio="7:3"))
    assert caught.value.field == "ratio"
    assert set(caught.value.allowed) == set(RUNWAY_API["image_to_video"][model].ratios)


@pytest.mark.parametrize("model", [m for m in HUB_VIDEO if RUNWAY_API["image_to_video"][m].durations])
def test_a_bad_duration_names_the_field_and_the_models_lengths(model):
    lengths = RUNWAY_API["image_to_video"][model].durations
    with pytest.raises(InvalidRequest) as caught:
        RUNWAY.prepare(_valid_video(model).model_copy(update={"duration": max(lengths) + 1}))
    assert caught.value.field == "duration"
    assert list(caught.value.allowed) == list(lengths)
    with pytest.raises(InvalidRequest) as caught:  # refused by the request type already
        VideoRequest(model=model, image=IMAGE, prompt="p", duration=max(lengths) + 1)
    assert caught.value.field == "duration"


def test_an_unknown_model_is_refused_naming_the_field():
    with pytest.raises(InvalidRequest) as caught:
        VideoRequest(model="veo9", image=IMAGE)
    assert caught.value.field == "model" and "veo3.1" in str(caught.value)
    with pytest.raises(InvalidRequest) as caught:
        runway_api.api_model("image_to_video", "gpt_image_2")
    assert caught.value.field == "model" and "served on text_to_image" in str(caught.value)


def test_veo_first_and_last_frame_go_as_positions():
    body = RUNWAY.prepare(_valid_video("veo3.1", last_image="https://example.com/last.png",
                                       ratio="1920:1080")).body
    assert body["promptImage"] == [{"uri": IMAGE, "position": "first"},
                                   {"uri": "https://example.com/last.png", "position": "last"}]
    with pytest.raises(InvalidRequest) as caught:  # gen4.5 takes a first frame only
        RUNWAY.prepare(VideoRequest(model="gen4.5", image=IMAGE, prompt="p",
                                    last_image="https://example.com/last.png"))
    assert caught.value.field == "last_image"


def test_fields_a_model_does_not_take_are_refused_before_sending():
    with pytest.raises(InvalidRequest) as caught:
        RUNWAY.prepare(ImageRequest(model="gpt_image_2", prompt="p", seed=4))
    assert (caught.value.field, caught.value.model) == ("seed", "gpt_image_2")
    with pytest.raises(InvalidRequest) as caught:  # grok_imagine_1_5 has no ratio field
        RUNWAY.prepare(_valid_video("grok_imagine_1_5", ratio="16:9"))
    assert caught.value.field == "ratio"
    with pytest.raises(InvalidRequest) as caught:  # a prompt is required
        RUNWAY.prepare(VideoRequest(model="wan3", image=IMAGE))
    assert caught.value.field == "prompt"
    with pytest.raises(InvalidRequest) as caught:  # at most 3 references
        refs = [{"uri": IMAGE, "tag": f"ref{i}"} for i in range(4)]
        RUNWAY.prepare(ImageRequest(model="grok_imagine_image_2", prompt="p", reference_images=refs))
    assert caught.value.field == "reference_images"


def test_check_body_names_nested_fields_and_ranges():
    good = {"model": "magnific_video_upscaler_creative", "videoUri": "https://e.com/v.mp4",
            "resolution": "4k", "creativity": 40}
    assert runway_api.check_body("video_upscale", good).model == "magnific_video_upscaler_creative"
    for bad, field, allowed in [
        ({**good, "resolution": "8k"}, "options.resolution", ["720p", "1k", "2k", "4k"]),
        ({**good, "creativity": 101}, "options.creativity", "0-100"),
        ({**good, "fpsBoost": "yes"}, "options.fps_boost", ["a boolean"]),
        ({"model": "magnific_video_upscaler_creative"}, "video", None),
    ]:
        with pytest.raises(InvalidRequest) as caught:
            runway_api.check_body("video_upscale", bad)
        assert (caught.value.field, caught.value.allowed) == (field, allowed)
    veo = {"model": "veo3.1", "promptText": "p", "ratio": "1280:720",
           "promptImage": [{"uri": IMAGE, "position": "middle"}]}
    with pytest.raises(InvalidRequest) as caught:
        runway_api.check_body("image_to_video", veo)
    assert (caught.value.field, caught.value.allowed) == ("image[0].position", ["first", "last"])
    with pytest.raises(InvalidRequest) as caught:
        runway_api.check_body("text_to_video", {"model": "gen4.5", "promptText": "p",
                                               "ratio": "1104:832", "duration": 5})
    assert caught.value.allowed == ["1280:720", "720:1280"]


def test_todays_models_keep_their_durations_and_hub_models_are_runway_only():
    assert catalogue.durations("veo3.1") == (4, 6, 8)
    assert catalogue.served_by("veo3.1") == ("runway",)
    assert catalogue.open_durations("kling_4") and not catalogue.open_durations("gen4_turbo")
    assert catalogue.describe_durations("kling_4") == "runway any whole number of seconds"
    with pytest.raises(InvalidRequest) as caught:
        get_provider("segmind").prepare(_valid_video("veo3.1"))
    assert "served by runway" in str(caught.value)
