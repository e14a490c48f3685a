"""Faults can be in force from the emulator's start: constructor and command line."""

from __future__ import annotations

import httpx

from prefect_runway.emulator import Emulator, EmulatorConfig
from prefect_runway.emulator.server import build_parser, faults_from_args


def test_command_line_fault_flags_make_a_plan():
    args = build_parser().parse_args(
        ["--rate-limit", "20", "--faults", '{"random": {"429": 0.1, "502": 0.05}, "seed": 7}']
    )
    plan = faults_from_args(args)
    assert plan is not None
    assert plan.rate_limit_per_key == 20
    assert plan.random == {"429": 0.1, "502": 0.05} and plan.seed == 7
    assert faults_from_args(build_parser().parse_args([])) is None


def test_constructor_faults_apply_to_the_first_call():
    plan = {"scripted": [{"route": "segmind.submit", "nth": 1, "fault": "503"}], "retry_after": 0}
    with Emulator(EmulatorConfig(latency=0.1, video_fps=2), faults=plan) as emu:
        answer = httpx.post(f"{emu.url}/v2/runway-gen4-image", headers={"x-api-key": "k"},
                            json={"promptText": "p", "referenceImages": [{"uri": "https://e.com/a.png", "tag": "ref"}]})
        assert answer.status_code == 503
        assert emu.stats()["segmind"]["faults"] == {"503": 1}


def test_command_line_provider_switch():
    args = build_parser().parse_args(
        ["--faults", '{"providers": {"segmind": "unavailable", "runway": "empty"}}']
    )
    plan = faults_from_args(args)
    assert plan is not None and not plan.empty
    assert plan.providers == {"segmind": "unavailable", "runway": "empty"}
    with Emulator(EmulatorConfig(latency=0.1, video_fps=2), faults=plan) as emu:
        answer = httpx.post(f"{emu.url}/v2/runway-gen4-image", headers={"x-api-key": "k"},
                            json={"promptText": "p", "referenceImages": [
                                {"uri": "https://e.com/a.png", "tag": "ref"}]})
        assert answer.status_code == 503 and answer.json() == {
            "error": "Service temporarily unavailable"}
        assert emu.stats()["runway"]["empty"] and emu.stats()["runway"]["credits_remaining"] == 0
