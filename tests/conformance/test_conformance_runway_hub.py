"""The `runwayml` SDK 5.24.0 against the emulator for the models of Runway's API hub: every
image_to_video and text_to_image model of the SDK is accepted on its route and makes media,
veo3.1 takes a first and a last frame, and bodies the spec refuses are refused."""

from __future__ import annotations

import io
from typing import Any

import pytest
import runwayml
from conformance_helpers import download
from PIL import Image

from prefect_runway.emulator import sdk_spec
from prefect_runway.emulator.media import fit, mean_abs_difference, probe_video

pytestmark = pytest.mark.timeout(120)

I2V = sdk_spec.endpoint_models("image_to_video")
T2I = sdk_spec.endpoint_models("text_to_image")
T2V = sdk_spec.endpoint_models("text_to_video")
LEGACY = {"gen4_turbo", "gen4.5", "gen4_image", "gen4_image_turbo"}  # their own tests


def _png(colour: tuple[int, int, int], size=(320, 180)) -> str:
    import base64

    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _smallest(values: list[Any]) -> Any:
    """The smallest W:H of a ratio enum (a 4k ratio would make a needlessly large video)."""
    sized = [v for v in values if isinstance(v, str) and v.replace(":", "").isdigit() and ":" in v]
    if not sized:
        return values[0]
    return min(sized, key=lambda v: int(v.split(":")[0]) * int(v.split(":")[1]))


def _minimal(fields: dict[str, Any], **given: Any) -> dict[str, Any]:
    """The smallest body the SDK's types allow: every required field, nothing else."""
    body: dict[str, Any] = {}
    for name, rule in fields.items():
        if not rule["required"] or name == "model":
            continue
        if name == "ratio":  # an enum, or an enum or any string (seedream5_lite)
            body[name] = _smallest(rule.get("enum") or rule["any_of"][0]["enum"])
        elif name == "duration":
            body[name] = rule["enum"][0] if "enum" in rule else 4
        elif name == "referenceImages":
            body[name] = [{"uri": "https://example.com/ref.png", "tag": "hero"}
                          if "tag" in rule["list"]["object"] else {"uri": "https://example.com/ref.png"}]
        else:  # promptText, promptImage
            body[name] = given.get(name, "a quiet harbour")
    return {**body, **given}


def _sdk_kwargs(body: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """The SDK's keyword names for a body (prompt_text for promptText, ...)."""
    import re

    return {re.sub(r"(?<!^)(?=[A-Z])", "_", k).lower(): v for k, v in body.items()}


@pytest.mark.parametrize("model", sorted(set(I2V) - LEGACY))
def test_every_image_to_video_model_runs_through_the_sdk(emu, client, model):
    fields = I2V[model]["fields"]
    first = _png((200, 40, 40))
    body = _minimal(fields, promptImage=first)
    task = client.image_to_video.create(model=model, **_sdk_kwargs(body, fields))
    done = task.wait_for_task_output(timeout=60)
    assert done.status == "SUCCEEDED"
    info = probe_video(download(done.output[0]))
    assert info.duration == pytest.approx(float(body.get("duration", 5)))
    assert mean_abs_difference(info.first_frame, fit(Image.open(io.BytesIO(
        __import__("base64").b64decode(first.split(",", 1)[1]))), info.width, info.height)) < 8
    assert emu.stats()["runway"]["submissions"] == {model: 1}


@pytest.mark.parametrize("model", sorted(set(T2I) - LEGACY))
def test_every_text_to_image_model_runs_through_the_sdk(emu, client, model):
    fields = T2I[model]["fields"]
    body = _minimal(fields, promptText="a lighthouse at dusk")
    done = client.text_to_image.create(model=model, **_sdk_kwargs(body, fields)).wait_for_task_output(timeout=60)
    assert done.status == "SUCCEEDED"
    assert Image.open(io.BytesIO(download(done.output[0]))).format == "PNG"


@pytest.mark.parametrize("model", sorted(T2V))
def test_every_text_to_video_model_runs_through_the_sdk(emu, client, model):
    fields = T2V[model]["fields"]
    body = _minimal(fields, promptText="waves roll in at dusk")
    done = client.text_to_video.create(model=model, **_sdk_kwargs(body, fields)).wait_for_task_output(timeout=60)
    assert done.status == "SUCCEEDED"
    info = probe_video(download(done.output[0]))
    assert info.duration == pytest.approx(float(body.get("duration", 5)))


def test_text_to_video_on_gen4_5_is_priced_and_sized_as_asked(emu, client):
    done = client.text_to_video.create(model="gen4.5", prompt_text="a lighthouse beam sweeps",
                                       ratio="720:1280", duration=5).wait_for_task_output(timeout=60)
    info = probe_video(download(done.output[0]))
    assert (info.width, info.height, info.duration) == (720, 1280, 5.0)
    assert done.cost.credits == 60
    with pytest.raises(runwayml.BadRequestError) as caught:  # text-to-video gen4.5: two ratios
        client.text_to_video.create(model="gen4.5", prompt_text="p", ratio="1104:832", duration=5)
    assert caught.value.body["issues"][0]["path"] == ["ratio"]


def test_veo_takes_a_first_and_a_last_frame_and_audio_changes_the_price(emu, client):
    first, last = (250, 30, 30), (30, 30, 250)
    done = client.image_to_video.create(
        model="veo3.1", ratio="1280:720", duration=4, audio=True, prompt_text="the light turns",
        prompt_image=[{"uri": _png(first), "position": "first"},
                      {"uri": _png(last), "position": "last"}],
    ).wait_for_task_output(timeout=60)
    info = probe_video(download(done.output[0]))
    assert (info.width, info.height, info.duration) == (1280, 720, 4.0)
    assert mean_abs_difference(info.first_frame, Image.new("RGB", (1280, 720), first)) < 8
    assert mean_abs_difference(info.last_frame, Image.new("RGB", (1280, 720), last)) < 8
    assert done.cost.credits == 160  # 40 credits a second with audio
    quiet = client.image_to_video.create(
        model="veo3.1", ratio="1280:720", duration=4, audio=False, prompt_image=_png(first),
    ).wait_for_task_output(timeout=60)
    assert quiet.cost.credits == 80


@pytest.mark.parametrize(
    ("endpoint", "body", "field"),
    [
        ("image_to_video", {"model": "veo3.1", "ratio": "1280:720", "duration": 5}, "duration"),
        ("image_to_video", {"model": "veo3.1", "ratio": "1104:832", "duration": 4}, "ratio"),
        ("image_to_video", {"model": "veo3.1", "ratio": "1280:720", "sound": True}, "sound"),
        ("image_to_video", {"model": "veo3.1", "ratio": "1280:720",
                            "promptImage": [{"uri": "https://e.com/a.png", "position": "middle"}]},
         "promptImage.0.position"),
        ("image_to_video", {"model": "kling_4", "duration": 4,
                            "promptImage": [{"uri": "https://e.com/a.png", "position": "last"}]},
         "promptImage"),
        ("image_to_video", {"model": "gen4.5", "ratio": "1280:720", "duration": 5,
                            "promptText": "p", "outputFormat": "prores"}, "outputFormat"),
        ("image_to_video", {"model": "seedance2", "duration": 400}, "duration"),
        ("text_to_image", {"model": "gpt_image_2", "ratio": "1024:1024", "promptText": "p",
                           "seed": 4}, "seed"),
        ("text_to_image", {"model": "seedream5_pro", "ratio": "2048:2048", "promptText": "p",
                           "outputFormat": "jpeg"}, "outputFormat"),
        ("text_to_image", {"model": "no_such_model", "promptText": "p"}, "model"),
    ],
)
def test_bodies_the_spec_refuses_are_refused(emu, client, endpoint, body, field):
    body = {"promptImage": "https://example.com/a.png", **body} if endpoint == "image_to_video" else body
    with pytest.raises(runwayml.BadRequestError) as caught:
        client.post(f"/v1/{endpoint}", cast_to=object, body=body)
    assert caught.value.body["issues"][0]["path"] == field.split(".")
    assert emu.stats()["runway"]["total_submissions"] == 0
