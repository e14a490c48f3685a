"""The chain written once, its retries in one place, its flows small, its parameters grouped."""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import pytest

from prefect_runway.errors import InvalidRequest
from prefect_runway.flows import image_to_video, storyboard
from prefect_runway.flows.markdown import cost_text
from prefect_runway.flows.options import (
    ImageToVideoRun,
    ReviewOptions,
    StillOptions,
    VideoOptions,
    flatten,
    fold,
)
from prefect_runway.flows.parameters import credentials_in_clear

FLOWS = Path(__file__).parents[2] / "prefect_runway" / "flows"
CLI = Path(__file__).parents[2] / "prefect_runway" / "cli"


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text())


def _calls(path: Path) -> set[str]:
    return {node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            for node in ast.walk(_tree(path)) if isinstance(node, ast.Call)}


@pytest.mark.parametrize("folder", [FLOWS, CLI])
def test_no_function_over_80_lines_and_no_module_over_500(folder):
    for path in sorted(folder.glob("*.py")):
        text = path.read_text()
        assert len(text.splitlines()) <= 500, f"{path.name}: {len(text.splitlines())} lines"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                span = node.end_lineno - node.lineno  # type: ignore[operator]
                assert span < 80, f"{path.name}: {node.name} spans {span} lines"


def test_both_flows_run_the_one_chain_and_check_balances_once():
    # Neither flow module runs a job itself: every still and video goes through Chain.
    for module in ("generation.py", "storyboard.py"):
        assert {"still", "video"} <= _calls(FLOWS / module), module
    assert "run_generation" not in _calls(FLOWS / "storyboard.py")
    assert "still_reference" not in _calls(FLOWS / "storyboard.py")
    assert "still_reference" not in _calls(FLOWS / "generation.py")
    balance_checks = [
        (path.name, node.name) for path in FLOWS.glob("*.py")
        for node in ast.walk(_tree(path))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and "balances" in node.name
    ]
    assert balance_checks == [("chain.py", "check_balances")]


def test_the_collect_retries_have_one_home():
    from prefect_runway.flows import retries
    from prefect_runway.tasks.collect import COLLECT_RETRY_DELAYS, collect_generation

    assert collect_generation.retries == len(COLLECT_RETRY_DELAYS)
    assert collect_generation.retry_delay_seconds == list(COLLECT_RETRY_DELAYS)
    assert retries.COLLECT_RETRY_DELAYS is COLLECT_RETRY_DELAYS
    # No flow reads the settings of a task it never runs.
    for path in FLOWS.glob("*.py"):
        assert "collect_generation" not in path.read_text(), path.name


def test_every_retry_and_resubmit_is_named_in_one_place():
    from prefect_runway.flows.retries import Retries

    named = Retries.__doc__ or ""
    for kind in ("collect retry", "expired resubmit", "unsafe-output retry", "internal resubmit",
                 "fallback", "review regeneration"):
        assert f"**{kind}**" in named
    assert {"expired_resubmit", "unsafe_output_retry", "internal_resubmit"} <= set(vars(Retries))


def test_the_run_form_has_a_dozen_parameters_not_thirty_one():
    assert len(image_to_video.parameters.properties) <= 12
    assert len(storyboard.parameters.properties) <= 10
    definitions = image_to_video.parameters.definitions
    assert {"StillOptions", "VideoOptions", "ImageToVideoRun", "ReviewOptions"} <= set(definitions)
    # Each option says what it is, in the form.
    for name in ("StillOptions", "VideoOptions", "ImageToVideoRun", "ReviewOptions"):
        for field, schema in definitions[name]["properties"].items():
            assert schema.get("description"), f"{name}.{field}"


def test_flat_keywords_fold_into_their_groups_and_back():
    hints = typing.get_type_hints(image_to_video.fn)
    flat = {"still_prompt": "a", "video_model": "gen3a_turbo", "duration": 10,
            "reference_images": [{"uri": "https://example.com/a.png", "tag": "a"}],
            "image_credentials": "segmind-credentials/x", "review_timeout": 5, "review": True,
            "timeout": 30, "retry_unsafe_output": 2}
    folded = fold(flat, hints)
    assert folded == {
        "still_prompt": "a", "review": True,
        "still": {"reference_images": flat["reference_images"],
                  "credentials": "segmind-credentials/x"},
        "video": {"model": "gen3a_turbo", "duration": 10},
        "run": {"timeout": 30, "retry_unsafe_output": 2},
        "review_options": {"timeout": 5},
    }
    assert flatten(folded, hints) == flat
    # A group given as a model, with flat keywords beside it: both kept.
    both = fold({"video": VideoOptions(model="gen3a_turbo"), "duration": 10}, hints)
    assert both["video"] == {"model": "gen3a_turbo", "duration": 10}
    assert VideoOptions(**both["video"]).duration == 10
    assert StillOptions().reference_images == [] and ImageToVideoRun().preview == "gif"
    assert ReviewOptions().on_timeout == "fail"


def test_a_mistyped_option_in_a_group_names_it_and_the_allowed_ones():
    hints = typing.get_type_hints(image_to_video.fn)
    with pytest.raises(InvalidRequest) as caught:
        flatten({"video": {"modle": "gen4_turbo"}}, hints)
    assert caught.value.field == "video.modle"
    assert "allowed: " in str(caught.value) and "model" in str(caught.value)


def test_a_groups_credentials_given_as_a_mapping_are_not_stored():
    cleaned, found = credentials_in_clear({"still": {"credentials": {"api_key": "sk-one"}},
                                           "video": {"fallback": [{"api_key": "sk-two"}]}})
    assert found == ["still.credentials", "video.fallback[0]"]
    assert "sk-" not in str(cleaned)


def test_the_finishing_steps_credentials_given_as_a_mapping_are_not_stored():
    cleaned, found = credentials_in_clear({"video": {"model": "gen4_turbo", "finish": {
        "model": "enhance_frame_rate", "credentials": {"api_key": "sk-three"}}}})
    assert found == ["video.finish.credentials"]
    assert "sk-" not in str(cleaned) and cleaned["video"]["finish"]["model"] == "enhance_frame_rate"


def test_costs_have_one_format_and_always_their_unit():
    assert [cost_text(1, "credits"), cost_text(0.15, "credits"), cost_text(0.0035, "USD")] == [
        "1.00 credits", "0.15 credits", "0.0035 USD"]
    assert cost_text(None, "USD") == ""
