"""``FinishRequest`` and its preparation: the catalogue's rules before anything is sent, the
source video known by its sha256, Runway's route, other providers refused, the price."""

from __future__ import annotations

import base64
import hashlib

import pytest

from prefect_runway.errors import InvalidRequest
from prefect_runway.models import FinishRequest
from prefect_runway.money.costs import estimate_step
from prefect_runway.money.prices import PriceTable
from prefect_runway.providers.aimlapi import AimlapiProvider
from prefect_runway.providers.runway import RunwayProvider
from prefect_runway.providers.segmind import SegmindProvider

UPSCALER = "magnific_video_upscaler_creative"
MP4 = b"\x00\x00\x00\x18ftypmp42" + bytes(64)


def _upscale(**extra) -> FinishRequest:
    return FinishRequest(**{"model": UPSCALER, "video": "https://cdn.example.com/v.mp4",
                            "options": {"resolution": "4k"}, **extra})


def test_the_body_goes_to_video_upscale_with_the_models_options():
    prepared = RunwayProvider().prepare(_upscale(options={"resolution": "4k", "smart_grain": 10,
                                                          "fps_boost": True}))
    assert prepared.body == {"model": UPSCALER, "videoUri": "https://cdn.example.com/v.mp4",
                             "resolution": "4k", "smartGrain": 10, "fpsBoost": True}
    assert RunwayProvider().submit_call(prepared).url.endswith("/v1/video_upscale")
    assert prepared.kind == "video" and prepared.options["resolution"] == "4k"


def test_the_fingerprint_knows_the_video_by_its_sha256_not_its_url():
    digest = "ab" * 32
    one = RunwayProvider().prepare(_upscale(video="https://a.example.com/v.mp4?sig=1",
                                            video_sha256=digest))
    two = RunwayProvider().prepare(_upscale(video="runway://uploads/x", video_sha256=digest))
    assert one.fingerprint == two.fingerprint
    assert one.summary["videoUri"] == f"sha256:{digest}"
    other = RunwayProvider().prepare(_upscale(video_sha256="cd" * 32))
    assert other.fingerprint != one.fingerprint
    data = RunwayProvider().prepare(_upscale(video="data:video/mp4;base64,"
                                             + base64.b64encode(MP4).decode()))
    assert data.summary["videoUri"] == "sha256:" + hashlib.sha256(MP4).hexdigest()


@pytest.mark.parametrize(("request_args", "field"), [
    ({"video": "runway://uploads/x"}, "video_sha256"),
    ({"video": "http://example.com/v.mp4"}, "video"),
    ({"video": "data:video/mp4;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()},
     "video"),
    ({"video": "data:video/mp4;base64," + base64.b64encode(MP4 * 80_000).decode()}, "video"),
])
def test_a_video_runway_cannot_read_is_refused(request_args, field):
    with pytest.raises(InvalidRequest) as caught:
        RunwayProvider().prepare(_upscale(**request_args))
    assert caught.value.field == field and caught.value.allowed


@pytest.mark.parametrize("provider", [SegmindProvider(), AimlapiProvider()])
def test_segmind_and_aimlapi_refuse_it_naming_the_field(provider):
    with pytest.raises(InvalidRequest) as caught:
        provider.prepare(_upscale())
    assert caught.value.field == "model" and caught.value.provider == provider.name
    assert "runway" in str(caught.value.allowed)


@pytest.mark.parametrize(("model", "options", "field"), [
    ("gen4_turbo", {}, "model"),
    (UPSCALER, {"resolution": "8k"}, "options.resolution"),
    (UPSCALER, {"creativity": -1}, "options.creativity"),
    (UPSCALER, {"flavour": "vivid"}, "options.flavour"),
    ("enhance_frame_rate", {}, "options.target_framerate"),
    ("enhance_frame_rate", {"target_framerate": 60}, "options.target_framerate"),
])
def test_the_model_and_its_options_are_checked_by_the_catalogue(model, options, field):
    with pytest.raises(InvalidRequest) as caught:
        FinishRequest(model=model, video="https://cdn.example.com/v.mp4", options=options)
    assert caught.value.field == field and caught.value.allowed


def test_it_has_no_price_unless_given_one_per_second_of_the_source():
    prepared = RunwayProvider().prepare(_upscale(duration=8))
    assert prepared.summary["duration"] == 8 and "duration" not in prepared.body
    assert estimate_step(prepared) is None  # Runway publishes no price we can cite
    table = PriceTable.default().with_overrides(
        {"runway": {UPSCALER: {"amount": 10, "unit": "credits", "per": "second"}}})
    cost = estimate_step(prepared, table)
    assert cost is not None and (cost.amount, cost.unit) == (80, "credits")


def test_a_key_template_that_would_store_it_over_the_video_is_refused():
    from pydantic import SecretStr

    from prefect_runway.blocks import RunwayCredentials
    from prefect_runway.flows.plan import plan_chain, plan_finish
    from prefect_runway.models import ImageRequest, VideoRequest

    runway = RunwayCredentials(api_key=SecretStr("sk-unused"))
    plan = plan_chain(ImageRequest(prompt="a harbour", ratio="1280:720"),
                      lambda image, sha256: VideoRequest(image=image, image_sha256=sha256,
                                                         ratio="1280:720", duration=4),
                      runway, runway)

    def finish(video: str, sha256: str | None, seconds: float | None) -> FinishRequest:
        return FinishRequest(model="enhance_frame_rate", video=video, video_sha256=sha256,
                             options={"target_framerate": "60"}, duration=seconds)

    with pytest.raises(InvalidRequest) as caught:
        plan_finish(plan, finish, runway, "{name}.{ext}")
    assert caught.value.field == "key_template" and plan.finish_check is None
    plan_finish(plan, finish, runway, "{name}-{job_id}.{ext}")  # a job id of its own
    assert plan.finish_check is not None and plan.finish_check.summary["duration"] == 4
