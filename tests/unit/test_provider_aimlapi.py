"""AIMLAPI translation: bodies on both routes, validation, status parsing, error classes.

The JSON shapes are the ones in AIMLAPI's docs (seeds 003/004 and its OpenAPI files):
legacy ``{id, status, video: [url]}``, universal ``{id, status, video: {url}, error: {name,
message}, meta: {usage: {credits_used}}}`` and errors ``{message, path, requestId, statusCode,
timestamp}``. No network.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from prefect_runway.errors import (
    AuthenticationError,
    BadResponse,
    GenerationExpired,
    InsufficientCredits,
    InvalidRequest,
    ProviderRejected,
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
    utf16_len,
)
from prefect_runway.providers import PROVIDERS, get_provider
from prefect_runway.providers.aimlapi import AimlapiProvider
from prefect_runway.providers.runway import RunwayProvider
from prefect_runway.providers.segmind import SegmindProvider

BASE = "https://api.aimlapi.com"
IMG = "https://example.com/first.png"
LAST = "https://example.com/last.png"
SIGNED = (
    "https://cdn.aimlapi.com/wolf/704dae4c-2ec9-4390-9625-abb52c359c4f.mp4"
    "?_jwt=eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjE3NDQ1ODg4MDB9.sig"
)


def png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(buf, format="PNG")
    return buf.getvalue()


def video(**kw: Any) -> VideoRequest:
    kw.setdefault("image", IMG)
    return VideoRequest(**kw)


@pytest.fixture
def universal() -> AimlapiProvider:
    return AimlapiProvider()


@pytest.fixture
def legacy() -> AimlapiProvider:
    return AimlapiProvider(route="legacy")


def generation(provider: AimlapiProvider, body: dict[str, Any] | None = None) -> Generation:
    prepared = provider.prepare(video(prompt="waves"))
    return provider.parse_submit(prepared, body or {"id": "gen-1", "status": "queued"})


# ---- registry and construction ---------------------------------------------------------------


def test_registered_with_universal_route_by_default():
    assert PROVIDERS["aimlapi"] is AimlapiProvider
    assert get_provider("aimlapi").route == "universal"
    assert get_provider("aimlapi", route="legacy").route == "legacy"


def test_unknown_route_is_rejected():
    with pytest.raises(InvalidRequest) as e:
        AimlapiProvider(route="v3")  # type: ignore[arg-type]
    assert e.value.field == "route"
    assert e.value.allowed == ["universal", "legacy"]


def test_capabilities():
    p = AimlapiProvider()
    assert p.name == "aimlapi"
    assert p.default_base_url == BASE
    assert p.accepts_data_uri and p.checks_aspect
    assert not p.can_cancel
    assert 20 * 3600 <= p.retention_seconds <= 48 * 3600


def test_bearer_auth(universal):
    assert universal.auth_headers("sk-1") == {"Authorization": "Bearer sk-1"}


# ---- bodies ----------------------------------------------------------------------------------


def test_universal_gen4_turbo_body_and_call(universal):
    prepared = universal.prepare(video(prompt="dolly in", ratio="16:9", duration=10, seed=7))
    assert prepared.body == {
        "model": "runway/gen4_turbo",
        "prompt": "dolly in",
        "image_url": IMG,
        "aspect_ratio": "16:9",
        "duration": 10,
        "seed": 7,
    }
    call = universal.submit_call(prepared)
    assert (call.method, call.url) == ("POST", f"{BASE}/v2/video/generations")
    assert call.json == prepared.body


def test_legacy_gen4_turbo_body_and_call(legacy):
    prepared = legacy.prepare(video(prompt="dolly in", ratio="9:16", seed=0))
    assert prepared.body == {
        "model": "runway/gen4_turbo",
        "prompt": "dolly in",
        "image_url": IMG,
        "ratio": "9:16",
        "duration": 5,
        "seed": 0,
    }
    call = legacy.submit_call(prepared)
    assert (call.method, call.url) == ("POST", f"{BASE}/v2/generate/video/runway/generation")


def test_gen3a_turbo_model_id_has_no_vendor_prefix(universal):
    # AIMLAPI's gen3a_turbo schema: `model: enum ["gen3a_turbo"]` (gen4_turbo is "runway/...").
    assert universal.prepare(video(model="gen3a_turbo", prompt="x")).body["model"] == "gen3a_turbo"


def test_universal_gen3a_last_frame_is_tail_image_url(universal):
    body = universal.prepare(video(model="gen3a_turbo", prompt="x", last_image=LAST)).body
    assert body["tail_image_url"] == LAST
    assert "last_image_url" not in body


def test_legacy_gen3a_last_frame_is_last_image_url(legacy):
    body = legacy.prepare(video(model="gen3a_turbo", prompt="x", last_image=LAST)).body
    assert body == {
        "model": "gen3a_turbo",
        "prompt": "x",
        "image_url": IMG,
        "last_image_url": LAST,
        "ratio": "16:9",
        "duration": 5,
    }


@pytest.mark.parametrize("prompt", ["", "   "])
def test_empty_prompt_is_left_out(universal, prompt):
    body = universal.prepare(video(prompt=prompt)).body
    assert "prompt" not in body


def test_seed_left_out_when_not_given(universal):
    assert "seed" not in universal.prepare(video()).body


def test_default_ratio_is_16_9(universal):
    assert universal.prepare(video()).body["aspect_ratio"] == "16:9"
    assert universal.prepare(video(model="gen3a_turbo", prompt="x")).body["aspect_ratio"] == "16:9"


# ---- validation ------------------------------------------------------------------------------


def test_image_request_names_the_video_models(universal):
    request = ImageRequest(prompt="a still", reference_images=[{"uri": IMG, "tag": "ref"}])
    with pytest.raises(InvalidRequest) as e:
        universal.prepare(request)
    assert e.value.field == "model"
    assert e.value.allowed == ["gen3a_turbo", "gen4_turbo"]
    assert "gen4_image" in str(e.value)


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ("1280:720", "16:9"),
        ("1920:1080", "16:9"),
        ("720:1280", "9:16"),
        ("960:960", "1:1"),
        ("1104:832", "4:3"),
        ("832:1104", "3:4"),
        ("1584:672", "21:9"),
        ("21:9", "21:9"),
    ],
)
def test_gen4_turbo_ratio_mapping(universal, given, sent):
    assert universal.prepare(video(ratio=given)).body["aspect_ratio"] == sent


@pytest.mark.parametrize(("given", "sent"), [("1280:768", "16:9"), ("768:1280", "9:16"), ("1280:720", "16:9")])
def test_gen3a_turbo_ratio_mapping(legacy, given, sent):
    assert legacy.prepare(video(model="gen3a_turbo", prompt="x", ratio=given)).body["ratio"] == sent


def test_gen3a_turbo_unmappable_ratio_names_allowed(universal):
    with pytest.raises(InvalidRequest) as e:
        universal.prepare(video(model="gen3a_turbo", prompt="x", ratio="1:1"))
    assert e.value.field == "ratio"
    assert e.value.allowed == ["16:9", "9:16"]
    assert e.value.model == "gen3a_turbo"


def test_gen4_turbo_unmappable_ratio_names_allowed(universal):
    with pytest.raises(InvalidRequest) as e:
        universal.prepare(video(ratio="5:4"))
    assert e.value.allowed == ["16:9", "9:16", "4:3", "3:4", "1:1", "21:9"]


@pytest.mark.parametrize("seed", [0, 4_294_967_295])
def test_seed_range_edges_accepted(universal, seed):
    assert universal.prepare(video(seed=seed)).body["seed"] == seed


@pytest.mark.parametrize("seed", [-1, 4_294_967_296])
def test_seed_out_of_range_rejected(universal, seed):
    with pytest.raises(InvalidRequest) as e:
        video(seed=seed)
    assert e.value.field == "seed"
    # the provider's own rule, for a request built without the model's checks
    with pytest.raises(InvalidRequest) as e:
        universal.prepare(VideoRequest.model_construct(
            model="gen4_turbo", image=IMG, prompt="", ratio=None, seed=seed, duration=5,
            last_image=None, image_sha256=None,
        ))
    assert e.value.field == "seed"
    assert e.value.allowed == "0-4294967295"


def test_duration(universal):
    assert universal.prepare(video(duration=10)).body["duration"] == 10
    with pytest.raises(InvalidRequest) as e:
        universal.prepare(video(duration=7))  # Runway's API takes 7 s; AIMLAPI does not
    assert (e.value.field, e.value.allowed, e.value.provider) == ("duration", [5, 10], "aimlapi")
    assert "runway 2-10" in str(e.value) and "aimlapi 5 or 10" in str(e.value)
    with pytest.raises(InvalidRequest) as e:
        video(model="gen3a_turbo", duration=7)
    assert (e.value.field, e.value.allowed) == ("duration", [5, 10])


def test_prompt_length_counts_utf16_units(universal):
    assert utf16_len("😀") == 2
    universal.prepare(video(prompt="😀" * 500))  # exactly 1000 units
    with pytest.raises(InvalidRequest) as e:
        video(prompt="😀" * 500 + "a")
    assert e.value.field == "prompt"


def test_https_and_loopback_http_accepted(universal):
    for url in ("https://cdn.example.com/a.png", "http://127.0.0.1:8765/a.png", "http://localhost/a.png",
                "http://[::1]:9/a.png"):
        assert universal.prepare(video(image=url)).body["image_url"] == url


@pytest.mark.parametrize("url", ["http://example.com/a.png", "ftp://example.com/a.png"])
def test_other_schemes_rejected(universal, url):
    with pytest.raises(InvalidRequest) as e:
        universal.prepare(video(image=url))
    assert e.value.field == "image"


def test_data_uri_accepted_and_not_logged(universal):
    uri = bytes_to_data_uri(png(320, 180))
    prepared = universal.prepare(video(image=uri))
    assert prepared.body["image_url"] == uri
    assert prepared.summary["image_url"].startswith("sha256:")
    assert "base64" not in str(prepared.summary)


def test_local_file_becomes_data_uri(universal, tmp_path):
    path = tmp_path / "still.png"
    path.write_bytes(png(320, 180))
    assert universal.prepare(video(image=str(path))).body["image_url"].startswith("data:image/png;base64,")


@pytest.mark.parametrize(("w", "h"), [(200, 100), (100, 200), (128, 128)])
def test_aspect_within_half_to_two_accepted(universal, w, h):
    universal.prepare(video(image=bytes_to_data_uri(png(w, h))))


@pytest.mark.parametrize(("w", "h"), [(201, 100), (100, 201)])
def test_aspect_outside_half_to_two_rejected(universal, w, h):
    with pytest.raises(InvalidRequest) as e:
        universal.prepare(video(image=bytes_to_data_uri(png(w, h))))
    assert e.value.field == "image"
    assert "0.5 and 2" in str(e.value)


def test_aspect_checked_on_last_frame_too(universal):
    with pytest.raises(InvalidRequest) as e:
        universal.prepare(video(model="gen3a_turbo", prompt="x", last_image=bytes_to_data_uri(png(300, 100))))
    assert e.value.field == "last_image"


def test_last_image_only_on_gen3a(universal):
    with pytest.raises(InvalidRequest) as e:
        universal.prepare(video(last_image=LAST))
    assert e.value.field == "last_image"
    assert e.value.model == "gen4_turbo"


# ---- submit and the recorded route -------------------------------------------------------------


def test_submit_answer_from_the_docs(universal):
    g = generation(universal, {"id": "a12b3456-7c89-0de1-23f4-g567d584f98d", "status": "queued"})
    assert g.job_id == "a12b3456-7c89-0de1-23f4-g567d584f98d"
    assert (g.provider, g.model, g.kind, g.base_url) == ("aimlapi", "gen4_turbo", "video", BASE)
    assert g.status_url == f"{BASE}/v2/video/generations?generation_id=a12b3456-7c89-0de1-23f4-g567d584f98d"


def test_legacy_route_recorded_and_polled(legacy):
    g = generation(legacy)
    assert g.status_url == f"{BASE}/v2/generate/video/runway/generation?generation_id=gen-1"
    call = legacy.status_call(g)
    assert (call.method, call.url) == ("GET", g.status_url)


def test_job_is_polled_on_the_route_it_was_submitted_on(universal, legacy):
    submitted_legacy = generation(legacy)
    assert "/v2/generate/video/runway/generation" in universal.status_call(submitted_legacy).url
    submitted_universal = generation(universal)
    assert legacy.status_call(submitted_universal).url.startswith(f"{BASE}/v2/video/generations?")


def test_status_url_falls_back_to_provider_route(legacy):
    g = generation(legacy).model_copy(update={"status_url": None})
    assert legacy.status_call(g).url == f"{BASE}/v2/generate/video/runway/generation?generation_id=gen-1"


def test_job_id_is_url_encoded(universal):
    g = generation(universal, {"id": "a b&c", "status": "queued"})
    assert g.status_url.endswith("?generation_id=a+b%26c")


@pytest.mark.parametrize("body", [{"status": "queued"}, {"id": ""}, "<html>oops</html>", None, []])
def test_unreadable_submit_answer(universal, body):
    with pytest.raises(BadResponse):
        universal.parse_submit(universal.prepare(video()), body)


def test_no_cancel(universal):
    assert universal.cancel_call(generation(universal)) is None


# ---- status ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("queued", JobState.PENDING),
        ("waiting", JobState.PENDING),
        ("generating", JobState.RUNNING),
        ("some-new-status", JobState.PENDING),
    ],
)
def test_non_terminal_statuses(universal, status, state):
    u = universal.parse_status(generation(universal), 200, {"id": "gen-1", "status": status})
    assert u.state is state
    assert u.raw_status == status
    assert not u.outputs


def test_completed_legacy_list_shape(legacy):
    body = {"id": "d0cddca1-e382-4625-84c9-0817a6441876", "status": "completed", "video": [SIGNED]}
    u = legacy.parse_status(generation(legacy), 200, body)
    assert u.state is JobState.SUCCEEDED
    assert u.outputs == [SIGNED]
    assert u.cost is None
    assert not u.needs_result_call


def test_completed_universal_object_shape_with_credits(universal):
    body = {
        "id": "60ac7c34-3224-4b14-8e7d-0aa0db708325",
        "status": "completed",
        "video": {"url": SIGNED},
        "error": None,
        "meta": {"usage": {"credits_used": 120000}},
    }
    u = universal.parse_status(generation(universal), 200, body)
    assert u.state is JobState.SUCCEEDED
    assert u.outputs == [SIGNED]
    assert u.cost == 120000.0


def test_completed_without_video_asks_again(universal):
    g = generation(universal)
    u = universal.parse_status(g, 200, {"id": "gen-1", "status": "completed", "video": None})
    assert u.state is JobState.SUCCEEDED and u.outputs == []
    assert u.needs_result_call
    assert universal.result_call(g) == universal.status_call(g)


def test_error_with_name_and_message(universal):
    body = {
        "id": "gen-1",
        "status": "error",
        "video": None,
        "error": {"name": "ContentModeration", "message": "The input image was flagged."},
        "meta": {"usage": {"credits_used": 0}},
    }
    u = universal.parse_status(generation(universal), 200, body)
    assert u.state is JobState.FAILED
    assert u.error == "ContentModeration: The input image was flagged."
    assert u.cost == 0.0


def test_failed_with_string_error(legacy):
    u = legacy.parse_status(generation(legacy), 200, {"id": "gen-1", "status": "failed", "error": "boom"})
    assert u.state is JobState.FAILED
    assert u.error == "boom"


def test_error_without_detail_still_says_failed(universal):
    u = universal.parse_status(generation(universal), 200, {"id": "gen-1", "status": "error"})
    assert u.state is JobState.FAILED
    assert "error" in u.error


@pytest.mark.parametrize("body", ["<html><body>Bad gateway</body></html>", {"id": "gen-1"}, None])
def test_unreadable_status_answer(universal, body):
    with pytest.raises(BadResponse):
        universal.parse_status(generation(universal), 200, body)


# ---- errors ----------------------------------------------------------------------------------


def err(status: int, message: str, path: str = "/v2/video/generations") -> dict[str, Any]:
    return {
        "message": message,
        "path": path,
        "requestId": "798b860e-98c2-4e8e-8c50-550bcfc2eccc",
        "statusCode": status,
        "timestamp": "2025-03-11T07:13:27.813Z",
    }


def test_401_is_authentication(universal):
    e = universal.error_for(401, err(401, "This request requires a valid API key."))
    assert isinstance(e, AuthenticationError)
    assert "valid API key" in e.detail


def test_403_out_of_credits(universal):
    message = (
        "You've run out of credits. Please top up your balance or update your payment method "
        "to continue: https://aimlapi.com/app/billing/"
    )
    e = universal.error_for(403, err(403, message))
    assert isinstance(e, InsufficientCredits)
    assert e.status_code == 403


def test_403_other_is_authentication(universal):
    e = universal.error_for(403, err(403, "Forbidden resource"))
    assert isinstance(e, AuthenticationError)
    assert not isinstance(e, InsufficientCredits)


def test_404_on_a_job_is_expired(universal):
    g = generation(universal)
    with pytest.raises(GenerationExpired) as e:
        universal.parse_status(g, 404, err(404, "Generation not found"))
    assert e.value.job_id == "gen-1"


def test_404_on_submit_is_a_rejection(universal):
    assert isinstance(universal.error_for(404, err(404, "Cannot POST /v2/x")), ProviderRejected)


def test_400_body_validation(universal):
    e = universal.error_for(400, err(400, "Body validation error!"))
    assert isinstance(e, ProviderRejected)
    assert e.detail == "Body validation error!"


def test_429_is_rate_limited(universal):
    assert isinstance(universal.error_for(429, err(429, "Too Many Requests")), RateLimited)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_unavailable(universal, status):
    assert isinstance(universal.error_for(status, err(status, "Generation timeout")), ProviderUnavailable)


def test_html_error_page(universal):
    page = "<html><head><title>502</title></head><body><h1>502 Bad Gateway</h1><hr>nginx</body></html>"
    e = universal.error_for(502, page, job_id="gen-1", on_job=True)
    assert isinstance(e, ProviderUnavailable)
    assert "<" not in e.detail and "502 Bad Gateway" in e.detail


def test_5xx_on_poll_raises_typed_error(universal):
    with pytest.raises(ProviderUnavailable):
        universal.parse_status(generation(universal), 500, err(500, "Internal server error"))


# ---- fingerprints ----------------------------------------------------------------------------


def test_fingerprint_is_stable(universal):
    a = universal.prepare(video(prompt="p", seed=1))
    b = AimlapiProvider().prepare(video(prompt="p", seed=1))
    assert a.fingerprint == b.fingerprint
    assert len(a.fingerprint) == 64


def test_fingerprint_differs_across_models_and_providers(universal):
    request = video(prompt="p", ratio="16:9", seed=1)
    fingerprints = {
        universal.prepare(request).fingerprint,
        universal.prepare(video(model="gen3a_turbo", prompt="p", ratio="16:9", seed=1)).fingerprint,
        RunwayProvider().prepare(request).fingerprint,
        SegmindProvider().prepare(request).fingerprint,
    }
    assert len(fingerprints) == 4


def test_fingerprint_uses_image_bytes_not_data_uri_text(universal):
    data = png(64, 64)
    a = universal.prepare(video(image=bytes_to_data_uri(data)))
    b = universal.prepare(video(image=bytes_to_data_uri(data, "image/png")))
    assert a.fingerprint == b.fingerprint
    c = universal.prepare(video(image=bytes_to_data_uri(png(64, 65))))
    assert c.fingerprint != a.fingerprint


# ---- issue 17: the catalogue, options AIMLAPI has no field for, balance ---------------------------



def test_gen3a_turbo_is_still_served_here(universal):
    assert universal.prepare(video(model="gen3a_turbo", prompt="x", duration=10)).body["model"] == "gen3a_turbo"


def test_content_moderation_is_refused_naming_the_field(universal):
    with pytest.raises(UnsupportedOption) as e:
        universal.prepare(video(content_moderation={"public_figure_threshold": "low"}))
    assert (e.value.field, e.value.provider, e.value.model) == ("content_moderation", "aimlapi", "gen4_turbo")


def test_runway_upload_uris_are_refused(universal):
    with pytest.raises(InvalidRequest) as e:
        universal.prepare(video(image="runway://uploads/x", image_sha256="ab" * 32))
    assert (e.value.field, e.value.provider) == ("image", "aimlapi")


def test_gen4_5_is_not_offered_here(universal):
    with pytest.raises(InvalidRequest) as e:
        universal.prepare(video(model="gen4.5", prompt="x"))
    assert e.value.field == "model" and "served by runway" in str(e.value)


BILLING = {
    "balance": 551564495, "lowBalance": False, "lowBalanceThreshold": 10000,
    "lastUpdated": "2025-11-10T10:01:56.824Z", "autoDebitStatus": "disabled",
    "status": "current", "statusExplanation": "Balance is current and up to date",
}


@pytest.mark.parametrize("body", [BILLING, {"data": BILLING}])
def test_balance(universal, body):
    call = universal.balance_call()
    assert (call.method, call.url) == ("GET", f"{BASE}/v2/billing")
    b = universal.parse_balance(200, body)
    assert (b.provider, b.credits, b.low_balance) == ("aimlapi", 551564495.0, False)
    assert "2,000,000" in b.unit


def test_balance_errors(universal):
    with pytest.raises(BadResponse):
        universal.parse_balance(200, {"status": "current"})
    with pytest.raises(InsufficientCredits):
        universal.parse_balance(403, {"message": "You've run out of credits", "statusCode": 403})
