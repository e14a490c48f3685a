"""The model catalogue (prefect_runway.models.catalogue): status, rules, one source of truth.

Pure data and pure functions; the SDK's own types referee the Runway rules.
"""

from __future__ import annotations

import pickle
from datetime import date
from typing import get_args, get_origin, get_type_hints

import pytest
from runwayml.types.image_to_video_create_params import Gen4_5, Gen4Turbo
from runwayml.types.text_to_image_create_params import Gen4Image, Gen4ImageTurbo
from typing_extensions import Required

from prefect_runway.errors import InvalidRequest, ModelRetired
from prefect_runway.models import IMAGE_MODELS, VIDEO_MODELS, ImageRequest, VideoRequest, catalogue
from prefect_runway.models.catalogue import ModelStatus
from prefect_runway.providers import PROVIDERS, get_provider


def test_every_entry_names_its_sources_and_the_day_they_were_checked():
    for e in catalogue.CATALOGUE:
        assert e.sources, (e.provider, e.model)
        assert e.checked <= date(2026, 12, 1)
        assert (e.status is ModelStatus.RETIRED) == (e.retired_on is not None)


def test_statuses():
    assert catalogue.status("runway", "gen3a_turbo") is ModelStatus.RETIRED
    assert catalogue.status("runway", "gen4_aleph") is ModelStatus.RETIRED
    assert catalogue.status("runway", "gen4_image_turbo") is ModelStatus.NEW
    assert catalogue.status("runway", "gen4.5") is ModelStatus.NEW
    assert catalogue.status("segmind", "gen3a_turbo") is ModelStatus.SERVED
    assert catalogue.status("aimlapi", "gen3a_turbo") is ModelStatus.SERVED
    assert catalogue.status("aimlapi", "gen4_image") is None


def test_retired_entries_name_date_and_replacement():
    gen3a = catalogue.entry("runway", "gen3a_turbo")
    assert (gen3a.retired_on, gen3a.replacement) == (date(2026, 7, 30), "gen4_turbo")
    assert catalogue.entry("runway", "gen4_aleph").replacement == "aleph2"


def test_served_by():
    assert catalogue.served_by("gen3a_turbo") == ("segmind", "aimlapi")
    assert catalogue.served_by("gen4_turbo") == ("runway", "segmind", "aimlapi")
    assert catalogue.served_by("gen4_image_turbo") == ("runway",)
    assert catalogue.served_by("gen4_aleph") == ()


def test_providers_take_their_tables_from_the_catalogue():
    for name, cls in PROVIDERS.items():
        assert cls.models == catalogue.specs(name)
        assert cls.limits is catalogue.LIMITS[name]
        assert all(catalogue.status(name, m).usable for m in cls.models)


def test_request_vocabulary_covers_every_request_model():
    kinds = {e.model: e.spec.kind for e in catalogue.CATALOGUE}
    assert {m for m, k in kinds.items() if k == "image"} == set(IMAGE_MODELS)
    assert {m for m, k in kinds.items() if k == "video"} == set(VIDEO_MODELS)


def test_durations():
    assert catalogue.durations("gen4_turbo", "runway") == tuple(range(2, 11))
    assert catalogue.durations("gen4_turbo", "segmind") == (5, 10)
    assert catalogue.durations("gen4_turbo") == tuple(range(2, 11))
    assert catalogue.durations("gen4.5") == tuple(range(2, 11))
    assert catalogue.durations("gen3a_turbo") == (5, 10)
    assert catalogue.describe_durations("gen4_turbo") == "runway 2-10; segmind 5 or 10; aimlapi 5 or 10"


def _literal(params: type, key: str) -> set[str]:
    return set(get_args(get_type_hints(params)[key]))


@pytest.mark.parametrize(
    ("model", "params"),
    [("gen4_image", Gen4Image), ("gen4_image_turbo", Gen4ImageTurbo), ("gen4_turbo", Gen4Turbo),
     ("gen4.5", Gen4_5)],
)
def test_runway_rules_agree_with_the_sdk(model, params):
    spec = catalogue.entry("runway", model).spec
    assert set(spec.ratios) == _literal(params, "ratio")
    assert spec.wire_name in _literal(params, "model")
    # every model that takes contentModeration in the SDK says so here
    assert spec.content_moderation is ("content_moderation" in get_type_hints(params))
    # required in the SDK <=> required here
    required = {k for k, v in get_type_hints(params, include_extras=True).items()
                if get_origin(v) is Required}
    assert ("reference_images" in required) is (spec.min_reference_images > 0)
    if spec.kind == "video":
        assert ("prompt_text" in required) is spec.requires_prompt


def test_the_sdk_still_counts_usage_of_the_retired_models():
    # runwayml 5.24 removed gen3a_turbo and gen4_aleph from the create params, but its usage
    # report still names them: retired models, not unknown ones.
    import inspect

    from runwayml.types import image_to_video_create_params as i2v
    from runwayml.types import organization_retrieve_usage_response as usage

    assert "gen3a_turbo" in inspect.getsource(usage) and "gen4_aleph" in inspect.getsource(usage)
    assert "gen3a_turbo" not in inspect.getsource(i2v)


def test_check_model_refuses_retired_before_anything_is_sent():
    with pytest.raises(ModelRetired) as e:
        catalogue.check_model("runway", "gen4_aleph")
    assert (e.value.replacement, e.value.served_by) == ("aleph2", [])
    with pytest.raises(ModelRetired):
        get_provider("runway").prepare(VideoRequest(image="https://e.com/a.png", model="gen3a_turbo", prompt="p"))
    # served elsewhere: keeps working there
    for name in ("segmind", "aimlapi"):
        get_provider(name).prepare(VideoRequest(image="https://e.com/a.png", model="gen3a_turbo", prompt="p"))


def test_model_retired_is_an_invalid_request_and_pickles():
    with pytest.raises(ModelRetired) as e:
        catalogue.check_model("runway", "gen3a_turbo")
    err = e.value
    assert isinstance(err, InvalidRequest) and isinstance(err, ValueError)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is ModelRetired
    assert (str(back), back.replacement, back.served_by, back.retired_on) == (
        str(err), "gen4_turbo", ["segmind", "aimlapi"], date(2026, 7, 30))


def test_unknown_model_names_who_serves_it():
    with pytest.raises(InvalidRequest) as e:
        catalogue.check_model("aimlapi", "gen4_image_turbo")
    assert "served by runway" in str(e.value)
    assert e.value.allowed == ["gen3a_turbo", "gen4_turbo"]
    with pytest.raises(InvalidRequest) as e:
        catalogue.check_model("runway", "gen4_turbo", kind="image")
    assert e.value.field == "model"


# Fingerprints computed by the code before the catalogue (main at 52a9fdf): the new request
# fields (content moderation, sha256 of reference images) enter the canonical request only
# when set, so stored runs still match.
GOLDEN = [
    ("runway", ImageRequest(prompt="a @style", reference_images=[{"uri": "https://e.com/r.png", "tag": "style"}], seed=3),
     "86ce37ba3b62b4f1ce19d8325203d67b5aba697ae63295211606145e3bd2583e"),
    ("runway", VideoRequest(image="https://e.com/a.png", prompt="p", ratio="16:9", seed=1),
     "5c4288a22276137c3216b4b96b627bb5ca79d16249004c1b49555326b406065f"),
    ("runway", VideoRequest(image="https://e.com/a.png?sig=1", image_sha256="ab" * 32),
     "88930b757da0a6510b9784d43630fc7a71ebd81974c8603ab78bf6894c8bb213"),
    ("segmind", VideoRequest(image="https://e.com/a.png", prompt="p", model="gen3a_turbo", seed=5),
     "7de5ff5af142617f3d37c4a2c0d3dc16091f7041bbf4f0e9035b36768046387e"),
    ("aimlapi", VideoRequest(image="https://e.com/a.png", model="gen3a_turbo", last_image="https://e.com/b.png"),
     "af4d105f973fb9121f5dd263486061eee85417282bcdc46ec04dda0ac8bb2941"),
]


@pytest.mark.parametrize(("provider", "request_", "fingerprint"), GOLDEN)
def test_existing_fingerprints_do_not_change(provider, request_, fingerprint):
    assert get_provider(provider).prepare(request_).fingerprint == fingerprint
