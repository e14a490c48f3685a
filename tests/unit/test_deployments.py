"""deployments/prefect.yaml and the `serve` entry: what they deploy, with which parameters."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import yaml
from fastapi.encoders import jsonable_encoder
from pydantic import SecretStr

from prefect_runway import SegmindCredentials
from prefect_runway.cli import build_parser
from prefect_runway.cli.serve import serve_deployments
from prefect_runway.flows.plan import plan_storyboard
from prefect_runway.flows.shots import load_shots

REPO = Path(__file__).resolve().parents[2]
PREFECT_YAML = REPO / "deployments" / "prefect.yaml"


def _flow_name(entrypoint: str) -> str:
    """The @flow(name=...) of an entrypoint 'path.py:function', read from the source."""
    path, function = entrypoint.split(":")
    tree = ast.parse((REPO / path).read_text())
    for node in tree.body:
        if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef) and node.name == function:
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call) and getattr(decorator.func, "id", "") in (
                        "flow", "runway_flow"):
                    return next(k.value.value for k in decorator.keywords if k.arg == "name")
    raise AssertionError(f"no @flow {function} in {path}")


def test_prefect_yaml_declares_a_nightly_storyboard_and_an_on_demand_chain():
    config = yaml.safe_load(PREFECT_YAML.read_text())
    assert config["pull"] == [
        {"prefect.deployments.steps.git_clone": {"repository": "{{ $PREFECT_RUNWAY_REPOSITORY }}"}}
    ]
    deployments = {d["name"]: d for d in config["deployments"]}
    nightly, on_demand = deployments["nightly-storyboard"], deployments["image-to-video"]
    assert _flow_name(nightly["entrypoint"]) == "storyboard"
    assert _flow_name(on_demand["entrypoint"]) == "image-to-video"
    assert nightly["schedules"] == [{"cron": "0 2 * * *", "timezone": "UTC", "active": True}]
    assert "schedules" not in on_demand
    for deployment in (nightly, on_demand):
        assert deployment["work_pool"]["name"] == "runway-process"
        assert deployment["parameters"]["credentials"] == "segmind-credentials/default"
        assert deployment["description"]
    assert (REPO / nightly["parameters"]["shots"]).is_file()
    # Every parameter is documented: a comment right above it.
    lines = PREFECT_YAML.read_text().splitlines()
    for deployment in (nightly, on_demand):
        first = lines.index(f"  - name: {deployment['name']}")
        block = lines[first:]
        params_at = block.index("    parameters:")
        for key in deployment["parameters"]:
            at = next(i for i, line in enumerate(block[params_at:], params_at)
                      if line.startswith(f"      {key}:"))
            assert block[at - 1].strip().startswith("#"), f"{deployment['name']}: {key} is undocumented"


async def test_nightly_shots_file_is_valid_for_segmind():
    config = yaml.safe_load(PREFECT_YAML.read_text())
    nightly = next(d for d in config["deployments"] if d["name"] == "nightly-storyboard")
    shots = await load_shots(REPO / nightly["parameters"]["shots"])
    credentials = SegmindCredentials(api_key=SecretStr("unused"))
    plans = await plan_storyboard(shots, credentials=credentials)
    assert [p.name for p in plans] == ["cliff-path", "harbour", "night-market"]
    assert len({p.chain_key for p in plans}) == 3


def test_serve_builds_the_same_two_deployments(tmp_path):
    shots = tmp_path / "shots.yaml"
    shots.write_text("- still_prompt: a\n")
    args = build_parser().parse_args([
        "serve", "--shots", str(shots), "--storage", str(tmp_path / "out"), "--cron", "30 1 * * *",
        "--credentials", "runway-credentials/nightly",
    ])
    nightly, on_demand = serve_deployments(args)
    assert (nightly.name, on_demand.name) == ("nightly-storyboard", "image-to-video")
    assert nightly.entrypoint == "prefect_runway.flows.storyboard.storyboard"
    assert on_demand.entrypoint == "prefect_runway.flows.generation.image_to_video"
    assert [s.schedule.cron for s in nightly.schedules] == ["30 1 * * *"]
    assert not on_demand.schedules
    assert nightly.parameters == {
        "credentials": "runway-credentials/nightly", "storage": str(tmp_path / "out"),
        "concurrency": 4, "shots": str(shots),
    }
    unscheduled, _ = serve_deployments(build_parser().parse_args(["serve"]))
    assert not unscheduled.schedules
    assert Path(unscheduled.parameters["storage"]).is_absolute()


def test_a_saved_block_passed_by_reference_is_not_credentials_in_clear():
    from prefect_runway.flows.parameters import REFUSED, credentials_in_clear

    reference = {"$ref": {"block_document_id": "0b1c3c4e-0000-4000-8000-000000000000"}}
    parameters = {"credentials": reference, "video_fallback": ["runway-credentials/x"],
                  "shots": [{"still_prompt": "x", "image_credentials": "a/b"}, "not-a-shot"]}
    assert credentials_in_clear(parameters) == (parameters, [])
    cleaned, found = credentials_in_clear({**parameters, "shots": [
        {"still_prompt": "x", "credentials": {"api_key": "k"}}], "image_credentials": {"x": 1}})
    assert found == ["image_credentials", "shots[0].credentials"]
    assert cleaned["shots"][0]["credentials"] == REFUSED == cleaned["image_credentials"]
    assert parameters["credentials"] is reference  # the caller's parameters are left as they were
    # As Prefect stores them, a block given as an object is a mapping with its key masked.
    block = json.loads(json.dumps(jsonable_encoder(SegmindCredentials(api_key=SecretStr("k")))))
    assert credentials_in_clear({"credentials": block}, stored=True)[1] == []
    assert credentials_in_clear({"credentials": {**block, "api_key": "k"}}, stored=True)[1] == [
        "credentials"]
