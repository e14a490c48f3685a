"""Runway translation: bodies, validation, task parsing, error classes, and agreement with the
official ``runwayml`` SDK (its request serialisation over a mock transport, its task types).

No network: the SDK talks to an ``httpx.MockTransport``.
"""

from __future__ import annotations

import io
import json
from typing import Any, get_args, get_type_hints

import httpx
import pytest
from PIL import Image
from pydantic import TypeAdapter
from runwayml import RunwayML
from runwayml.resources.uploads import _RunwayCreateUploadArguments, _RunwayUploadStartedResponse
from runwayml.types import OrganizationRetrieveResponse, TaskRetrieveResponse
from runwayml.types.image_to_video_create_params import Gen4_5, Gen4Turbo
from runwayml.types.text_to_image_create_params import Gen4Image, Gen4ImageTurbo

from prefect_runway.errors import (
    AuthenticationError,
    BadResponse,
    ContentRejected,
    DailyQuotaExceeded,
    GenerationExpired,
    GenerationFailed,
    GenerationInternalError,
    InsufficientCredits,
    InvalidAsset,
    InvalidRequest,
    ModelRetired,
    OutputRejected,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    UploadRequired,
)
from prefect_runway.models import (
    Generation,
    ImageRequest,
    JobState,
    VideoRequest,
    bytes_to_data_uri,
    utf16_len,
)
from prefect_runway.models.catalogue import GEN4_IMAGE_RATIOS, GEN4_TURBO_RATIOS
from prefect_runway.providers import PROVIDERS, get_provider
from prefect_runway.providers import runway as runway_module
from prefect_runway.providers.aimlapi import AimlapiProvider
from prefect_runway.providers.runway import (
    MAX_DATA_URI_BYTES,
    FailureKind,
    RunwayProvider,
    classify_failure,
)
from prefect_runway.providers.wire import UploadForm, data_uri_length

BASE = "https://api.dev.runwayml.com"
IMG = "https://example.com/first.png"
LAST = "https://example.com/last.png"
REF = "https://example.com/style.png"
CREATED = "2024-06-27T19:49:32.334Z"


def signed(n: int) -> str:
    return f"https://dnznrvs05pmza.cloudfront.net/abc/{n}.mp4?_jwt=eyJhbGciOiJIUzI1NiJ9.e30.sig{n}"


def png(width: int, height: int, pad_to: int | None = None) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(buf, format="PNG")
    data = buf.getvalue()
    if pad_to is not None:  # trailing bytes after IEND: still a PNG of that size
        data += b"\0" * (pad_to - len(data))
    return data


def video(**kw: Any) -> VideoRequest:
    kw.setdefault("image", IMG)
    return VideoRequest(**kw)


def still(**kw: Any) -> ImageRequest:
    kw.setdefault("prompt", "a lighthouse at dusk in the style of @style")
    kw.setdefault("reference_images", [{"uri": REF, "tag": "style"}])
    return ImageRequest(**kw)


@pytest.fixture
def runway() -> RunwayProvider:
    return RunwayProvider()


def generation(provider: RunwayProvider, kind: str = "video") -> Generation:
    prepared = provider.prepare(video(prompt="waves") if kind == "video" else still())
    return provider.parse_submit(prepared, {"id": "17f20503-6c24-4c16-946b-35dbbce2af2f"})


# ---- registry, headers -----------------------------------------------------------------------


def test_registered():
    assert PROVIDERS["runway"] is RunwayProvider
    assert isinstance(get_provider("runway"), RunwayProvider)


def test_capabilities(runway):
    assert runway.default_base_url == BASE
    assert runway.can_cancel and runway.checks_aspect and runway.accepts_data_uri
    assert runway.max_data_uri_bytes == 5 * 1024 * 1024
    assert 20 * 3600 <= runway.retention_seconds <= 48 * 3600


def test_headers(runway):
    assert runway.auth_headers("key_1") == {
        "Authorization": "Bearer key_1",
        "X-Runway-Version": "2024-11-06",
    }


# ---- bodies ----------------------------------------------------------------------------------


def test_gen4_image_body_and_call(runway):
    prepared = runway.prepare(still(ratio="1920:1080", seed=42))
    assert prepared.body == {
        "model": "gen4_image",
        "promptText": "a lighthouse at dusk in the style of @style",
        "ratio": "1920:1080",
        "referenceImages": [{"uri": REF, "tag": "style"}],
        "seed": 42,
    }
    call = runway.submit_call(prepared)
    assert (call.method, call.url, call.json) == ("POST", f"{BASE}/v1/text_to_image", prepared.body)


def test_gen4_image_without_references_and_default_ratio(runway):
    body = runway.prepare(still(prompt="a red door", reference_images=[])).body
    assert body == {"model": "gen4_image", "promptText": "a red door", "ratio": "1280:720"}


def test_gen4_turbo_body_and_call(runway):
    prepared = runway.prepare(video(prompt="slow dolly in", ratio="1584:672", duration=10, seed=4_294_967_295))
    assert prepared.body == {
        "model": "gen4_turbo",
        "promptImage": IMG,
        "promptText": "slow dolly in",
        "ratio": "1584:672",
        "duration": 10,
        "seed": 4_294_967_295,
    }
    call = runway.submit_call(prepared)
    assert (call.method, call.url) == ("POST", f"{BASE}/v1/image_to_video")


def test_gen4_turbo_prompt_optional(runway):
    body = runway.prepare(video()).body
    assert "promptText" not in body
    assert body["ratio"] == "1280:720"


def test_gen3a_turbo_is_retired_on_runway(runway):
    # Runway retired Gen-3 Alpha Turbo on 2026-07-30; Segmind and AIMLAPI still serve it.
    with pytest.raises(ModelRetired) as e:
        runway.prepare(video(model="gen3a_turbo", prompt="waves", last_image=LAST))
    err = e.value
    assert isinstance(err, InvalidRequest)
    assert (err.field, err.model, err.provider) == ("model", "gen3a_turbo", "runway")
    assert (err.replacement, str(err.retired_on)) == ("gen4_turbo", "2026-07-30")
    assert err.served_by == ["segmind", "aimlapi"]
    assert "gen3a_turbo" not in err.allowed and "gen4_turbo" in err.allowed
    assert "use 'gen4_turbo' instead" in str(err) and "segmind, aimlapi" in str(err)


def test_gen4_5_body(runway):
    body = runway.prepare(video(model="gen4.5", prompt="waves", duration=7, ratio="16:9", seed=2)).body
    assert body == {
        "model": "gen4.5", "promptImage": IMG, "promptText": "waves", "ratio": "1280:720",
        "duration": 7, "seed": 2,
    }


def test_gen4_5_needs_a_prompt(runway):
    with pytest.raises(InvalidRequest) as e:
        runway.prepare(video(model="gen4.5"))
    assert (e.value.field, e.value.model) == ("prompt", "gen4.5")


# ---- the SDK serialises the same bodies ----------------------------------------------------------


def sdk_request(call) -> httpx.Request:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "DELETE":
            return httpx.Response(204)
        return httpx.Response(200, json={"id": "task-1"})

    transport = httpx.MockTransport(handler)
    with httpx.Client(transport=transport) as http:
        client = RunwayML(api_key="key_1", base_url=BASE, http_client=http, max_retries=0)
        call(client)
    (request,) = seen
    return request


def test_sdk_agrees_on_image_to_video(runway):
    prepared = runway.prepare(video(prompt="hi", ratio="720:1280", seed=3))
    sent = sdk_request(lambda c: c.image_to_video.create(
        model="gen4_turbo", prompt_image=IMG, prompt_text="hi", ratio="720:1280", duration=5, seed=3,
    ))
    ours = runway.submit_call(prepared)
    assert (sent.method, str(sent.url)) == (ours.method, ours.url)
    assert json.loads(sent.content) == prepared.body
    assert sent.headers["authorization"] == runway.auth_headers("key_1")["Authorization"]
    assert sent.headers["x-runway-version"] == runway.auth_headers("key_1")["X-Runway-Version"]


def test_sdk_agrees_on_text_to_image(runway):
    prepared = runway.prepare(still(ratio="1080:1080", seed=9))
    sent = sdk_request(lambda c: c.text_to_image.create(
        model="gen4_image", prompt_text=prepared.body["promptText"], ratio="1080:1080",
        reference_images=[{"uri": REF, "tag": "style"}], seed=9,
    ))
    assert str(sent.url) == runway.submit_call(prepared).url
    assert json.loads(sent.content) == prepared.body


def test_sdk_agrees_on_cancel(runway):
    g = generation(runway)
    sent = sdk_request(lambda c: c.tasks.delete(g.job_id))
    ours = runway.cancel_call(g)
    assert (sent.method, str(sent.url)) == (ours.method, ours.url)


# ---- ratios ----------------------------------------------------------------------------------


def sdk_ratios(params: type) -> set[str]:
    return set(get_args(get_type_hints(params)["ratio"]))


def test_gen4_image_ratio_set_is_the_sdks():
    assert sdk_ratios(Gen4Image) == set(GEN4_IMAGE_RATIOS)
    assert len(GEN4_IMAGE_RATIOS) == 16


def test_gen4_turbo_ratio_set_is_the_sdks():
    assert sdk_ratios(Gen4Turbo) == set(GEN4_TURBO_RATIOS)


@pytest.mark.parametrize("ratio", GEN4_IMAGE_RATIOS)
def test_every_gen4_image_ratio_passes_unchanged(runway, ratio):
    assert runway.prepare(still(ratio=ratio)).body["ratio"] == ratio


@pytest.mark.parametrize(
    ("given", "sent"),
    [("16:9", "1280:720"), ("9:16", "720:1280"), ("1:1", "960:960"), ("4:3", "1104:832"),
     ("3:4", "832:1104"), ("21:9", "1584:672"), ("1920:1080", "1280:720"), ("1280:768", "1280:720")],
)
def test_gen4_turbo_ratio_mapping(runway, given, sent):
    assert runway.prepare(video(ratio=given)).body["ratio"] == sent


@pytest.mark.parametrize(("given", "sent"), [("16:9", "1280:720"), ("1:1", "960:960"), ("21:9", "1584:672")])
def test_gen4_5_ratio_mapping(runway, given, sent):
    assert runway.prepare(video(model="gen4.5", prompt="x", ratio=given)).body["ratio"] == sent


@pytest.mark.parametrize(
    ("given", "sent"),
    [("16:9", "1280:720"), ("4:3", "960:720"), ("1:1", "720:720"), ("21:9", "1680:720"),
     ("1104:832", "960:720")],
)
def test_gen4_image_generic_ratios_map_to_the_720p_member(runway, given, sent):
    assert runway.prepare(still(ratio=given)).body["ratio"] == sent


def test_unmappable_ratio_names_allowed(runway):
    with pytest.raises(InvalidRequest) as e:
        runway.prepare(video(ratio="5:4"))
    assert e.value.field == "ratio"
    assert e.value.allowed == list(GEN4_TURBO_RATIOS)
    with pytest.raises(InvalidRequest) as e:
        runway.prepare(still(ratio="2:1"))
    assert e.value.allowed == list(GEN4_IMAGE_RATIOS)


# ---- other rules -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [-1, 4_294_967_296])
def test_seed_range(runway, seed):
    with pytest.raises(InvalidRequest) as e:
        video(seed=seed)
    assert e.value.field == "seed"
    with pytest.raises(InvalidRequest) as e:
        runway.prepare(ImageRequest.model_construct(
            model="gen4_image", prompt="p", ratio=None, seed=seed, reference_images=[],
        ))
    assert (e.value.field, e.value.allowed, e.value.provider) == ("seed", "0-4294967295", "runway")


@pytest.mark.parametrize("model", ["gen4_turbo", "gen4.5"])
def test_duration_2_to_10(runway, model):
    for seconds in range(2, 11):
        assert runway.prepare(video(model=model, prompt="x", duration=seconds)).body["duration"] == seconds
    with pytest.raises(InvalidRequest) as e:
        video(model=model, duration=11)
    assert (e.value.field, e.value.allowed) == ("duration", list(range(2, 11)))
    with pytest.raises(InvalidRequest) as e:
        runway.prepare(VideoRequest.model_construct(
            model=model, image=IMG, prompt="x", ratio=None, seed=None, duration=1,
            last_image=None, image_sha256=None, content_moderation=None,
        ))
    assert (e.value.field, e.value.allowed, e.value.provider) == ("duration", list(range(2, 11)), "runway")


def test_prompt_length_in_utf16_units(runway):
    assert utf16_len("👩‍🚀") == 5  # a ZWJ sequence: 2 + 1 + 2 units
    runway.prepare(still(prompt="😀" * 500))
    with pytest.raises(InvalidRequest) as e:
        still(prompt="😀" * 501)
    assert e.value.field == "prompt"


def test_reference_images_at_most_three(runway):
    refs = [{"uri": REF, "tag": f"ref{i}"} for i in range(4)]
    runway.prepare(still(reference_images=refs[:3]))
    with pytest.raises(InvalidRequest) as e:
        runway.prepare(still(reference_images=refs))
    assert e.value.field == "reference_images"
    assert e.value.allowed == "0-3 images"


@pytest.mark.parametrize("tag", ["ab", "1abc", "a-bc", "has space", "x" * 17, "_abc"])
def test_bad_reference_tags(tag):
    with pytest.raises(InvalidRequest) as e:
        still(reference_images=[{"uri": REF, "tag": tag}])
    assert e.value.field == "reference_images.tag"


@pytest.mark.parametrize("tag", ["abc", "Style_2", "x" * 16])
def test_good_reference_tags(runway, tag):
    assert runway.prepare(still(reference_images=[{"uri": REF, "tag": tag}])).body["referenceImages"][0]["tag"] == tag


def test_duplicate_reference_tags(runway):
    with pytest.raises(InvalidRequest) as e:
        still(reference_images=[{"uri": REF, "tag": "same"}, {"uri": IMG, "tag": "same"}])
    assert e.value.field == "reference_images.tag"


def test_http_only_for_loopback(runway):
    assert runway.prepare(video(image="http://127.0.0.1:8000/media/x.png")).body["promptImage"].startswith("http://")
    with pytest.raises(InvalidRequest) as e:
        runway.prepare(video(image="http://example.com/x.png"))
    assert e.value.field == "image"
    with pytest.raises(InvalidRequest) as e:
        runway.prepare(still(reference_images=[{"uri": "http://example.com/r.png", "tag": "ref"}]))
    assert e.value.field == "reference_images.uri"


def largest_inline_image() -> int:
    """The most image bytes whose PNG data URI is at most 5 MiB long (Runway counts the URI)."""
    n = (MAX_DATA_URI_BYTES - len("data:image/png;base64,")) // 4 * 3
    assert data_uri_length(n, "image/png") <= MAX_DATA_URI_BYTES < data_uri_length(n + 1, "image/png")
    return n


def test_data_uri_limit_is_5_mb_of_encoded_uri(runway):
    n = largest_inline_image()
    at_limit = bytes_to_data_uri(png(64, 48, pad_to=n))
    assert len(at_limit) <= MAX_DATA_URI_BYTES
    assert runway.prepare(video(image=at_limit)).body["promptImage"] == at_limit
    over = bytes_to_data_uri(png(64, 48, pad_to=n + 1))
    with pytest.raises(UploadRequired) as e:
        runway.prepare(video(image=over))
    assert e.value.field == "image"
    assert (e.value.size, e.value.limit) == (n + 1, MAX_DATA_URI_BYTES)
    assert e.value.allowed == f"at most {5 * 1024 * 1024} bytes"
    assert "POST /v1/uploads" in str(e.value)
    # the same image is fine where the limit is 16 MB
    AimlapiProvider().prepare(video(image=over))


def test_data_uri_limit_applies_to_local_files(runway, tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(png(64, 48, pad_to=MAX_DATA_URI_BYTES + 1))
    with pytest.raises(InvalidRequest) as e:
        runway.prepare(still(reference_images=[{"uri": str(path), "tag": "big"}]))
    assert e.value.field == "reference_images.uri"


def test_aspect_checked(runway):
    runway.prepare(video(image=bytes_to_data_uri(png(200, 100))))
    with pytest.raises(InvalidRequest) as e:
        runway.prepare(video(image=bytes_to_data_uri(png(250, 100))))
    assert e.value.field == "image"
    assert "0.5 and 2" in str(e.value)


def test_last_image_only_on_gen3a(runway):
    with pytest.raises(InvalidRequest) as e:
        runway.prepare(video(prompt="x", last_image=LAST))
    assert (e.value.field, e.value.model) == ("last_image", "gen4_turbo")


# ---- submit, poll, cancel --------------------------------------------------------------------


def test_submit_answer(runway):
    g = generation(runway)
    assert g.job_id == "17f20503-6c24-4c16-946b-35dbbce2af2f"
    assert g.status_url == f"{BASE}/v1/tasks/17f20503-6c24-4c16-946b-35dbbce2af2f"
    assert runway.status_call(g).url == g.status_url
    assert runway.status_call(g).method == "GET"


@pytest.mark.parametrize("body", [{}, {"id": 5}, {"task": {"id": "x"}}, "<html/>", None])
def test_unreadable_submit_answer(runway, body):
    with pytest.raises(BadResponse):
        runway.parse_submit(runway.prepare(video()), body)


def test_cancel_call(runway):
    g = generation(runway)
    call = runway.cancel_call(g)
    assert (call.method, call.url) == ("DELETE", f"{BASE}/v1/tasks/{g.job_id}")


# Task bodies, each checked against the SDK's TaskRetrieveResponse first.
TASKS: dict[str, dict[str, Any]] = {
    "PENDING": {"id": "t", "status": "PENDING", "createdAt": CREATED, "estimatedCost": {"credits": 25}},
    "THROTTLED": {"id": "t", "status": "THROTTLED", "createdAt": CREATED, "estimatedCost": {"credits": 25}},
    "RUNNING": {"id": "t", "status": "RUNNING", "createdAt": CREATED, "estimatedCost": {"credits": 25},
                "progress": 0.42},
    "SUCCEEDED": {"id": "t", "status": "SUCCEEDED", "createdAt": CREATED, "cost": {"credits": 25},
                  "output": [signed(1)]},
    "FAILED": {"id": "t", "status": "FAILED", "createdAt": CREATED, "cost": {"credits": 0},
               "failure": "Your input was flagged by our content moderation system.",
               "failureCode": "SAFETY.INPUT.IMAGE"},
    "CANCELLED": {"id": "t", "status": "CANCELLED", "createdAt": CREATED, "cost": {"credits": 0}},
}


@pytest.mark.parametrize("status", sorted(TASKS))
def test_fixtures_are_sdk_shaped(status):
    assert TypeAdapter(TaskRetrieveResponse).validate_python(TASKS[status]).status == status


@pytest.mark.parametrize(("status", "state"), [("PENDING", JobState.PENDING), ("THROTTLED", JobState.PENDING)])
def test_pending_statuses(runway, status, state):
    u = runway.parse_status(generation(runway), 200, TASKS[status])
    assert (u.state, u.raw_status) == (state, status)
    assert u.metrics == {"created_at": CREATED, "estimated_credits": 25.0}
    assert u.cost is None


def test_running_with_progress(runway):
    u = runway.parse_status(generation(runway), 200, TASKS["RUNNING"])
    assert u.state is JobState.RUNNING
    assert u.progress == 0.42


def test_succeeded(runway):
    u = runway.parse_status(generation(runway), 200, TASKS["SUCCEEDED"])
    assert u.state is JobState.SUCCEEDED
    assert u.outputs == [signed(1)]
    assert u.cost == 25.0
    assert not u.needs_result_call


def test_each_fetch_returns_the_fresh_urls(runway):
    g = generation(runway)
    first = runway.parse_status(g, 200, TASKS["SUCCEEDED"])
    again = runway.parse_status(g, 200, {**TASKS["SUCCEEDED"], "output": [signed(2), signed(3)]})
    assert first.outputs == [signed(1)]
    assert again.outputs == [signed(2), signed(3)]


def test_succeeded_without_output_asks_again(runway):
    g = generation(runway, kind="image")
    u = runway.parse_status(g, 200, {**TASKS["SUCCEEDED"], "output": []})
    assert u.needs_result_call
    assert runway.result_call(g) == runway.status_call(g)


def test_failed(runway):
    u = runway.parse_status(generation(runway), 200, TASKS["FAILED"])
    assert u.state is JobState.FAILED
    assert u.error == "Your input was flagged by our content moderation system."
    assert u.failure_code == "SAFETY.INPUT.IMAGE"
    assert u.cost == 0.0


def test_failed_without_code(runway):
    body = {k: v for k, v in TASKS["FAILED"].items() if k != "failureCode"}
    u = runway.parse_status(generation(runway), 200, body)
    assert u.state is JobState.FAILED and u.failure_code is None


def test_cancelled(runway):
    assert runway.parse_status(generation(runway), 200, TASKS["CANCELLED"]).state is JobState.CANCELLED


def test_unknown_status_is_pending(runway):
    u = runway.parse_status(generation(runway), 200, {"id": "t", "status": "ARCHIVING", "createdAt": CREATED})
    assert (u.state, u.raw_status) == (JobState.PENDING, "ARCHIVING")


@pytest.mark.parametrize("body", ["<!DOCTYPE html><html><body>Oops</body></html>", {"id": "t"}, []])
def test_unreadable_status(runway, body):
    with pytest.raises(BadResponse):
        runway.parse_status(generation(runway), 200, body)


# ---- errors ----------------------------------------------------------------------------------


def test_401(runway):
    e = runway.error_for(401, {"error": "Invalid API key."})
    assert isinstance(e, AuthenticationError) and e.detail == "Invalid API key."


def test_403(runway):
    assert isinstance(runway.error_for(403, {"error": "Forbidden"}), AuthenticationError)


def test_400_out_of_credits(runway):
    e = runway.error_for(400, {"error": "You do not have enough credits to run this task."})
    assert isinstance(e, InsufficientCredits)
    assert e.status_code == 400


def test_400_validation(runway):
    body = {"error": "Validation of body failed", "issues": [{"path": ["ratio"], "message": "Invalid enum value"}]}
    e = runway.error_for(400, body)
    assert isinstance(e, ProviderRejected) and not isinstance(e, InsufficientCredits)


def test_404_on_a_task_is_expired(runway):
    with pytest.raises(GenerationExpired) as e:
        runway.parse_status(generation(runway), 404, {"error": "Task not found."})
    assert e.value.job_id == "17f20503-6c24-4c16-946b-35dbbce2af2f"


def test_429(runway):
    assert isinstance(runway.error_for(429, {"error": "Too many requests."}), RateLimited)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx(runway, status):
    assert isinstance(runway.error_for(status, {"error": "Internal error"}), ProviderUnavailable)


def test_html_error_page(runway):
    page = "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>"
    with pytest.raises(ProviderUnavailable) as e:
        runway.parse_status(generation(runway), 503, page)
    assert e.value.detail == "503 Service Temporarily Unavailable"


# ---- fingerprints ----------------------------------------------------------------------------


def test_fingerprint_stable_and_distinct(runway):
    assert runway.prepare(still(seed=1)).fingerprint == RunwayProvider().prepare(still(seed=1)).fingerprint
    request = video(prompt="p", ratio="16:9", seed=1)
    prints = {
        runway.prepare(request).fingerprint,
        runway.prepare(video(model="gen4.5", prompt="p", ratio="16:9", seed=1)).fingerprint,
        AimlapiProvider().prepare(request).fingerprint,
        runway.prepare(still(seed=1)).fingerprint,
    }
    assert len(prints) == 4


def test_fingerprint_follows_image_sha256_not_url(runway):
    a = runway.prepare(video(image=IMG + "?X-Amz-Signature=1", image_sha256="ab" * 32))
    b = runway.prepare(video(image=IMG + "?X-Amz-Signature=2", image_sha256="ab" * 32))
    assert a.fingerprint == b.fingerprint
    assert "Signature" not in json.dumps(a.summary)


# ---- issue 17: new models, content moderation ------------------------------------------------------




def test_gen4_image_turbo_body(runway):
    prepared = runway.prepare(still(model="gen4_image_turbo", ratio="1080:1920", seed=5))
    assert prepared.body == {
        "model": "gen4_image_turbo",
        "promptText": "a lighthouse at dusk in the style of @style",
        "ratio": "1080:1920",
        "referenceImages": [{"uri": REF, "tag": "style"}],
        "seed": 5,
    }
    assert runway.submit_call(prepared).url == f"{BASE}/v1/text_to_image"


def test_gen4_image_turbo_needs_one_to_three_references(runway):
    refs = [{"uri": REF, "tag": f"ref{i}"} for i in range(4)]
    runway.prepare(still(model="gen4_image_turbo", reference_images=refs[:1]))
    runway.prepare(still(model="gen4_image_turbo", reference_images=refs[:3]))
    for given in ([], refs):
        with pytest.raises(InvalidRequest) as e:
            runway.prepare(still(model="gen4_image_turbo", reference_images=given))
        assert (e.value.field, e.value.allowed, e.value.model) == (
            "reference_images", "1-3 images", "gen4_image_turbo")


def test_new_models_ratio_sets_are_the_sdks():
    assert sdk_ratios(Gen4ImageTurbo) == set(GEN4_IMAGE_RATIOS)
    assert sdk_ratios(Gen4_5) == set(GEN4_TURBO_RATIOS)


@pytest.mark.parametrize("threshold", ["auto", "low"])
@pytest.mark.parametrize("model", ["gen4_image", "gen4_image_turbo", "gen4_turbo", "gen4.5"])
def test_content_moderation_is_sent_on_every_model_that_takes_it(runway, model, threshold):
    moderation = {"public_figure_threshold": threshold}
    if model.startswith("gen4_image"):
        prepared = runway.prepare(still(model=model, content_moderation=moderation))
    else:
        prepared = runway.prepare(video(model=model, prompt="x", content_moderation=moderation))
    assert prepared.body["contentModeration"] == {"publicFigureThreshold": threshold}
    plain = (runway.prepare(still(model=model)) if model.startswith("gen4_image")
             else runway.prepare(video(model=model, prompt="x")))
    assert "contentModeration" not in plain.body
    assert prepared.fingerprint != plain.fingerprint


def test_sdk_agrees_on_content_moderation_and_gen4_5(runway):
    prepared = runway.prepare(video(model="gen4.5", prompt="hi", duration=3, ratio="960:960",
                                    content_moderation={"public_figure_threshold": "low"}))
    sent = sdk_request(lambda c: c.image_to_video.create(
        model="gen4.5", prompt_image=IMG, prompt_text="hi", ratio="960:960", duration=3,
        content_moderation={"public_figure_threshold": "low"},
    ))
    assert json.loads(sent.content) == prepared.body


def test_sdk_agrees_on_gen4_image_turbo(runway):
    prepared = runway.prepare(still(model="gen4_image_turbo", ratio="720:720"))
    sent = sdk_request(lambda c: c.text_to_image.create(
        model="gen4_image_turbo", prompt_text=prepared.body["promptText"], ratio="720:720",
        reference_images=[{"uri": REF, "tag": "style"}],
    ))
    assert json.loads(sent.content) == prepared.body


@pytest.mark.parametrize("bad", [{"public_figure_threshold": "high"}, {"publicFigureThreshold": "low"}, "low"])
def test_bad_content_moderation_names_the_field(bad):
    with pytest.raises(InvalidRequest) as e:
        video(content_moderation=bad)
    assert e.value.field.startswith("content_moderation")


# ---- uploads (pure parts) --------------------------------------------------------------------------


def test_upload_call_is_the_sdks():
    call = RunwayProvider().upload_call("still.png", "http://127.0.0.1:9/")
    assert (call.method, call.url) == ("POST", "http://127.0.0.1:9/v1/uploads")
    assert call.json == _RunwayCreateUploadArguments(filename="still.png").model_dump()
    assert call.json == {"filename": "still.png", "type": "ephemeral"}


UPLOAD_ANSWER = {
    "uploadUrl": "https://uploads.example.com/form",
    "fields": {"key": "abc/still.png", "policy": "p0", "x-amz-signature": "s0"},
    "runwayUri": "runway://uploads/abc",
}


def test_parse_upload(runway):
    assert _RunwayUploadStartedResponse.model_validate(UPLOAD_ANSWER).runwayUri == UPLOAD_ANSWER["runwayUri"]
    form = runway.parse_upload(200, UPLOAD_ANSWER)
    assert form == UploadForm(url=UPLOAD_ANSWER["uploadUrl"], fields=UPLOAD_ANSWER["fields"],
                              uri="runway://uploads/abc", file_field="file")


@pytest.mark.parametrize("body", [
    {}, {**UPLOAD_ANSWER, "runwayUri": "https://x/y"}, {**UPLOAD_ANSWER, "fields": {"a": 1}},
    {**UPLOAD_ANSWER, "uploadUrl": None}, "<html/>", None,
])
def test_unreadable_upload_answer(runway, body):
    with pytest.raises(BadResponse):
        runway.parse_upload(200, body)


def test_upload_error_answers_are_typed(runway):
    with pytest.raises(AuthenticationError):
        raise runway.parse_upload(401, {"error": "bad key"})
    with pytest.raises(ProviderRejected):
        raise runway.parse_upload(400, {"error": "bad filename"})


def test_small_images_need_no_upload_unless_asked(runway, tmp_path):
    small = bytes_to_data_uri(png(64, 48))
    assert runway.uploads_needed(video(image=small)) == []
    assert runway.uploads_needed(video(image=IMG), force=True) == []
    (pending,) = runway.uploads_needed(video(image=small), force=True)
    assert (pending.field, pending.media_type, pending.size) == ("image", "image/png", len(png(64, 48)))
    assert pending.filename.endswith(".png")


def test_a_12_mb_local_still_needs_an_upload_and_keeps_its_sha256_identity(runway, tmp_path):
    import hashlib

    data = png(64, 48, pad_to=12 * 1024 * 1024)
    path = tmp_path / "big still.png"
    path.write_bytes(data)
    request = video(image=str(path), prompt="waves", duration=8)
    with pytest.raises(UploadRequired) as e:
        runway.prepare(request)  # refused inline: nothing would be sent
    assert e.value.field == "image" and e.value.size == len(data)
    (pending,) = runway.uploads_needed(request)
    assert (pending.field, pending.filename) == ("image", "big still.png")
    assert pending.sha256 == hashlib.sha256(data).hexdigest()
    uploaded = runway.apply_uploads(request, {"image": "runway://uploads/one"}, [pending])
    assert (uploaded.image, uploaded.image_sha256) == ("runway://uploads/one", pending.sha256)
    first = runway.prepare(uploaded)
    assert first.body["promptImage"] == "runway://uploads/one"
    # another upload of the same bytes is the same request; the URI is never fingerprinted
    again = runway.prepare(runway.apply_uploads(request, {"image": "runway://uploads/two"}, [pending]))
    assert first.fingerprint == again.fingerprint
    assert "runway://" not in json.dumps(first.summary)
    assert first.summary["promptImage"] == f"sha256:{pending.sha256}"


def test_an_uploaded_image_and_the_same_image_inline_are_the_same_request(runway):
    inline = video(image=bytes_to_data_uri(png(64, 48)), prompt="p", seed=1)
    (pending,) = runway.uploads_needed(inline, force=True)
    uploaded = runway.apply_uploads(inline, {"image": "runway://u/1"}, [pending])
    assert runway.prepare(uploaded).fingerprint == runway.prepare(inline).fingerprint


def test_reference_images_upload_too(runway):
    refs = [{"uri": REF, "tag": "style"}, {"uri": bytes_to_data_uri(png(32, 32)), "tag": "hero"}]
    request = still(model="gen4_image_turbo", reference_images=refs)
    (pending,) = runway.uploads_needed(request, force=True)
    assert pending.field == "reference_images[1].uri"
    uploaded = runway.apply_uploads(request, {pending.field: "runway://u/ref"}, [pending])
    assert [r.uri for r in uploaded.reference_images] == [REF, "runway://u/ref"]
    assert runway.prepare(uploaded).fingerprint == runway.prepare(request).fingerprint


def test_a_runway_uri_needs_its_sha256(runway):
    with pytest.raises(InvalidRequest) as e:
        runway.prepare(video(image="runway://uploads/x"))
    assert (e.value.field, e.value.provider) == ("image_sha256", "runway")
    with pytest.raises(InvalidRequest) as e:
        runway.prepare(still(reference_images=[{"uri": "runway://uploads/x", "tag": "style"}]))
    assert e.value.field == "reference_images.sha256"
    ok = runway.prepare(video(image="runway://uploads/x", image_sha256="AB" * 32))
    assert ok.summary["promptImage"] == "sha256:" + "ab" * 32


def test_over_200_mb_cannot_be_uploaded_either(runway, monkeypatch, tmp_path):
    monkeypatch.setattr(runway_module, "MAX_UPLOAD_BYTES", 6 * 1024 * 1024)
    path = tmp_path / "huge.png"
    path.write_bytes(png(64, 48, pad_to=6 * 1024 * 1024 + 1))
    with pytest.raises(InvalidRequest) as e:
        runway.uploads_needed(video(image=str(path)))
    assert not isinstance(e.value, UploadRequired)
    assert e.value.allowed == f"at most {6 * 1024 * 1024} bytes (Runway's upload limit)"


def test_limits_are_data():
    limits = RunwayProvider.limits
    assert (limits.data_uri, limits.url, limits.upload) == (5 * 2**20, 16 * 2**20, 200 * 2**20)
    assert limits.upload_scheme == "runway"


# ---- throttling, failure codes -----------------------------------------------------------------


def test_throttled_is_pending_with_its_reason(runway):
    u = runway.parse_status(generation(runway), 200, TASKS["THROTTLED"])
    assert (u.state, u.throttled) == (JobState.PENDING, True)
    assert "concurrency limit" in u.throttle_reason
    p = runway.parse_status(generation(runway), 200, TASKS["PENDING"])
    assert (p.throttled, p.throttle_reason) == (False, None)


FAILURES = [
    ("SAFETY.INPUT.IMAGE", FailureKind.INPUT_REJECTED, ContentRejected),
    ("SAFETY.INPUT.TEXT", FailureKind.INPUT_REJECTED, ContentRejected),
    ("INPUT_PREPROCESSING.SAFETY.TEXT", FailureKind.INPUT_REJECTED, ContentRejected),
    ("SAFETY.OUTPUT.VIDEO", FailureKind.OUTPUT_REJECTED, OutputRejected),
    ("INTERNAL", FailureKind.INTERNAL, GenerationInternalError),
    ("INTERNAL.BAD_OUTPUT", FailureKind.INTERNAL, GenerationInternalError),
    ("INTERNAL.BAD_OUTPUT.CODE01", FailureKind.INTERNAL, GenerationInternalError),
    ("INPUT_PREPROCESSING.INTERNAL", FailureKind.INTERNAL, GenerationInternalError),
    ("ASSET.INVALID", FailureKind.ASSET_INVALID, InvalidAsset),
]


@pytest.mark.parametrize(("code", "kind", "cls"), FAILURES)
def test_failure_codes_map_to_typed_errors(runway, code, kind, cls):
    assert classify_failure(code) is kind
    body = {**TASKS["FAILED"], "failureCode": code, "failure": "it failed", "cost": {"credits": 0}}
    assert TypeAdapter(TaskRetrieveResponse).validate_python(body).status == "FAILED"
    g = generation(runway)
    u = runway.parse_status(g, 200, body)
    err = runway.failure_error(g, u)
    assert type(err) is cls and isinstance(err, GenerationFailed)
    assert (err.failure_code, err.job_id, err.detail, err.charged) == (code, g.job_id, "it failed", False)
    assert err.final is (cls in (ContentRejected, InvalidAsset))
    assert err.retryable_with_new_seed is (cls is OutputRejected)
    assert err.resubmittable is (cls is GenerationInternalError)
    assert not err.retryable


def test_a_charged_internal_failure_says_so(runway):
    g = generation(runway)
    body = {**TASKS["FAILED"], "failureCode": "INTERNAL", "cost": {"credits": 25}}
    err = runway.failure_error(g, runway.parse_status(g, 200, body))
    assert isinstance(err, GenerationInternalError) and err.charged is True
    body.pop("cost")
    assert runway.failure_error(g, runway.parse_status(g, 200, body)).charged is None


@pytest.mark.parametrize("code", [None, "", "SOMETHING.NEW"])
def test_unknown_failure_codes_stay_plain_generation_failed(runway, code):
    g = generation(runway)
    body = {**TASKS["FAILED"], "failureCode": code}
    err = runway.failure_error(g, runway.parse_status(g, 200, body))
    assert type(err) is GenerationFailed


def test_failure_errors_survive_pickling(runway):
    import pickle

    g = generation(runway)
    err = runway.failure_error(g, runway.parse_status(g, 200, TASKS["FAILED"]))
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is ContentRejected
    assert (str(back), back.failure_code, back.charged, back.job_id) == (
        str(err), err.failure_code, err.charged, err.job_id)


def test_daily_quota_429_on_create(runway):
    err = runway.error_for(429, {"error": "You have exceeded your daily generation limit for this model."})
    assert isinstance(err, DailyQuotaExceeded) and isinstance(err, RateLimited) and not err.retryable
    assert type(runway.error_for(429, {"error": "Too many requests"})) is RateLimited


# ---- balance ---------------------------------------------------------------------------------


ORGANIZATION = {
    "creditBalance": 1200,
    "tier": {"maxMonthlyCreditSpend": 10000, "models": {
        "gen4_turbo": {"maxConcurrentGenerations": 2, "maxDailyGenerations": 50},
        "gen4_image": {"maxConcurrentGenerations": None, "maxDailyGenerations": None},
    }},
    "usage": {"models": {"gen4_turbo": {"dailyGenerations": 12}, "gen4.5": {"dailyGenerations": 1}}},
}


def test_balance_call_is_the_sdks(runway):
    sent = sdk_request(lambda c: c.organization.retrieve())
    ours = runway.balance_call(BASE)
    assert (sent.method, str(sent.url)) == (ours.method, ours.url)


def test_parse_organization(runway):
    OrganizationRetrieveResponse.model_validate(ORGANIZATION)
    b = runway.parse_balance(200, ORGANIZATION)
    assert (b.provider, b.credits, b.unit, b.max_monthly_credit_spend) == ("runway", 1200.0, "runway credits", 10000)
    turbo = b.limits("gen4_turbo")
    assert (turbo.max_concurrent_generations, turbo.max_daily_generations, turbo.daily_generations) == (2, 50, 12)
    assert turbo.daily_remaining == 38
    assert b.limits("gen4_image").daily_remaining is None
    assert b.limits("gen4.5").daily_generations == 1
    assert b.limits("gen3a_turbo") is None


@pytest.mark.parametrize("body", [{}, {"creditBalance": "many"}, "<html/>", None])
def test_unreadable_organization(runway, body):
    with pytest.raises(BadResponse):
        runway.parse_balance(200, body)


def test_organization_error_answers_are_typed(runway):
    with pytest.raises(AuthenticationError):
        runway.parse_balance(401, {"error": "bad key"})
