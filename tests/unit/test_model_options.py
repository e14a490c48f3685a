"""Model options (``options=``): typed per model by the catalogue, checked before anything is
sent, part of the fingerprint, shown in the plan and carried into the request summary that
the sidecar stores."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from prefect_runway import ImageRequest, RunwayCredentials
from prefect_runway.errors import InvalidRequest, UnsupportedOption
from prefect_runway.flows.plan import plan_chain
from prefect_runway.models import VideoRequest, runway_api
from prefect_runway.money.cost_plan import plan_costs, spending
from prefect_runway.providers import get_provider

RUNWAY = get_provider("runway")
IMAGE = "https://example.com/frame.png"


def _veo(**options):
    return VideoRequest(model="veo3.1", image=IMAGE, prompt="pan", duration=8, options=options)


def test_options_go_in_the_body_by_their_wire_names():
    prepared = RUNWAY.prepare(_veo(audio=True, negative_prompt="captions"))
    assert prepared.body["audio"] is True and prepared.body["negativePrompt"] == "captions"
    assert prepared.options == {"audio": True, "negative_prompt": "captions"}
    gen45 = RUNWAY.prepare(VideoRequest(model="gen4.5", image=IMAGE, prompt="p",
                                        options={"output_format": "prores", "prores_profile": "422 HQ"}))
    assert (gen45.body["outputFormat"], gen45.body["proresProfile"]) == ("prores", "422 HQ")
    still = RUNWAY.prepare(ImageRequest(model="gpt_image_2", prompt="a poster",
                                        options={"quality": "high", "output_count": 2}))
    assert (still.body["quality"], still.body["outputCount"]) == ("high", 2)


def test_the_option_names_come_from_the_catalogue():
    veo = runway_api.RUNWAY_API["image_to_video"]["veo3.1"]
    assert sorted(runway_api.option_name(w) for w in veo.options) == ["audio", "negative_prompt"]
    assert runway_api.option_name("fpsBoost") == "fps_boost"


def test_options_are_part_of_the_fingerprint():
    plain = RUNWAY.prepare(_veo()).fingerprint
    loud = RUNWAY.prepare(_veo(audio=True)).fingerprint
    quiet = RUNWAY.prepare(_veo(audio=False)).fingerprint
    assert len({plain, loud, quiet}) == 3
    assert RUNWAY.prepare(_veo(audio=True, negative_prompt="x")).fingerprint == \
        RUNWAY.prepare(_veo(negative_prompt="x", audio=True)).fingerprint
    assert RUNWAY.prepare(_veo(audio=None)).fingerprint == plain  # None: not set


@pytest.mark.parametrize(
    ("model", "options", "field", "allowed"),
    [
        ("veo3.1", {"audio": "yes"}, "options.audio", ["a boolean"]),
        ("veo3.1", {"output_format": "prores"}, "options.output_format", ["audio", "negative_prompt"]),
        ("gen4.5", {"output_format": "avi"}, "options.output_format", None),
        ("gen4_turbo", {"audio": True}, "options.audio", "none: the model takes no options"),
        ("gen3a_turbo", {"audio": True}, "options.audio", "none: the model takes no options"),
    ],
)
def test_bad_options_are_refused_by_the_request_type(model, options, field, allowed):
    with pytest.raises(InvalidRequest) as caught:
        VideoRequest(model=model, image=IMAGE, prompt="p", duration=8 if "veo" in model else 5,
                     options=options)
    assert caught.value.field == field
    if allowed is None:
        allowed = list(runway_api.RUNWAY_API["image_to_video"][model].output_formats)
    assert caught.value.allowed == allowed


def test_a_range_runway_states_is_checked():
    with pytest.raises(InvalidRequest) as caught:
        ImageRequest(model="gpt_image_2", prompt="p", options={"output_count": 11})
    assert (caught.value.field, caught.value.allowed) == ("options.output_count", "1-10")


def test_a_provider_without_options_refuses_them_before_sending():
    request = VideoRequest(model="gen4_turbo", image=IMAGE, prompt="p")
    hacked = request.model_copy(update={"options": {"audio": True}})  # past the type's check
    for name in ("segmind", "aimlapi"):
        with pytest.raises(UnsupportedOption) as caught:
            get_provider(name).prepare(hacked)
        assert caught.value.field == "options.audio" and caught.value.provider == name


def test_options_reach_the_request_summary_the_sidecar_stores():
    prepared = RUNWAY.prepare(_veo(audio=True))
    generation = RUNWAY.parse_submit(prepared, {"id": "task-1"})
    assert generation.request["audio"] is True


CREDENTIALS = RunwayCredentials(api_key=SecretStr("k"))


def _chain(seed: int, **options):
    still = ImageRequest(prompt="a harbour, @hero", reference_images=[{"uri": IMAGE, "tag": "hero"}],
                         ratio="1280:720", seed=seed)

    def video_request(image: str, sha: str | None) -> VideoRequest:
        return VideoRequest(model="veo3.1", image=image, image_sha256=sha, prompt="pan",
                            duration=8, seed=seed, options=options)

    return plan_chain(still, video_request, CREDENTIALS, CREDENTIALS)


def test_the_plan_shows_options_and_prices_them():
    plan = plan_costs([_chain(1, audio=True), _chain(2, audio=False), _chain(3, audio=True)])
    rows = {r.label: (r.requests, r.amount) for r in plan.rows}
    assert rows == {"gen4_image": (3, 15), "veo3.1 [audio=false]": (1, 160),
                    "veo3.1 [audio=true]": (2, 640)}
    assert "veo3.1 [audio=true]" in plan.table() and "| veo3.1 [audio=false] |" in plan.markdown()
    planned = {r["model"]: r["planned"] for r in spending([], plan)}
    assert planned == {"gen4_image": 15, "veo3.1": 800}
