"""Segmind's translation (seeds 000-002): request bodies, rules, and answer parsing.

The provider is pure translation, so nothing here touches the network.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image

from prefect_runway.errors import (
    AuthenticationError,
    BadResponse,
    GenerationExpired,
    InsufficientCredits,
    InvalidRequest,
    ModelRetired,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    UnsupportedOption,
)
from prefect_runway.models import (
    Generation,
    ImageRequest,
    JobState,
    VideoRequest,
    bytes_to_data_uri,
)
from prefect_runway.providers import get_provider
from prefect_runway.providers.segmind import SegmindProvider
from prefect_runway.providers.wire import error_detail

BASE = "https://api.segmind.com"
# The seeds' own example inputs.
TURBO_IMAGE = (
    "https://segmind-inference-inputs.s3.amazonaws.com/bfeb3c8d-e9cc-4d59-bda5-626fcb20f90d-"
    "2afac9bc-68f5-4611-aa1b-d0bae2cecf3b-bc0f7ed8-c35b-4514-84f1-5a392d6e9b8a-thewaterwascold.png"
)
ALPHA_IMAGE = "https://segmind-sd-models.s3.amazonaws.com/display_images/runway-gen3-input.png"
REF_MODEL = "https://segmind-inference-inputs.s3.amazonaws.com/c226e2cf-49ea-4b8d-a630-9847c0efbbce-Beach-walk.png"
REF_CLOTH = "https://segmind-resources.s3.amazonaws.com/output/cfda480d-86f3-4230-aed3-fcfae874df3b-saree.webp"

GEN4_TURBO_RATIOS = ["1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672"]


@pytest.fixture
def segmind() -> SegmindProvider:
    return SegmindProvider()


def png_bytes(w: int = 64, h: int = 36) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 100, 50)).save(buf, format="PNG")
    return buf.getvalue()


def video(**kw) -> VideoRequest:
    kw.setdefault("model", "gen4_turbo")
    kw.setdefault("image", TURBO_IMAGE)
    kw.setdefault("prompt", "as the camera pans the Brooklyn bridge gets on fire and collapse")
    return VideoRequest(**kw)


def image(**kw) -> ImageRequest:
    kw.setdefault("prompt", "photo of a model wearing a cloth and standing in a garden.")
    kw.setdefault("reference_images", [{"uri": REF_MODEL, "tag": "model"}])
    return ImageRequest(**kw)


def generation(**kw) -> Generation:
    values = dict(
        provider="segmind", model="gen4_turbo", kind="video", job_id="req-123",
        fingerprint="f" * 64, base_url=BASE,
        status_url=f"{BASE}/v2/requests/req-123/status", result_url=f"{BASE}/v2/requests/req-123",
    )
    values.update(kw)
    return Generation(**values)


def invalid(fn, field: str) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        fn()
    assert info.value.field == field, str(info.value)
    return info.value


# ---- bodies, exactly as the seeds send them -------------------------------------------------


def test_gen4_turbo_body_matches_seed_000(segmind):
    prepared = segmind.prepare(video(seed=56698, ratio="1280:720", duration="5"))
    body = dict(prepared.body)
    assert int(body.pop("duration")) == 5
    assert body == {
        "promptText": "as the camera pans the Brooklyn bridge gets on fire and collapse",
        "promptImage": TURBO_IMAGE,
        "seed": 56698,
        "ratio": "1280:720",
    }
    call = segmind.submit_call(prepared)
    assert (call.method, call.url) == ("POST", f"{BASE}/v2/runway-gen4-turbo")
    assert call.json == prepared.body


def test_gen3a_turbo_body_matches_seed_002(segmind):
    prepared = segmind.prepare(
        video(
            model="gen3a_turbo", image=ALPHA_IMAGE, seed=56698, ratio="16:9",
            prompt="an astronaut with a mirrored helmet running in the field of sunflowers",
        )
    )
    body = dict(prepared.body)
    assert int(body.pop("duration")) == 5
    assert body == {
        "promptText": "an astronaut with a mirrored helmet running in the field of sunflowers",
        "promptImage": ALPHA_IMAGE,
        "seed": 56698,
        "ratio": "16:9",
    }
    assert segmind.submit_call(prepared).url == f"{BASE}/v2/runway-gen3-alphaturbo"


def test_gen4_image_body_matches_seed_001(segmind):
    prepared = segmind.prepare(
        image(
            reference_images=[{"uri": REF_MODEL, "tag": "model"}, {"uri": REF_CLOTH, "tag": "cloth"}],
            ratio="1280:720",
        )
    )
    assert prepared.body == {
        "promptText": "photo of a model wearing a cloth and standing in a garden.",
        "referenceImages": [{"uri": REF_MODEL, "tag": "model"}, {"uri": REF_CLOTH, "tag": "cloth"}],
        "ratio": "1280:720",
    }
    assert prepared.kind == "image"
    assert segmind.submit_call(prepared).url == f"{BASE}/v2/runway-gen4-image"


def test_seedless_request_sends_no_seed_and_duration_10_is_sent(segmind):
    body = segmind.prepare(video(duration=10)).body
    assert "seed" not in body
    assert int(body["duration"]) == 10


@pytest.mark.parametrize(
    ("model", "default"), [("gen4_turbo", "1280:720"), ("gen3a_turbo", "16:9"), ("gen4_image", "1280:720")]
)
def test_default_ratio_per_slug(segmind, model, default):
    request = image() if model == "gen4_image" else video(model=model)
    assert segmind.prepare(request).body["ratio"] == default


def test_custom_base_url_is_used_for_submit(segmind):
    prepared = segmind.prepare(video(), "http://127.0.0.1:8123/")
    assert segmind.submit_call(prepared).url == "http://127.0.0.1:8123/v2/runway-gen4-turbo"


def test_auth_header_is_x_api_key(segmind):
    assert segmind.auth_headers("k-123") == {"x-api-key": "k-123"}


def test_get_provider_returns_segmind():
    assert isinstance(get_provider("segmind"), SegmindProvider)
    with pytest.raises(InvalidRequest) as info:
        get_provider("nope")
    assert info.value.field == "provider"


# ---- ratio mapping -------------------------------------------------------------------------


def test_16_9_maps_to_1280_720_on_gen4_turbo(segmind):
    assert segmind.prepare(video(ratio="16:9")).body["ratio"] == "1280:720"


def test_9_16_maps_to_720_1280_on_gen4_turbo(segmind):
    assert segmind.prepare(video(ratio="9:16")).body["ratio"] == "720:1280"


def test_1280_720_maps_to_16_9_on_gen3a_turbo(segmind):
    assert segmind.prepare(video(model="gen3a_turbo", ratio="1280:720")).body["ratio"] == "16:9"


def test_720_1280_maps_to_9_16_on_gen3a_turbo(segmind):
    assert segmind.prepare(video(model="gen3a_turbo", ratio="720:1280")).body["ratio"] == "9:16"


@pytest.mark.parametrize("ratio", GEN4_TURBO_RATIOS)
def test_gen4_turbo_documented_ratios_pass_through(segmind, ratio):
    assert segmind.prepare(video(ratio=ratio)).body["ratio"] == ratio


@pytest.mark.parametrize("ratio", ["1920:1080", "1080:1920"])
def test_hd_ratios_are_sent_only_for_gen4_image(segmind, ratio):
    assert segmind.prepare(image(ratio=ratio)).body["ratio"] == ratio
    for model in ("gen4_turbo", "gen3a_turbo"):
        spec = segmind.spec_for(model)
        try:
            sent = segmind.prepare(video(model=model, ratio=ratio)).body["ratio"]
        except InvalidRequest as err:
            assert err.field == "ratio"
        else:
            assert sent != ratio and sent in spec.ratios


@pytest.mark.parametrize("model", ["gen4_turbo", "gen3a_turbo", "gen4_image"])
def test_ratio_without_equivalent_is_rejected_listing_allowed_values(segmind, model):
    request = image(ratio="4:5") if model == "gen4_image" else video(model=model, ratio="4:5")
    err = invalid(lambda: segmind.prepare(request), "ratio")
    assert err.allowed == list(segmind.spec_for(model).ratios)
    assert (err.provider, err.model) == ("segmind", model)
    for ratio in err.allowed:
        assert repr(ratio) in str(err)


def test_gen3a_turbo_allowed_ratios_are_16_9_and_9_16(segmind):
    err = invalid(lambda: segmind.prepare(video(model="gen3a_turbo", ratio="4:5")), "ratio")
    assert err.allowed == ["16:9", "9:16"]


# ---- seed ------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["gen4_turbo", "gen3a_turbo"])
@pytest.mark.parametrize("seed", [1, 99_999])
def test_seed_bounds_accepted(segmind, model, seed):
    assert segmind.prepare(video(model=model, seed=seed)).body["seed"] == seed


@pytest.mark.parametrize("model", ["gen4_turbo", "gen3a_turbo"])
@pytest.mark.parametrize("seed", [0, 100_000, 4_294_967_295])
def test_seed_outside_1_99999_rejected(segmind, model, seed):
    err = invalid(lambda: segmind.prepare(video(model=model, seed=seed)), "seed")
    assert err.allowed == "1-99999"
    assert err.provider == "segmind"


# ---- image inputs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8000/a.png", "http://localhost:9000/a.png", "http://[::1]:8000/a.png",
     "http://localhost/a.png"],
)
def test_http_url_allowed_for_loopback(segmind, url):
    assert segmind.prepare(video(image=url)).body["promptImage"] == url
    assert segmind.prepare(image(reference_images=[{"uri": url, "tag": "model"}])).body[
        "referenceImages"
    ] == [{"uri": url, "tag": "model"}]


@pytest.mark.parametrize(
    "url",
    ["http://example.com/a.png", "http://127.0.0.1.nip.io/a.png", "http://localhost.evil.com/a.png",
     "http://localhost@evil.com/a.png", "http://10.0.0.1/a.png"],
)
def test_http_url_rejected_unless_loopback(segmind, url):
    err = invalid(lambda: segmind.prepare(video(image=url)), "image")
    assert "https" in str(err)
    invalid(
        lambda: segmind.prepare(image(reference_images=[{"uri": url, "tag": "model"}])),
        "reference_images.uri",
    )


def test_http_url_rejection_does_not_echo_query_string(segmind):
    with pytest.raises(InvalidRequest) as info:
        segmind.prepare(video(image="http://example.com/a.png?X-Amz-Signature=SECRETSIG"))
    assert "SECRETSIG" not in str(info.value)


@pytest.mark.parametrize("url", ["ftp://example.com/a.png", "file:///etc/passwd", "s3://bucket/a.png"])
def test_other_schemes_rejected(segmind, url):
    invalid(lambda: segmind.prepare(video(image=url)), "image")


def test_data_uri_rejected_saying_https_url_needed(segmind):
    err = invalid(lambda: segmind.prepare(video(image=bytes_to_data_uri(png_bytes()))), "image")
    assert "segmind needs an https url" in str(err).lower()


def test_image_bytes_rejected_saying_https_url_needed(segmind):
    err = invalid(lambda: segmind.prepare(video(image=png_bytes())), "image")
    assert "segmind needs an https url" in str(err).lower()


def test_data_uri_reference_image_rejected(segmind):
    refs = [{"uri": bytes_to_data_uri(png_bytes()), "tag": "model"}]
    err = invalid(lambda: segmind.prepare(image(reference_images=refs)), "reference_images.uri")
    assert "segmind needs an https url" in str(err).lower()


def test_local_file_rejected_saying_https_url_needed(segmind, tmp_path):
    path = tmp_path / "still.png"
    path.write_bytes(png_bytes())
    for value in (str(path), path):
        err = invalid(lambda v=value: segmind.prepare(video(image=v)), "image")
        assert "segmind needs an https url" in str(err).lower()


def test_missing_local_file_rejected(segmind, tmp_path):
    invalid(lambda: segmind.prepare(video(image=str(tmp_path / "nope.png"))), "image")


# ---- reference images and prompt ---------------------------------------------------------


def test_reference_images_required(segmind):
    err = invalid(lambda: segmind.prepare(image(reference_images=[])), "reference_images")
    assert "1-3" in str(err.allowed)


def test_up_to_three_reference_images(segmind):
    refs = [{"uri": f"{REF_MODEL}?{i}", "tag": f"ref{i}"} for i in range(4)]
    assert len(segmind.prepare(image(reference_images=refs[:3])).body["referenceImages"]) == 3
    invalid(lambda: segmind.prepare(image(reference_images=refs)), "reference_images")


@pytest.mark.parametrize("model", ["gen4_turbo", "gen3a_turbo"])
@pytest.mark.parametrize("prompt", ["", "   "])
def test_prompt_required_for_video(segmind, model, prompt):
    err = invalid(lambda: segmind.prepare(video(model=model, prompt=prompt)), "prompt")
    assert err.provider == "segmind"


def test_last_image_not_offered(segmind):
    invalid(lambda: segmind.prepare(video(model="gen3a_turbo", last_image=REF_CLOTH)), "last_image")


# ---- submit answer ---------------------------------------------------------------------------


SUBMIT_ANSWER = {
    "request_id": "req-123",
    "status": "QUEUED",
    "poll_url": f"{BASE}/v2/requests/req-123/status",
    "status_url": f"{BASE}/v2/requests/req-123/status",
    "response_url": f"{BASE}/v2/requests/req-123",
}


def test_parse_submit(segmind):
    prepared = segmind.prepare(video(seed=7))
    gen = segmind.parse_submit(prepared, SUBMIT_ANSWER)
    assert gen.job_id == "req-123"
    assert (gen.provider, gen.model, gen.kind) == ("segmind", "gen4_turbo", "video")
    assert gen.status_url == SUBMIT_ANSWER["status_url"]
    assert gen.result_url == SUBMIT_ANSWER["response_url"]
    assert gen.fingerprint == prepared.fingerprint
    assert gen.base_url == BASE
    assert segmind.status_call(gen).url == SUBMIT_ANSWER["status_url"]
    assert segmind.result_call(gen).url == SUBMIT_ANSWER["response_url"]


def test_parse_submit_falls_back_to_poll_url(segmind):
    answer = {k: v for k, v in SUBMIT_ANSWER.items() if k != "status_url"}
    gen = segmind.parse_submit(segmind.prepare(video()), answer)
    assert gen.status_url == answer["poll_url"]


def test_status_and_result_urls_built_when_absent(segmind):
    gen = generation(status_url=None, result_url=None, job_id="abc")
    assert segmind.status_call(gen).url == f"{BASE}/v2/requests/abc/status"
    assert segmind.result_call(gen).url == f"{BASE}/v2/requests/abc"
    assert segmind.status_call(gen).method == "GET"


@pytest.mark.parametrize(
    "body", [{}, {"request_id": 5}, {"status": "QUEUED"}, [], "<html>oops</html>", None]
)
def test_parse_submit_unreadable_is_bad_response(segmind, body):
    with pytest.raises(BadResponse):
        segmind.parse_submit(segmind.prepare(video()), body)


# ---- status answers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "state"),
    [("QUEUED", JobState.PENDING), ("PROCESSING", JobState.RUNNING), ("queued", JobState.PENDING)],
)
def test_parse_status_pending_states(segmind, raw, state):
    update = segmind.parse_status(
        generation(), 200, {"status": raw, "request_id": "req-123", "metrics": {}}
    )
    assert update.state is state
    assert not update.state.terminal
    assert update.outputs == []


def test_parse_status_completed_with_output(segmind):
    body = {"status": "COMPLETED", "output": "https://cdn.example/out.mp4", "metrics": {"inference_time": 37.9}}
    update = segmind.parse_status(generation(), 200, body)
    assert update.state is JobState.SUCCEEDED
    assert update.outputs == ["https://cdn.example/out.mp4"]
    assert update.needs_result_call is False
    assert update.metrics == {"inference_time": 37.9}


def test_parse_status_completed_with_output_list(segmind):
    body = {"status": "COMPLETED", "output": ["https://cdn.example/a.png", "https://cdn.example/b.png"]}
    assert segmind.parse_status(generation(), 200, body).outputs == [
        "https://cdn.example/a.png", "https://cdn.example/b.png",
    ]


def test_parse_status_completed_without_output_needs_result_call(segmind):
    body = {"status": "COMPLETED", "request_id": "req-123", "metrics": {"inference_time": 3}}
    update = segmind.parse_status(generation(), 200, body)
    assert update.state is JobState.SUCCEEDED
    assert update.outputs == []
    assert update.needs_result_call is True


def test_parse_status_failed_422_keeps_error(segmind):
    body = {"status": "FAILED", "request_id": "req-123",
            "error": "Request blocked by content moderation (RAI): the prompt was flagged."}
    update = segmind.parse_status(generation(), 422, body)
    assert update.state is JobState.FAILED
    assert update.error == body["error"]
    assert update.raw_status == "FAILED"


def test_parse_status_failed_without_error_text_still_has_a_message(segmind):
    update = segmind.parse_status(generation(), 422, {"status": "FAILED"})
    assert update.state is JobState.FAILED and update.error


def test_parse_status_404_is_expired(segmind):
    with pytest.raises(GenerationExpired) as info:
        segmind.parse_status(generation(), 404, {"detail": "Not Found"})
    assert info.value.job_id == "req-123"
    assert info.value.status_code == 404


@pytest.mark.parametrize(
    ("code", "exc"),
    [(401, AuthenticationError), (403, AuthenticationError), (406, InsufficientCredits),
     (429, RateLimited), (500, ProviderUnavailable), (502, ProviderUnavailable),
     (504, ProviderUnavailable)],
)
def test_parse_status_http_errors_are_typed(segmind, code, exc):
    with pytest.raises(exc) as info:
        segmind.parse_status(generation(), code, {"message": "nope"})
    assert info.value.status_code == code
    assert info.value.job_id == "req-123"
    assert info.value.provider == "segmind"
    assert info.value.detail == "nope"


HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>"
    "<center><h1>502 Bad Gateway</h1></center><hr><center>cloudfront &amp; co</center>"
    "</body></html>"
)


def test_html_error_page_detail_is_text_not_tags(segmind):
    with pytest.raises(ProviderUnavailable) as info:
        segmind.parse_status(generation(), 502, HTML_PAGE)
    detail = info.value.detail
    assert detail and "502 Bad Gateway" in detail and "cloudfront & co" in detail
    assert "<" not in detail and ">" not in detail
    assert "<" not in str(info.value)


def test_html_error_page_detail_drops_style_and_script():
    page = (
        "<html><head><title>Error 502</title><style>body{color:red}</style>"
        "<script>var cf=1;</script></head><body><h1>Bad gateway</h1></body></html>"
    )
    detail = error_detail(page)
    assert "Bad gateway" in detail
    assert "color:red" not in detail and "var cf" not in detail


@pytest.mark.parametrize("body", ["not json{", {"foo": 1}, {"status": 3}, ["COMPLETED"], None])
def test_parse_status_malformed_200_is_bad_response(segmind, body):
    with pytest.raises(BadResponse) as info:
        segmind.parse_status(generation(), 200, body)
    assert info.value.job_id == "req-123"


def test_parse_status_unreadable_422_is_still_an_error(segmind):
    with pytest.raises(ProviderError):
        segmind.parse_status(generation(), 422, "Unprocessable")


def test_parse_status_unknown_status_is_pending(segmind):
    update = segmind.parse_status(generation(), 200, {"status": "WARMING_UP"})
    assert update.state is JobState.PENDING
    assert update.raw_status == "WARMING_UP"


# ---- fingerprint ---------------------------------------------------------------------------


def test_fingerprint_is_stable(segmind):
    a = segmind.prepare(video(seed=5)).fingerprint
    b = SegmindProvider().prepare(video(seed=5)).fingerprint
    assert a == b
    assert len(a) == 64 and int(a, 16) >= 0


@pytest.mark.parametrize(
    "change",
    [dict(model="gen3a_turbo"), dict(prompt="a different prompt"), dict(seed=6), dict(duration=10),
     dict(ratio="720:1280"), dict(image=ALPHA_IMAGE)],
    ids=["model", "prompt", "seed", "duration", "ratio", "image"],
)
def test_fingerprint_differs_by_input(segmind, change):
    base = segmind.prepare(video(seed=5)).fingerprint
    assert segmind.prepare(video(**{"seed": 5, **change})).fingerprint != base


def test_fingerprint_differs_by_image_prompt(segmind):
    assert segmind.prepare(image(prompt="a")).fingerprint != segmind.prepare(image(prompt="b")).fingerprint


def test_fingerprint_ignores_url_signature_when_image_sha256_given(segmind):
    digest = "ab" * 32
    url_a = "https://bucket.s3.amazonaws.com/still.png?X-Amz-Expires=900&X-Amz-Signature=aaaa"
    url_b = "https://bucket.s3.amazonaws.com/still.png?X-Amz-Expires=900&X-Amz-Signature=bbbb"
    a = segmind.prepare(video(image=url_a, image_sha256=digest))
    b = segmind.prepare(video(image=url_b, image_sha256=digest))
    assert a.fingerprint == b.fingerprint
    assert a.body["promptImage"] == url_a  # the body still sends the URL as given
    # Without the digest the URL is the identity, so the two differ.
    assert segmind.prepare(video(image=url_a)).fingerprint != segmind.prepare(video(image=url_b)).fingerprint
    # A different image digest is a different request.
    assert segmind.prepare(video(image=url_a, image_sha256="cd" * 32)).fingerprint != a.fingerprint


def test_summary_drops_url_signatures(segmind):
    url = "https://bucket.s3.amazonaws.com/still.png?X-Amz-Signature=SECRETSIG"
    prepared = segmind.prepare(video(image=url))
    assert "SECRETSIG" not in repr(prepared.summary)
    gen = segmind.parse_submit(prepared, SUBMIT_ANSWER)
    assert "SECRETSIG" not in gen.model_dump_json()


# ---- issue 17: the catalogue, options Segmind has no field for, balance ---------------------------



def test_gen3a_turbo_is_still_served_here(segmind):
    # Runway's own API retired it on 2026-07-30; Segmind's runway-gen3-alphaturbo is still listed.
    assert segmind.prepare(video(model="gen3a_turbo", ratio="16:9")).body["ratio"] == "16:9"


@pytest.mark.parametrize("seconds", [2, 7, 9])
def test_runway_only_lengths_are_refused_naming_who_takes_them(segmind, seconds):
    with pytest.raises(InvalidRequest) as e:
        segmind.prepare(video(duration=seconds))
    err = e.value
    assert (err.field, err.allowed, err.provider, err.model) == ("duration", [5, 10], "segmind", "gen4_turbo")
    assert str(err).startswith(f"duration: {seconds} is not allowed")
    assert "runway 2-10" in str(err) and "segmind 5 or 10" in str(err)


def test_runway_only_models_are_not_offered_and_say_who_serves_them(segmind):
    with pytest.raises(InvalidRequest) as e:
        segmind.prepare(image(model="gen4_image_turbo"))
    assert not isinstance(e.value, ModelRetired)
    assert e.value.field == "model" and "served by runway" in str(e.value)
    assert e.value.allowed == ["gen3a_turbo", "gen4_image", "gen4_turbo"]
    with pytest.raises(InvalidRequest) as e:
        segmind.prepare(video(model="gen4.5"))
    assert "served by runway" in str(e.value)


def test_content_moderation_is_refused_naming_the_field(segmind):
    for request in (video(content_moderation={"public_figure_threshold": "low"}),
                    image(content_moderation={"public_figure_threshold": "auto"})):
        with pytest.raises(UnsupportedOption) as e:
            segmind.prepare(request)
        assert (e.value.field, e.value.provider) == ("content_moderation", "segmind")
        assert "runway gen4_turbo" in e.value.allowed


def test_runway_upload_uris_are_refused(segmind):
    with pytest.raises(InvalidRequest) as e:
        segmind.prepare(video(image="runway://uploads/x", image_sha256="ab" * 32))
    assert (e.value.field, e.value.provider) == ("image", "segmind")
    assert segmind.uploads_needed(video()) == [] and not segmind.can_upload


def test_balance(segmind):
    call = segmind.balance_call()
    assert (call.method, call.url) == ("GET", f"{BASE}/v1/get-user-credits")
    b = segmind.parse_balance(200, {"credits": 12.5, "free-credits": 0.0184921035})
    assert (b.provider, b.credits, b.free_credits, b.unit) == ("segmind", 12.5, 0.0184921035, "USD")
    with pytest.raises(BadResponse):
        segmind.parse_balance(200, {"balance": 3})
    with pytest.raises(AuthenticationError):
        segmind.parse_balance(401, {"error": "bad key"})
