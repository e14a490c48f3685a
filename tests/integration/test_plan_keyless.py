"""``prefect-runway plan`` as a planner meets it: no saved block, no key, no server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SHOTS = """\
- name: harbour
  still_prompt: a harbour at dawn, @hero
  reference_images: [{uri: "https://example.com/ref.png", tag: hero}]
  motion_prompt: slow pan
- name: market
  still_prompt: a market at noon, @hero
  reference_images: [{uri: "https://example.com/ref.png", tag: hero}]
  motion_prompt: tracking shot
  duration: %s
"""


def _cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The command in a fresh process with its own PREFECT_HOME and no Prefect server set."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("PREFECT_") and k not in ("SEGMIND_API_KEY", "AIMLAPI_API_KEY",
                                                           "RUNWAYML_API_SECRET")}
    # A command that does start Prefect's temporary server (saving a block) gets time to do
    # so on a loaded machine: Prefect's default start-up bound is 20 s.
    clean.update(PREFECT_HOME=str(tmp_path / "home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                 PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120", **env)
    return subprocess.run([sys.executable, "-m", "prefect_runway.cli", *args], cwd=tmp_path,
                          env=clean, capture_output=True, text=True, timeout=240)


def test_plan_prices_a_storyboard_with_no_block_no_key_and_no_server(tmp_path):
    (tmp_path / "shots.yaml").write_text(SHOTS % 5)
    done = _cli(tmp_path, "plan", "shots.yaml", "--provider", "runway")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "runway    gen4_image" in done.stdout and "runway    gen4_turbo" in done.stdout
    assert "2 shot(s), 4 step(s), 4 request(s) to pay" in done.stdout
    assert "temporary server" not in output
    assert "Priced at runway's prices (no saved block; nothing is sent)" in done.stderr
    # --balance needs a key: said in one line, nothing started.
    refused = _cli(tmp_path, "plan", "shots.yaml", "--provider", "runway", "--balance")
    assert refused.returncode != 0
    assert "--balance: no RUNWAYML_API_SECRET in the environment" in refused.stderr


@pytest.mark.slow
def test_a_refused_shot_leaves_no_stray_events_warning(tmp_path):
    (tmp_path / "bad.yaml").write_text(SHOTS % 7)  # 7 s: not a length Segmind serves
    saved = _cli(tmp_path, "blocks", "create", SEGMIND_API_KEY="sk-not-used")
    assert saved.returncode == 0, saved.stdout + saved.stderr
    refused = _cli(tmp_path, "plan", "bad.yaml", "--credentials", "segmind-credentials/default")
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0 and "duration: 7 is not allowed" in output
    assert "allowed: 5, 10" in output
    assert "Still processing items" not in output, output


def test_plan_shows_and_prices_a_shots_model_options(tmp_path):
    shot = ('- {name: %s, still_prompt: a harbour, video_model: veo3.1, duration: 4, '
            'ratio: "1280:720"%s}\n')
    (tmp_path / "shots.yaml").write_text(shot % ("loud", "") + shot % (
        "quiet", ", video_options: {audio: false}"))
    done = _cli(tmp_path, "plan", "shots.yaml", "--provider", "runway")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {line[10:32].strip(): line.split() for line in done.stdout.splitlines()
            if line.startswith("runway    veo3.1")}
    assert rows["veo3.1"][-3:] == ["160", "credits", "1.60"]  # audio unset: priced as on
    assert rows["veo3.1 [audio=false]"][-3:] == ["80", "credits", "0.80"]
    (tmp_path / "bad.yaml").write_text(shot % ("bad", ", video_options: {loop: true}"))
    refused = _cli(tmp_path, "plan", "bad.yaml", "--provider", "runway")
    assert refused.returncode != 0
    assert "video_options.loop: is not one of the model's options" in refused.stderr
    assert "allowed: 'audio', 'negative_prompt'" in refused.stderr


def test_plan_prices_text_to_video_shots_and_continuity(tmp_path):
    (tmp_path / "shots.yaml").write_text(
        '- {name: dawn, still_prompt: a lighthouse, motion_prompt: dolly in, ratio: "1280:720",'
        " video_model: gen4_turbo, duration: 5}\n"
        '- {name: gulls, motion_prompt: gulls circle, ratio: "1280:720", video_model: gen4_turbo,'
        " duration: 5}\n")
    alone = _cli(tmp_path, "plan", "shots.yaml", "--provider", "runway")
    assert alone.returncode != 0  # alone, the second is text-to-video: gen4_turbo is not
    assert "row 2" in alone.stderr and "still_prompt: is empty, so the shot is text-to-video" \
        in alone.stderr
    continued = _cli(tmp_path, "plan", "shots.yaml", "--provider", "runway", "--continuity")
    assert continued.returncode == 0, continued.stdout + continued.stderr
    assert "2 shot(s), 3 step(s), 3 request(s) to pay" in continued.stdout  # one still
    (tmp_path / "text.yaml").write_text(
        '- {name: gulls, motion_prompt: gulls circle, ratio: "1280:720", video_model: gen4.5,'
        " duration: 4}\n")
    text = _cli(tmp_path, "plan", "text.yaml", "--provider", "runway")
    assert text.returncode == 0, text.stdout + text.stderr
    assert "1 shot(s), 1 step(s), 1 request(s) to pay" in text.stdout
    assert "total runway: 48 credits" in text.stdout  # gen4.5: 12 credits a second
