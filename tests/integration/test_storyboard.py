"""The storyboard flow end to end against the emulator, on the session's Prefect test server.

Twenty shots with three failing, identical shots, a bad row in a shots file (in every
format), shots read from S3, and the ``blocks create`` helper.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from pydantic import SecretStr
from s3_helpers import AWS_KEY_ID, AWS_SECRET, moto_server

from prefect_runway import (
    InvalidRequest,
    InvalidShot,
    RunwayCredentials,
    SegmindCredentials,
    StoryboardFailed,
    StoryboardSummary,
    storyboard,
)
from prefect_runway.emulator import Emulator, EmulatorConfig
from prefect_runway.testing.fixtures import _fast

REF = [{"uri": "https://example.com/ref.png", "tag": "hero"}]


def _seen(emulator: Emulator) -> int:
    """Every request the emulator saw, on every provider."""
    total = 0
    for provider in ("segmind", "aimlapi", "runway"):
        s = emulator.stats()[provider]
        total += s["total_submissions"] + s["status_calls"] + s["result_calls"] + sum(s["errors"].values())
    return total


def _shot(i: int, **extra: object) -> dict[str, object]:
    return {"name": f"shot-{i:02d}", "still_prompt": f"scene {i}: a harbour at dawn, @hero",
            "reference_images": REF, "motion_prompt": f"move {i}: slow pan", "seed": 100 + i,
            **extra}


def _check_stored(output) -> None:
    data = Path(output.location).read_bytes()
    assert hashlib.sha256(data).hexdigest() == output.sha256
    assert json.loads(Path(output.sidecar).read_text())["sha256"] == output.sha256


async def _artifacts(flow_run_id) -> dict[str, object]:
    async with get_client() as client:
        found = await client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return {a.key: a for a in found if a.key}


@pytest.fixture()
def own_emulator():
    """An emulator of the test's own, so its counters are the test's alone (videos at 2 fps:
    nothing here looks at their frames, and the twenty-shot storyboard makes eighteen)."""
    with Emulator(EmulatorConfig(latency=0.3, video_fps=2, runway_concurrency=8)) as emulator:
        yield emulator


async def test_twenty_shots_three_fail_the_others_are_stored_and_nothing_is_submitted_twice(
    own_emulator, tmp_path
):
    credentials = _fast(SegmindCredentials, own_emulator.url)
    shots = [_shot(i) for i in range(1, 21)]
    shots[3]["still_prompt"] += " [fail]"    # row 4: the still fails
    shots[10]["still_prompt"] += " [fail]"   # row 11: the still fails
    shots[16]["motion_prompt"] += " [fail]"  # row 17: the still is made, the video fails

    state = await storyboard(shots=shots, credentials=credentials, storage=str(tmp_path),
                             concurrency=8, return_state=True)

    assert state.is_failed()
    assert state.message.startswith("Storyboard failed: 17 of 20 shots completed, 3 failed: ")
    for name in ("row 4 shot-04", "row 11 shot-11", "row 17 shot-17"):
        assert name in state.message
    failure = await state.result(raise_on_failure=False)
    assert isinstance(failure, StoryboardFailed)
    summary: StoryboardSummary = failure.summary
    assert (summary.total, summary.completed, summary.failed, summary.generated) == (20, 17, 3, 20)
    assert [r.row for r in summary.shots] == list(range(1, 21))
    for result in summary.shots:
        if result.row in (4, 11, 17):
            assert result.status == "failed"
            assert result.error.startswith("GenerationFailed: ")
            assert "provider=segmind" in result.error and "job_id=" in result.error
            assert result.video is None
            assert (result.still is not None) == (result.row == 17)
        else:
            assert result.status == "completed" and result.error is None
            assert result.still.key.startswith(f"{result.name}-image-")
            assert result.video.key.startswith(f"{result.name}-video-")
            _check_stored(result.still)
            _check_stored(result.video)
    _check_stored(summary.shots[16].still)
    assert len(list(tmp_path.glob("*.mp4"))) == 17

    stats = own_emulator.stats()["segmind"]
    assert stats["total_submissions"] == 20 + 18  # every still; a video for each stored still
    assert stats["duplicate_submissions"] == 0
    assert set(stats["billable"].values()) == {1}

    # The UI shows the summary and the progress.
    artifacts = await _artifacts(state.state_details.flow_run_id)
    table = artifacts["storyboard-summary"].data
    assert "17 of 20 shots completed, 3 failed" in table
    assert table.count("| failed |") == 3 and table.count("| completed |") == 17
    assert float(artifacts["storyboard-progress"].data) == 100.0

    # Run again: every job is found, nothing is submitted or downloaded again, same verdict.
    downloads = stats["downloads"]
    with pytest.raises(StoryboardFailed) as info:
        await storyboard(shots=shots, credentials=credentials, storage=str(tmp_path), concurrency=8)
    assert info.value.summary.completed == 17
    again = own_emulator.stats()["segmind"]
    assert again["total_submissions"] == 38
    assert again["duplicate_submissions"] == 0
    assert again["downloads"] == downloads


async def test_identical_shots_are_generated_once(own_emulator, tmp_path):
    credentials = _fast(SegmindCredentials, own_emulator.url)
    shots = [
        _shot(1),
        _shot(1, name="shot-01-again"),                # identical but for its name
        _shot(1, name="same-still", motion_prompt="a different move"),  # shares the still
        _shot(2),
    ]
    summary = await storyboard(shots=shots, credentials=credentials, storage=str(tmp_path))

    assert isinstance(summary, StoryboardSummary)
    assert (summary.total, summary.completed, summary.generated) == (4, 4, 3)
    first, again, same_still, other = summary.shots
    assert again.same_as == "shot-01" and first.same_as is None
    assert again.still == first.still and again.video == first.video
    assert same_still.still.sha256 == first.still.sha256
    assert same_still.video.fingerprint != first.video.fingerprint
    stats = own_emulator.stats()["segmind"]
    assert stats["total_submissions"] == 2 + 3  # stills of shot 1 and 2; three distinct videos
    assert stats["duplicate_submissions"] == 0


async def test_shots_may_use_other_providers_for_their_videos(own_emulator, tmp_path):
    segmind = _fast(SegmindCredentials, own_emulator.url)
    runway = _fast(RunwayCredentials, own_emulator.url)
    await runway.save("storyboard-test-runway", overwrite=True)
    shots = [_shot(1), _shot(2, video_credentials="runway-credentials/storyboard-test-runway",
                            video_model="gen4_turbo", ratio="16:9")]

    summary = await storyboard(shots=shots, credentials=segmind, storage=str(tmp_path))

    assert summary.completed == 2
    assert summary.shots[1].still.provider == "segmind"
    assert (summary.shots[1].video.provider, summary.shots[1].video.model) == ("runway", "gen4_turbo")
    assert own_emulator.stats()["runway"]["total_submissions"] == 1


_CSV_HEADER = "name,still_prompt,reference_images,motion_prompt,ratio,duration,seed,video_credentials\n"


def _csv_row(i: int, **cells: object) -> str:
    row = {"name": f"shot-{i}", "still_prompt": f"scene {i} @hero",
           "reference_images": "hero=https://example.com/ref.png", "motion_prompt": "pan",
           "ratio": "16:9", "duration": "5", "seed": str(i), "video_credentials": "", **cells}
    return ",".join(str(v) for v in row.values()) + "\n"


def _yaml(shots: list[dict[str, object]]) -> str:
    import yaml

    return yaml.safe_dump({"defaults": {"reference_images": REF, "motion_prompt": "pan"},
                           "shots": shots})


@pytest.mark.parametrize(
    "filename, content, row, field",
    [
        ("shots.csv", _CSV_HEADER + _csv_row(1) + _csv_row(2) + _csv_row(3, duration=7) + _csv_row(4),
         3, "duration"),
        ("shots.csv", _CSV_HEADER + _csv_row(1) + _csv_row(2, video_credentials="runway-credentials/nope"),
         2, "video_credentials"),
        ("shots.json", json.dumps([_shot(1), _shot(2, seed=100_000), _shot(3)]), 2, "seed"),
        ("shots.json", json.dumps([_shot(1), _shot(2), _shot(3, ratio="4:5")]), 3, "ratio"),
        ("shots.yaml", _yaml([{"still_prompt": "a @hero"}, {"still_prompt": "b @hero", "motion": "x"}]),
         2, "motion"),
        ("shots.yml", "shots:\n" + "".join(
            f"  - {{still_prompt: 'p{i} @hero', motion_prompt: pan, reference_images: [{{uri: 'https://e.com/r.png', tag: hero}}]}}\n"
            for i in range(3)) + "  - {still_prompt: 'no reference image', motion_prompt: pan}\n", 4, "reference_images"),
        ("shots.yaml", _yaml([{"still_prompt": "a @hero"}, {"still_prompt": "b @hero", "duration": 10,
                                                            "video_model": "gen3a_turbo", "ratio": "1:1"}]),
         2, "ratio"),
    ],
)
async def test_a_bad_row_names_the_row_and_field_before_anything_is_submitted(
    runway_emulator, segmind_credentials, tmp_path, filename, content, row, field
):
    path = tmp_path / filename
    path.write_text(content)
    before = _seen(runway_emulator)

    with pytest.raises(InvalidShot) as info:
        await storyboard(shots=str(path), credentials=segmind_credentials, storage=str(tmp_path))

    assert (info.value.row, info.value.field) == (row, field)
    assert str(info.value).startswith(f"{path}: row {row}")
    assert f": {field}: " in str(info.value)
    assert _seen(runway_emulator) == before  # nothing was sent to any provider


async def test_a_bad_shot_in_a_list_names_its_row(runway_emulator, segmind_credentials, tmp_path):
    before = _seen(runway_emulator)
    with pytest.raises(InvalidShot, match=r"^row 3 \(shot 'shot-03'\): duration: 7 is not allowed"):
        await storyboard(shots=[_shot(1), _shot(2), _shot(3, duration=7)],
                         credentials=segmind_credentials, storage=str(tmp_path))
    assert _seen(runway_emulator) == before


def _boards_bucket(endpoint: str, monkeypatch) -> Any:
    """A ``boards`` bucket on moto's server, and the environment that reaches it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AWS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id=AWS_KEY_ID, aws_secret_access_key=AWS_SECRET)
    s3.create_bucket(Bucket="boards")
    return s3


async def test_shots_file_in_s3(own_emulator, tmp_path, monkeypatch):
    with moto_server() as endpoint:
        s3 = _boards_bucket(endpoint, monkeypatch)
        s3.put_object(Bucket="boards", Key="nightly/tonight.yaml",
                      Body=_yaml([_shot(1), _shot(2, ratio="16:9")]).encode())

        summary = await storyboard(shots="s3://boards/nightly/tonight.yaml",
                                   credentials=_fast(SegmindCredentials, own_emulator.url),
                                   storage=str(tmp_path))
    assert summary.completed == 2
    assert [r.name for r in summary.shots] == ["shot-01", "shot-02"]


async def test_a_shots_file_in_s3_over_the_size_limit_is_refused(monkeypatch):
    from prefect_runway.flows import shots

    with moto_server() as endpoint:
        s3 = _boards_bucket(endpoint, monkeypatch)
        s3.put_object(Bucket="boards", Key="big.json",
                      Body=json.dumps([{"still_prompt": "x" * 100}] * 100).encode())
        monkeypatch.setattr(shots, "MAX_FILE_BYTES", 1000)
        with pytest.raises(InvalidRequest) as info:
            await shots.load_shots("s3://boards/big.json")
    assert info.value.field == "shots" and "larger than 1000 bytes" in str(info.value)


def test_blocks_create_saves_a_block_per_key_in_the_environment(monkeypatch, capsys):
    from prefect_runway.cli import main

    monkeypatch.setenv("SEGMIND_API_KEY", "seg-key-from-env-1234")
    monkeypatch.delenv("AIMLAPI_API_KEY", raising=False)
    monkeypatch.setenv("RUNWAYML_API_SECRET", "runway-secret-from-env-5678")
    assert main(["blocks", "create", "--name", "cli-test", "--base-url", "http://127.0.0.1:9",
                 "--overwrite"]) == 0
    out = capsys.readouterr()
    assert "Saved segmind-credentials/cli-test" in out.out
    assert "Saved runway-credentials/cli-test" in out.out
    assert "aimlapi" not in out.out
    assert "seg-key-from-env-1234" not in out.out + out.err
    assert "runway-secret-from-env-5678" not in out.out + out.err

    segmind = SegmindCredentials.load("cli-test")
    assert segmind.api_key.get_secret_value() == "seg-key-from-env-1234"
    assert segmind.base_url == "http://127.0.0.1:9"
    runway = RunwayCredentials.load("cli-test")
    assert runway.api_key == SecretStr("runway-secret-from-env-5678")

    # Saving again without --overwrite refuses, and says how.
    assert main(["blocks", "create", "--name", "cli-test", "--provider", "segmind"]) == 1
    assert "--overwrite" in capsys.readouterr().err

    monkeypatch.delenv("SEGMIND_API_KEY")
    monkeypatch.delenv("RUNWAYML_API_SECRET")
    assert main(["blocks", "create"]) == 1
    assert "SEGMIND_API_KEY" in capsys.readouterr().err

