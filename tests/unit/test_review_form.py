"""The review gate's pure parts: its settings, its form, its variants (nothing is sent)."""

from __future__ import annotations

import pydantic
import pytest
from pydantic import SecretStr

from prefect_runway import InvalidRequest, SegmindCredentials
from prefect_runway.flows.parameters import check_parameters
from prefect_runway.flows.review import ReviewItem
from prefect_runway.flows.review_form import review_form, review_settings, timeout_answer
from prefect_runway.models import ImageRequest

REF = [{"uri": "https://example.com/ref.png", "tag": "hero"}]


def _credentials() -> SegmindCredentials:
    return SegmindCredentials(api_key=SecretStr("k"), base_url="http://127.0.0.1:9")


def test_settings_defaults_and_values():
    settings = review_settings()
    assert (settings.timeout, settings.on_timeout, settings.mode, settings.variants) == (
        3600.0, "fail", "auto", 1)
    assert review_settings("30", "approve", "pause", 3).variants == 3


@pytest.mark.parametrize(
    ("kwargs", "field", "allowed"),
    [
        ({"on_timeout": "later"}, "on_timeout", ["fail", "reject", "approve"]),
        ({"review_mode": "x"}, "review_mode", ["auto", "pause", "suspend"]),
        ({"review_timeout": -1}, "review_timeout", "a number of seconds > 0"),
        ({"review_timeout": True}, "review_timeout", "a number of seconds > 0"),
        ({"variants": 2.5}, "variants", "1-8"),
        ({"variants": 2, "review": False}, "variants", "1 without review; 1-8 with review=True"),
    ],
)
def test_bad_settings_name_the_field_and_the_allowed_values(kwargs, field, allowed):
    with pytest.raises(InvalidRequest) as info:
        review_settings(**kwargs)
    assert info.value.field == field
    assert info.value.allowed == allowed


def test_flow_parameters_are_checked_with_the_review_settings():
    with pytest.raises(InvalidRequest) as info:
        check_parameters({"review": True, "on_timeout": "whenever"})
    assert info.value.field == "on_timeout"
    check_parameters({"review": True, "on_timeout": "reject", "variants": 2})


def test_the_form_requires_an_answer_and_prefills_approve():
    form = review_form(["a", "b"], variants=2, description="look")
    schema = form.model_json_schema()
    assert schema["required"] == ["shots"]  # resuming without an answer is refused
    assert schema["properties"]["shots"]["default"] == [
        {"shot": "a", "decision": "approve", "variant": 1},
        {"shot": "b", "decision": "approve", "variant": 1},
    ]
    shot = schema["$defs"]["ShotDecision"]["properties"]
    assert shot["shot"]["enum"] == ["a", "b"]
    assert (shot["variant"]["minimum"], shot["variant"]["maximum"]) == (1, 2)
    with pytest.raises(pydantic.ValidationError):
        form()
    with pytest.raises(pydantic.ValidationError):
        form(shots=[{"shot": "c"}])
    answer = form(shots=[{"shot": "a", "decision": "reject"},
                         {"shot": "a", "decision": "regenerate", "seed": 3}])
    assert answer.decisions()["a"].decision == "regenerate"  # the last one holds


def test_timeout_answers():
    assert timeout_answer(["a"], "approve") == {
        "shots": [{"shot": "a", "decision": "approve", "variant": 1}]}
    assert timeout_answer(["a", "b"], "reject")["shots"][1]["decision"] == "reject"


def test_variants_are_distinct_seeds_and_the_same_on_a_rerun():
    credentials = _credentials()
    seeded = ReviewItem("a", ImageRequest(prompt="a @hero", reference_images=REF, seed=10),
                        credentials)
    assert [p.fingerprint for p in seeded.variant_requests(1)] == [
        seeded.rebuild().fingerprint]
    seeds = [p.body.get("seed") for p in seeded.variant_requests(3)]
    assert seeds == [10, 11, 12]
    unseeded = ReviewItem("b", ImageRequest(prompt="b @hero", reference_images=REF), credentials)
    first = [p.fingerprint for p in unseeded.variant_requests(3)]
    assert len(set(first)) == 3
    assert first == [p.fingerprint for p in unseeded.variant_requests(3)]


def test_a_regenerated_prompt_is_checked_before_anything_is_sent():
    item = ReviewItem("a", ImageRequest(prompt="a @hero", reference_images=REF, seed=1),
                      _credentials())
    assert item.rebuild(seed=5, still_prompt="another @hero").fingerprint != item.rebuild().fingerprint
    with pytest.raises(InvalidRequest):
        item.rebuild(still_prompt="x" * 5000)
