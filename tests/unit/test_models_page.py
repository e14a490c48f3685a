"""``prefect-runway models`` and the docs' models page: every model of every endpoint with
its rules and price, the page always the command's output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from prefect_runway.cli import main
from prefect_runway.cli.models import models_page
from prefect_runway.models.runway_api import RUNWAY_API
from prefect_runway.money.prices import PriceTable, UnknownPrice

PAGE = Path(__file__).resolve().parents[2] / "docs" / "models.md"


def test_the_docs_page_is_the_commands_output():
    # regenerate with: prefect-runway models > docs/models.md
    assert PAGE.read_text(encoding="utf-8") == models_page()


def test_every_model_of_every_endpoint_has_a_row():
    page = models_page()
    for endpoint, models in RUNWAY_API.items():
        assert f"### `{endpoint}` ({len(models)} models)" in page
        for model in models:
            assert f"| `{model}` |" in page


def test_a_row_states_the_rules_and_the_price():
    rows = {line.split(" | ")[0]: line for line in models_page("image_to_video").splitlines()}
    veo = rows["| `veo3.1`"]
    assert "1280:720, 720:1280, 1080:1920, 1920:1080" in veo
    assert "| 4 or 6 or 8 | first, last |" in veo
    assert "`audio` true / false" in veo
    assert "20 credits a second; +20 with audio true or unset" in veo
    assert "| *unknown* |" in rows["| `veo3.1_fast`"]
    turbo = models_page("text_to_image").splitlines()
    assert any("`gen4_image_turbo`" in r and "`reference_images` (1-3)" in r for r in turbo)


def test_a_price_given_on_the_block_is_shown():
    prices = PriceTable.default().with_overrides(
        {"runway": {"veo3.1_fast": {"amount": 15, "unit": "credits", "per": "second"}}})
    assert "15 credits a second" in models_page("image_to_video", prices)


def test_the_command_prints_one_endpoint(capsys):
    assert main(["models", "--endpoint", "text_to_video"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("### `text_to_video`")
    assert "image_to_video" not in out.split("\n", 1)[1]


def test_an_unknown_endpoint_is_a_usage_mistake():
    done = subprocess.run([sys.executable, "-m", "prefect_runway.cli", "models", "--endpoint",
                           "video_to_audio"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "text_to_video" in done.stderr  # the allowed values named


def test_a_price_rule_in_words():
    table = PriceTable.default()
    assert table.entry("runway", "gen4_image").describe() == (
        "5 credits (720p), 8 credits (1080p) a job")
    assert table.entry("segmind", "gen4_turbo").describe() == "0.05 USD a second (estimate)"
    with pytest.raises(UnknownPrice):
        table.entry("runway", "no_such_model")
