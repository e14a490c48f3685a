"""The fallback policy: which failures prove a provider did not take a job, and the routes
checked before anything is sent. No network: credentials blocks only prepare requests."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from pydantic import SecretStr

from prefect_runway import (
    AimlapiCredentials,
    InvalidRequest,
    RunwayCredentials,
    SegmindCredentials,
    VideoRequest,
)
from prefect_runway.errors import (
    AuthenticationError,
    BadResponse,
    DailyQuotaExceeded,
    GenerationFailed,
    InsufficientCredits,
    ModelRetired,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    SubmissionInDoubt,
    SubmissionUncertain,
    UnsupportedOption,
)
from prefect_runway.flows.fallback import (
    DEFAULT_REASONS,
    REASONS,
    FallbackPolicy,
    StepFallback,
    check_fallback_on,
    failure_reason,
)
from prefect_runway.flows.parameters import check_parameters
from prefect_runway.flows.routing import load_route
from prefect_runway.models import PLACEHOLDER_IMAGE, Generation
from prefect_runway.tasks.ledger_records import Intent

URL = "https://emulator.invalid"


def _creds(cls: type, url: str = URL) -> object:
    return cls(api_key=SecretStr("unit-key"), base_url=url)


def test_the_default_set_is_every_reason():
    assert check_fallback_on(None) == DEFAULT_REASONS == frozenset(REASONS)
    assert set(REASONS) == {"unavailable", "rate_limited", "daily_quota",
                            "insufficient_credits", "model_unsupported"}
    assert FallbackPolicy().reasons == DEFAULT_REASONS
    assert FallbackPolicy.parse(None).reasons == DEFAULT_REASONS


def test_reasons_as_a_list_or_a_comma_separated_string_and_none_at_all():
    assert check_fallback_on(["unavailable"]) == {"unavailable"}
    assert check_fallback_on("unavailable, insufficient_credits") == {
        "unavailable", "insufficient_credits"}
    assert check_fallback_on([]) == frozenset()  # never fall back


@pytest.mark.parametrize("value", [["unavailable", "bogus"], "timeout", [3], 5])
def test_an_unknown_reason_is_a_typed_error_naming_the_field_and_the_reasons(value):
    with pytest.raises(InvalidRequest) as info:
        check_fallback_on(value)
    assert info.value.field == "fallback_on"
    assert info.value.allowed == sorted(REASONS)


def test_the_flows_check_fallback_on_with_their_other_parameters():
    with pytest.raises(InvalidRequest) as info:
        check_parameters({"fallback_on": ["outage"]})
    assert info.value.field == "fallback_on" and "outage" in str(info.value)
    check_parameters({"fallback_on": ["rate_limited"]})


def _intent() -> Intent:
    now = datetime.now(timezone.utc)
    return Intent(scope="s", fingerprint="f" * 64, provider="segmind", api_origin=URL,
                  model="gen4_turbo", created_at=now, attempt_id="a", host="h", pid=1)


@pytest.mark.parametrize("error, reason", [
    (ProviderUnavailable("x", provider="segmind", status_code=503), "unavailable"),
    (ProviderUnavailable("could not connect", provider="segmind"), "unavailable"),
    (RateLimited("x", provider="segmind", status_code=429), "rate_limited"),
    (DailyQuotaExceeded("x", provider="runway", status_code=429), "daily_quota"),
    (InsufficientCredits("x", provider="segmind", status_code=406), "insufficient_credits"),
    (InsufficientCredits("x", provider="aimlapi", status_code=403), "insufficient_credits"),
    (InsufficientCredits("x", provider="runway", status_code=400), "insufficient_credits"),
    (ModelRetired("gen3a_turbo", provider="runway"), "model_unsupported"),
    (UnsupportedOption("last_image", "no field", provider="segmind"), "model_unsupported"),
    # The provider may have taken (and billed) the job: never.
    (SubmissionUncertain("lost", fingerprint="f" * 64, provider="segmind"), None),
    (SubmissionUncertain("500", fingerprint="f" * 64, provider="segmind", status_code=500), None),
    (ProviderUnavailable("x", provider="segmind", status_code=502), None),
    (BadResponse("x", provider="segmind", status_code=200), None),
    # Not a provider's refusal to serve: fix it, do not go elsewhere.
    (AuthenticationError("x", provider="segmind", status_code=401), None),
    (ProviderRejected("x", provider="segmind", status_code=400), None),
    (InvalidRequest("duration", "3 is not allowed"), None),
    (GenerationFailed("x", provider="segmind", job_id="j"), None),
    (RuntimeError("boom"), None),
])
def test_only_failures_that_prove_no_job_allow_a_fallback(error, reason):
    assert failure_reason(error) == reason
    assert FallbackPolicy().reason(error) == reason


def test_an_earlier_submit_in_doubt_never_falls_back():
    assert failure_reason(SubmissionInDoubt(_intent())) is None


def test_the_policy_allows_only_its_reasons():
    policy = FallbackPolicy.parse(["insufficient_credits"])
    assert policy.reason(InsufficientCredits("x", status_code=406)) == "insufficient_credits"
    assert policy.reason(ProviderUnavailable("x", status_code=503)) is None


def _video(model: str = "gen4_turbo", duration: int = 5, ratio: str | None = "16:9") -> VideoRequest:
    return VideoRequest(image=PLACEHOLDER_IMAGE, prompt="drift", model=model, duration=duration,
                        ratio=ratio)


async def test_each_fallback_provider_is_checked_before_sending():
    runway = _creds(RunwayCredentials)
    route = await load_route("video", runway, [_creds(SegmindCredentials)], "video_fallback")
    with pytest.raises(InvalidRequest) as info:
        route.check(_video(duration=3))  # Runway takes 2-10 s, Segmind 5 or 10
    assert info.value.field == "duration" and info.value.provider == "segmind"
    assert info.value.allowed == [5, 10]
    assert "video_fallback[0]" in str(info.value)
    # A ratio in another vocabulary is mapped per provider, not refused.
    assert route.check(_video(ratio="16:9")).primary is runway


async def test_a_retired_model_moves_the_step_to_the_next_provider_at_plan_time():
    runway, segmind = _creds(RunwayCredentials), _creds(SegmindCredentials)
    route = await load_route("video", runway, [segmind], "video_fallback")
    route.check(_video(model="gen3a_turbo"))
    assert route.primary is segmind and route.fallbacks == []
    assert [(s.provider, s.reason, s.stage) for s in route.skipped] == [
        ("runway", "model_unsupported", "plan")]
    # Not a reason for this run: the retired model is the error it always was.
    strict = await load_route("video", runway, [segmind], "video_fallback",
                              FallbackPolicy.parse(["unavailable"]))
    with pytest.raises(ModelRetired):
        strict.check(_video(model="gen3a_turbo"))


async def test_a_route_names_a_provider_once():
    segmind = _creds(SegmindCredentials)
    with pytest.raises(InvalidRequest) as info:
        await load_route("video", segmind, [_creds(AimlapiCredentials), _creds(SegmindCredentials)],
                         "video_fallback")
    assert info.value.field == "video_fallback[1]"
    with pytest.raises(InvalidRequest) as info:
        await load_route("video", segmind, ["not-a-block-name"], "video_fallback")
    assert info.value.field == "video_fallback[0]"


def _generation(provider: str) -> Generation:
    return Generation(provider=provider, model="gen4_turbo", kind="video", job_id=f"{provider}-job",
                      fingerprint="f" * 64, base_url=URL)


async def _step(refusals: dict[str, BaseException]) -> tuple[StepFallback, list[str], object]:
    segmind, aimlapi, runway = (_creds(SegmindCredentials), _creds(AimlapiCredentials),
                                _creds(RunwayCredentials))
    route = await load_route("video", segmind, [aimlapi, runway], "video_fallback")
    route.check(_video())

    async def build(_: object) -> VideoRequest:
        return _video()

    step = StepFallback(route, build, "harbour")
    tried: list[str] = []

    async def submit(prepared, credentials, last):
        tried.append(f"{credentials.provider_name}{' last' if last else ''}")
        assert prepared.provider == credentials.provider_name
        if credentials.provider_name in refusals:
            raise refusals[credentials.provider_name]
        return _generation(credentials.provider_name)

    from prefect_runway.blocks.requests import prepare

    return step, tried, (prepare(_video(), segmind), segmind, submit)


async def test_refusals_walk_the_route_in_order_and_are_recorded():
    step, tried, (prepared, segmind, submit) = await _step({
        "segmind": ProviderUnavailable("down", provider="segmind", status_code=503),
        "aimlapi": InsufficientCredits("empty", provider="aimlapi", status_code=403),
    })
    served = await step.submit(prepared, segmind, None, submit)
    assert tried == ["segmind", "aimlapi", "runway last"]  # the last keeps the task's retries
    assert served.credentials.provider_name == "runway" and served.prepared.provider == "runway"
    assert served.reseed is not None and served.reseed(7).summary.get("seed") == 7
    assert [(s.provider, s.reason, s.stage) for s in step.skipped] == [
        ("segmind", "unavailable", "submit"), ("aimlapi", "insufficient_credits", "submit")]


async def test_no_fallback_after_a_doubt():
    step, tried, (prepared, segmind, submit) = await _step({
        "segmind": SubmissionUncertain("lost", fingerprint="f" * 64, provider="segmind"),
    })
    with pytest.raises(SubmissionUncertain):
        await step.submit(prepared, segmind, None, submit)
    assert tried == ["segmind"] and step.skipped == []


async def test_the_last_refusal_is_raised_with_every_skip_noted():
    down = {p: ProviderUnavailable("down", provider=p, status_code=503)
            for p in ("segmind", "aimlapi", "runway")}
    step, tried, (prepared, segmind, submit) = await _step(down)
    with pytest.raises(ProviderUnavailable) as info:
        await step.submit(prepared, segmind, None, submit)
    assert tried == ["segmind", "aimlapi", "runway last"]
    assert info.value.provider == "runway"
    assert any("segmind skipped (unavailable" in n and "aimlapi skipped" in n
               for n in info.value.__notes__)


def test_a_shot_names_its_own_fallbacks_as_a_list_or_a_csv_cell():
    from prefect_runway import Shot
    from prefect_runway.flows.shots import parse_shots

    shot = Shot(still_prompt="s", video_fallback="aimlapi-credentials/a | runway-credentials/b")
    assert shot.video_fallback == ["aimlapi-credentials/a", "runway-credentials/b"]
    assert Shot(still_prompt="s", image_fallback=["runway-credentials/b"]).image_fallback == [
        "runway-credentials/b"]
    rows = parse_shots("name,still_prompt,video_fallback\nh,s,aimlapi-credentials/a|runway-credentials/b\n",
                       "csv")
    assert rows[0].video_fallback == ["aimlapi-credentials/a", "runway-credentials/b"]
    with pytest.raises(InvalidRequest) as info:
        Shot(still_prompt="s", video_fallback=[3])
    assert info.value.field == "video_fallback" or info.value.field.startswith("video_fallback")
