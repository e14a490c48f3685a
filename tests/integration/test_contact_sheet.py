"""What a person sees of a storyboard and a chain with grouped options: a contact sheet with
every picture inline, costs with their units, never a ``file://`` link."""

from __future__ import annotations

import json
import re
import uuid
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from pydantic import SecretStr

from prefect_runway import RunwayCredentials, SegmindCredentials, image_to_video, storyboard
from prefect_runway.emulator import Emulator, EmulatorConfig

REF = [{"uri": "https://example.com/ref.png", "tag": "hero"}]


async def _artifacts(flow_run_id: str) -> dict[str, object]:
    async with get_client() as client:
        found = await client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)])))
    return {a.key: a for a in found if a.key}


async def test_the_storyboard_summary_is_a_contact_sheet_with_costs_in_their_units(tmp_path):
    token = uuid.uuid4().hex[:8]
    shots = [{"name": f"s{i}", "still_prompt": f"scene {i} {token}, @hero", "motion_prompt": "pan",
              "reference_images": REF, "seed": 10 + i} for i in (1, 2, 3)]
    shots.append({**shots[0], "name": "again"})  # identical to s1: shown once
    with Emulator(EmulatorConfig(latency=0.2, video_fps=4)) as emu:
        credentials = SegmindCredentials(api_key=SecretStr("k"), base_url=emu.url,
                                         poll_interval_seconds=0.1)
        summary = await storyboard(shots=shots, credentials=credentials, storage=str(tmp_path),
                                   run={"check_balance": False, "progress": False})
    assert summary.completed == 4
    sheet = (await _artifacts(summary.shots[0].still.flow_run_id))["storyboard-summary"].data
    assert "file://" not in sheet
    rows = [line for line in sheet.splitlines() if line.startswith("| ") and "| completed |" in line]
    assert len(rows) == 4
    for row, shot in zip(rows, summary.shots, strict=True):  # each output's key
        assert f"`{shot.still.key}`" in row and f"`{shot.video.key}`" in row
    assert "(identical to s1)" in rows[3]
    # The contact sheet: each distinct shot's still and its video's animated preview inline.
    sheet_rows = sheet.split("## Contact sheet", 1)[1].split("##", 1)[0].splitlines()
    pictured = [line for line in sheet_rows if "](data:image/" in line]
    assert [line.split("|")[1].strip() for line in pictured] == ["s1", "s2", "s3"]
    assert all(line.count("](data:image/") == 2 and "](data:image/gif;base64," in line
               for line in pictured)
    costs = sheet.split("## Costs: spent vs plan", 1)[1]
    amounts = re.findall(r"\| (\d+\.\d+) ([A-Za-z]+) \|", costs)
    assert amounts and all(unit == "USD" and len(value.split(".")[1]) >= 2
                           for value, unit in amounts), costs


async def test_image_to_video_takes_its_options_in_groups_and_shows_costs_with_units(tmp_path):
    with Emulator(EmulatorConfig(latency=0.2, video_fps=4)) as emu:
        kw = dict(api_key=SecretStr("k"), base_url=emu.url, poll_interval_seconds=0.1)
        result = await image_to_video(
            still_prompt=f"a bay {uuid.uuid4().hex[:8]}, @hero", motion_prompt="drift",
            name="bay", seed=7, storage=str(tmp_path),
            still={"reference_images": REF, "credentials": SegmindCredentials(**kw)},
            video={"model": "gen4_turbo", "duration": 10, "credentials": RunwayCredentials(**kw)},
            run={"preview": "png", "check_balance": False},
        )
    assert result.video.provider == "runway" and result.video.request["duration"] == 10
    assert result.video.preview_key.endswith(".png")
    artifacts = await _artifacts(result.still.flow_run_id)
    assert "file://" not in json.dumps([a.model_dump(mode="json") for a in artifacts.values()])
    summary = artifacts["summary-image-to-video"].data
    header = next(line for line in summary.splitlines() if line.startswith("| shot |"))
    cost_at = [c.strip() for c in header.split("|")].index("cost")
    costs = [line.split("|")[cost_at].strip() for line in summary.splitlines()
             if line.startswith("| bay |")]
    assert len(costs) == 2 and all(re.fullmatch(r"\d+\.\d{2,} (USD|credits)", c) for c in costs)
    table = json.loads(artifacts["outputs-image-to-video"].data)
    assert list(table[0])[-1] == "location"  # the widest cell last: no column pushed off


async def test_a_continued_shot_shows_the_frame_it_started_on_and_its_finished_video(tmp_path):
    token = uuid.uuid4().hex[:8]
    shots = [{"name": "dawn", "still_prompt": f"a harbour at dawn {token}", "motion_prompt": "pan",
              "video_model": "gen4_turbo", "ratio": "1280:720", "duration": 2, "seed": 1},
             {"name": "noon", "motion_prompt": f"into the market {token}",
              "video_model": "gen4_turbo", "ratio": "1280:720", "duration": 2, "seed": 2,
              "finish_model": "magnific_video_upscaler_creative",
              "finish_options": {"resolution": "1k"}}]
    with Emulator(EmulatorConfig(latency=0.2, video_fps=4)) as emu:
        credentials = RunwayCredentials(api_key=SecretStr("k" * 16), base_url=emu.url,
                                        poll_interval_seconds=0.1)
        summary = await storyboard(shots=shots, credentials=credentials, storage=str(tmp_path),
                                   run={"check_balance": False, "progress": False,
                                        "continuity": True})
    assert summary.completed == 2
    dawn, noon = summary.shots
    assert noon.still is None and noon.finished is not None
    sheet = (await _artifacts(dawn.still.flow_run_id))["storyboard-summary"].data
    assert "| # | shot | status | still | video | finished | reason |" in sheet
    rows = {line.split("|")[2].strip(): line for line in sheet.splitlines()
            if "| completed |" in line}
    assert f"last frame of `{dawn.video.key}`" in rows["noon"]
    assert f"`{noon.finished.key}`" in rows["noon"] and f"`{noon.video.key}`" in rows["noon"]
    # the contact sheet: the frame noon started on, its preview and its finished preview
    contact = sheet.split("## Contact sheet", 1)[1].split("##", 1)[0]
    assert "| shot | still | video (preview) | finished (preview) |" in contact
    noon_row = next(line for line in contact.splitlines() if line.startswith("| noon |"))
    assert noon_row.count("](data:image/") == 3
    assert "![last frame of the shot before](data:image/" in noon_row
    # the upscale has no known price: planned as unknown, never as free
    costs = sheet.split("## Costs: spent vs plan", 1)[1]
    upscale = next(line for line in costs.splitlines() if "magnific_video_upscaler" in line)
    assert "| unknown |" in upscale
