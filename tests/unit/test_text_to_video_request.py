"""``TextToVideoRequest``: checked by the model's text_to_video rules, translated into
Runway's ``POST /v1/text_to_video``, refused by the providers that serve no such model."""

from __future__ import annotations

import pytest

from prefect_runway.errors import InvalidRequest
from prefect_runway.models import TextToVideoRequest
from prefect_runway.providers import get_provider


def test_veo_text_to_video_body_and_route():
    runway = get_provider("runway")
    prepared = runway.prepare(TextToVideoRequest(
        prompt="rain on a tin roof", model="veo3.1", ratio="1920:1080", duration=6, seed=5,
        options={"audio": True, "negative_prompt": "people"}))
    assert prepared.body == {"model": "veo3.1", "promptText": "rain on a tin roof",
                             "ratio": "1920:1080", "duration": 6, "seed": 5, "audio": True,
                             "negativePrompt": "people"}
    assert (prepared.kind, prepared.options) == ("video", {"audio": True,
                                                           "negative_prompt": "people"})
    call = runway.submit_call(prepared)
    assert (call.method, call.url) == ("POST", "https://api.dev.runwayml.com/v1/text_to_video")


def test_an_option_value_the_model_does_not_take_is_named():
    with pytest.raises(InvalidRequest) as caught:
        get_provider("runway").prepare(TextToVideoRequest(
            prompt="x", model="veo3.1", duration=4, options={"audio": "yes"}))
    assert caught.value.field == "options.audio"


@pytest.mark.parametrize(("kwargs", "field", "allowed"), [
    ({"model": "gen4.5", "duration": 11}, "duration", (2, 3, 4, 5, 6, 7, 8, 9, 10)),
    ({"model": "veo3.1", "duration": 5}, "duration", (4, 6, 8)),
    ({"model": "gen4.5", "ratio": "960:960"}, "ratio", ("1280:720", "720:1280")),
    ({"model": "gen4_turbo"}, "model", None),
    ({"model": "gen4.5", "prompt": "  "}, "prompt", None),
])
def test_what_the_model_does_not_take_is_refused(kwargs, field, allowed):
    with pytest.raises(InvalidRequest) as caught:
        TextToVideoRequest(**{"prompt": "a harbour", **kwargs})
    assert caught.value.field == field
    if allowed is not None:
        assert tuple(caught.value.allowed) == allowed


@pytest.mark.parametrize("provider", ["segmind", "aimlapi"])
def test_providers_without_text_to_video_refuse_it(provider):
    with pytest.raises(InvalidRequest) as caught:
        get_provider(provider).prepare(TextToVideoRequest(prompt="a harbour", model="gen4.5"))
    assert caught.value.field == "model" and caught.value.allowed == "runway credentials"
