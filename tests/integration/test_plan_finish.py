"""``prefect-runway plan`` prices a storyboard mixing gen4.5, veo3.1 with audio and an
upscale: the upscale unknown at Runway's prices, priced by a block's own price."""

from __future__ import annotations

import asyncio
import uuid

import yaml

from prefect_runway import RunwayCredentials
from prefect_runway.cli import main
from prefect_runway.testing.fixtures import _fast

UPSCALER = "magnific_video_upscaler_creative"


def _shots(tmp_path):
    token = uuid.uuid4().hex[:8]  # the submit task's cache outlives a session
    shots = [
        {"name": "harbour", "still_prompt": f"a harbour at dawn {token}", "motion_prompt": "pan",
         "ratio": "1280:720", "video_model": "gen4.5", "duration": 5,
         "finish_model": UPSCALER, "finish_options": {"resolution": "4k"}},
        {"name": "market", "still_prompt": f"a market at noon {token}",
         "motion_prompt": "tracking shot, crowd noise", "ratio": "1280:720",
         "video_model": "veo3.1", "duration": 8, "video_options": {"audio": True}},
    ]
    path = tmp_path / "shots.yaml"
    path.write_text(yaml.safe_dump(shots))
    return str(path)


def _rows(out: str) -> dict[str, list[str]]:
    """The table's rows by model: steps, cached, requests to pay, estimated cost, unit."""
    rows = {}
    for line in out.splitlines():
        cells = line.split()
        if cells and cells[0] == "runway":
            model = " ".join(cells[1:-5]) if cells[-1] == "credits" else " ".join(cells[1:-6])
            rows[model] = cells[len(model.split()) + 1:]
    return rows


def test_plan_shows_an_upscale_unknown_at_runways_prices(tmp_path, capsys):
    assert main(["plan", _shots(tmp_path), "--provider", "runway"]) == 0
    captured = capsys.readouterr()
    rows = _rows(captured.out)
    assert rows["gen4.5"] == ["1", "0", "1", "60", "credits", "0.60"]  # 12 a second, 5 s
    assert rows["veo3.1 [audio=true]"] == ["1", "0", "1", "320", "credits", "3.20"]  # 40/s, 8 s
    assert rows["gen4_image"] == ["2", "0", "2", "10", "credits", "0.10"]
    assert rows[f'{UPSCALER} [resolution="4k"]'] == ["1", "0", "1", "unknown", "credits"]
    assert "2 shot(s), 5 step(s), 5 request(s) to pay" in captured.out
    assert f"no known price for {UPSCALER} on runway" in captured.err
    # A budget cannot be kept with a price unknown: refused, nothing sent.
    assert main(["plan", _shots(tmp_path), "--provider", "runway", "--budget", "USD 20"]) == 1
    assert f"no known price for {UPSCALER} on runway" in capsys.readouterr().err


async def test_plan_prices_the_upscale_by_the_blocks_own_price(tmp_path, capsys):
    block = _fast(RunwayCredentials, "https://api.dev.runwayml.com")
    block.prices = {UPSCALER: {"amount": 10, "per": "second"}}
    await block.save("plan-finish-priced", overwrite=True)
    name = f"{RunwayCredentials.get_block_type_slug()}/plan-finish-priced"
    path = _shots(tmp_path)

    def plan(*extra: str) -> int:
        return main(["plan", path, "--credentials", name, *extra])


    assert await asyncio.to_thread(plan, "--budget", "USD 20") == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert rows[f'{UPSCALER} [resolution="4k"]'] == ["1", "0", "1", "50", "credits", "0.50"]
    assert rows["gen4.5"][3] == "60" and rows["veo3.1 [audio=true]"][3] == "320"
    assert "total runway: 440 credits" in out  # 60 + 320 + 10 + 50
    assert "within the budget of USD 20.00 (4.4)" in out
