"""Reading shots: every format, every way a row can be wrong, and the errors' wording."""

from __future__ import annotations

import json
import pickle

import pytest

from prefect_runway import Shot
from prefect_runway.errors import InvalidRequest, InvalidShot, StoryboardFailed
from prefect_runway.flows.results import ShotResult, StoryboardSummary
from prefect_runway.flows.shots import format_of, load_shots, parse_shots

REF = {"uri": "https://example.com/ref.png", "tag": "hero"}


def test_yaml_with_defaults_and_unquoted_ratios():
    text = """
defaults:
  ratio: 16:9
  duration: 10
  reference_images: [{uri: "https://example.com/ref.png", tag: hero}]
shots:
  - {name: a, still_prompt: "a @hero", motion_prompt: pan}
  - {name: b, still_prompt: "b @hero", ratio: 9:16, video_ratio: 1280:720, duration: 5, seed: 7}
"""
    a, b = parse_shots(text, "yaml", source="board.yaml")
    assert (a.ratio, a.duration, a.reference_images[0].tag) == ("16:9", 10, "hero")
    assert (b.ratio, b.video_ratio, b.duration, b.seed) == ("9:16", "1280:720", 5, 7)


def test_json_list_and_mapping():
    shots = [{"still_prompt": "x", "reference_images": [REF]}, {"still_prompt": "y"}]
    assert [s.still_prompt for s in parse_shots(json.dumps(shots), "json")] == ["x", "y"]
    doc = {"defaults": {"video_model": "gen3a_turbo"}, "shots": shots}
    assert {s.video_model for s in parse_shots(json.dumps(doc), "json")} == {"gen3a_turbo"}


def test_csv_cells_reference_images_and_empty_cells():
    text = (
        "name,still_prompt,reference_images,motion_prompt,duration,seed,video_credentials\n"
        'a,"a, with a comma @hero",hero=https://e.com/r.png?sig=a=b | style=https://e.com/s.png,pan,10,,\n'
        'b,b @hero,"[{""uri"": ""https://e.com/r.png"", ""tag"": ""hero""}]",,,42,runway-credentials/x\n'
    )
    a, b = parse_shots(text, "csv", source="board.csv")
    assert a.still_prompt == "a, with a comma @hero"
    assert [(r.tag, r.uri) for r in a.reference_images] == [
        ("hero", "https://e.com/r.png?sig=a=b"), ("style", "https://e.com/s.png")]
    assert (a.duration, a.seed, a.video_credentials) == (10, None, None)
    assert (b.reference_images[0].tag, b.seed, b.duration, b.motion_prompt) == ("hero", 42, 5, "")
    assert b.video_credentials == "runway-credentials/x"


@pytest.mark.parametrize(
    "text, row, line, field",
    [
        ("still_prompt,duration\na,5\nb,11\n", 2, 3, "duration"),
        ("still_prompt,seed\na,1\nb,1\nc,-4\n", 3, 4, "seed"),
        ("still_prompt,seed\na,1\nb,1,3\n", 2, 3, "row"),
        ('still_prompt,motion_prompt\n"multi\nline",x\nb,\n,y\n', 3, 5, "still_prompt"),
        ("still_prompt,reference_images\na,hero\n", 1, 2, "reference_images"),
        ("still_prompt,reference_images\na,hero=https://e.com/a.png\nb,9bad=https://e.com/a.png\n", 2, 3,
         "reference_images.tag"),
        ("still_prompt,credentials\na,segmind\n", 1, 2, "credentials"),
    ],
)
def test_csv_bad_row_names_row_line_and_field(text, row, line, field):
    with pytest.raises(InvalidShot) as info:
        parse_shots(text, "csv", source="board.csv")
    error = info.value
    assert (error.row, error.line, error.field) == (row, line, field)
    assert str(error).startswith(f"board.csv: row {row} (line {line}")
    assert f": {field}: " in str(error)


def test_unknown_column_and_unknown_field():
    with pytest.raises(InvalidRequest, match=r"^motion: is not a shot field \(in the header row"):
        parse_shots("still_prompt,motion\na,b\n", "csv", source="board.csv")
    with pytest.raises(InvalidShot) as info:
        parse_shots(json.dumps([{"still_prompt": "a"}, {"name": "b", "still_prompt": "b", "promt": 1}]),
                    "json", source="b.json")
    assert str(info.value).startswith("b.json: row 2 (shot 'b'): promt: is not a shot field; allowed: ")
    with pytest.raises(InvalidRequest, match="seeds: is not a shot field"):
        parse_shots(json.dumps({"defaults": {"seeds": 1}, "shots": [{"still_prompt": "a"}]}), "json")


@pytest.mark.parametrize(
    "text, fmt, match",
    [
        ('[{"still_prompt": "a"},]', "json", r"not valid JSON \(line 1, column"),
        ("shots: [a, b\n", "yaml", r"not valid YAML \(line 2"),
        ('{"shot": []}', "json", "unknown top-level keys"),
        ('{"still_prompt": "a"}', "json", "unknown top-level keys"),
        ("[]", "json", "has no shots"),
        ('"just text"', "json", "holds no list of shots"),
        ("", "csv", "no header row"),
    ],
)
def test_unreadable_files(text, fmt, match):
    with pytest.raises(InvalidRequest, match=match):
        parse_shots(text, fmt, source="f")


def test_a_row_that_is_not_a_mapping():
    with pytest.raises(InvalidShot, match=r"row 2: shot: is a str"):
        parse_shots('[{"still_prompt": "a"}, "b"]', "json")


def test_format_of_extensions():
    assert [format_of(n) for n in ("a.JSON", "s3://b/k/a.yml", "x.yaml", "x.csv")] == [
        "json", "yaml", "yaml", "csv"]
    with pytest.raises(InvalidRequest, match="no known shots file extension"):
        format_of("shots.txt")


async def test_load_shots_from_files_and_lists(tmp_path):
    (tmp_path / "s.yaml").write_text("- still_prompt: a\n")
    assert (await load_shots(tmp_path / "s.yaml"))[0].still_prompt == "a"
    assert (await load_shots([Shot(still_prompt="a"), {"still_prompt": "b"}]))[1].still_prompt == "b"
    with pytest.raises(InvalidRequest, match="is not a file"):
        await load_shots(str(tmp_path / "missing.json"))
    with pytest.raises(InvalidRequest, match="single shot"):
        await load_shots({"still_prompt": "a"})  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="does not name an object"):
        await load_shots("s3://bucket/")


def test_errors_survive_pickling():
    # Failed states persist their exception; it must come back whole.
    error = InvalidShot(3, "duration", "7 is not allowed", source="b.csv", shot="x", line=4,
                        allowed=(5, 10))
    back = pickle.loads(pickle.dumps(error))
    assert (str(back), back.row, back.field, back.line, back.allowed) == (
        str(error), 3, "duration", 4, [5, 10])
    summary = StoryboardSummary.of([ShotResult(row=1, name="a", status="failed", error="boom")], 1)
    failed = pickle.loads(pickle.dumps(StoryboardFailed("1 failed", summary)))
    assert failed.summary == summary and str(failed) == "1 failed"


def test_summary_text_and_markdown():
    results = [ShotResult(row=i, name=f"s{i}", status="completed") for i in (1, 2)]
    results.append(ShotResult(row=3, name="s3", status="failed", error="GenerationFailed: a | b"))
    results.append(ShotResult(row=4, name="s4", status="failed", error="GenerationFailed: a | b",
                              same_as="s3"))
    summary = StoryboardSummary.of(results, generated=3)
    assert (summary.total, summary.completed, summary.failed, summary.ok) == (4, 2, 2, False)
    assert summary.describe(limit=1) == (
        "2 of 4 shots completed, 2 failed: row 3 s3: GenerationFailed: a | b; and 1 more")
    table = summary.markdown()
    assert table.startswith("# Storyboard: 2 of 4 shots completed, 2 failed")
    assert "a \\| b (identical to s3)" in table


async def test_planning_names_the_shots_field_for_provider_rules():
    from prefect_runway import AimlapiCredentials, SegmindCredentials
    from prefect_runway.flows.plan import plan_storyboard

    aimlapi = AimlapiCredentials(api_key="k")
    segmind = SegmindCredentials(api_key="k")
    shot = Shot(still_prompt="a @hero", reference_images=[REF], motion_prompt="pan")
    # AIMLAPI sells no gen4_image: the fix is other credentials for the still.
    with pytest.raises(InvalidShot, match=r"^row 1 \(shot 'shot-001'\): credentials: ") as info:
        await plan_storyboard([shot], credentials=aimlapi)
    assert info.value.provider == "aimlapi"
    plans = await plan_storyboard([shot], image_credentials=segmind, video_credentials=aimlapi)
    assert (plans[0].image_credentials, plans[0].video_credentials) == (segmind, aimlapi)
    # Segmind's gen3a_turbo has no 1:1: the still is fine, the video is not.
    square = Shot(still_prompt="a @hero", reference_images=[REF], motion_prompt="pan",
                  ratio="1:1", video_model="gen3a_turbo")
    with pytest.raises(InvalidShot, match=r"ratio: '1:1' has no equivalent \(for segmind gen3a_turbo\)"):
        await plan_storyboard([shot, square], credentials=segmind)
    with pytest.raises(InvalidShot, match=r"row 1 \(shot 'shot-001'\): credentials: no credentials"):
        await plan_storyboard([shot])


# ---- hostile files: bounded before anything in them is used ----------------------------------

BOMB = "\n".join(
    ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 10)]
    + ["shots: *l9"]
)


@pytest.mark.parametrize(("name", "content", "needles"), [
    ("bomb.yaml", BOMB.encode(), ["more than 500000 values", "aliases count"]),
    ("self.yaml", b"shots: &a [*a]\n", ["alias that refers to itself"]),
    ("deep.yaml", b"shots: " + b"[" * 5000 + b"]" * 5000, ["nests deeper than 32"]),
    ("deep.json", b"[" * 100_000 + b"]" * 100_000, ["nests deeper than 32"]),
    ("wide.json", json.dumps([[0] * 600_000]).encode(), ["more than 500000 values"]),
    ("binary.json", bytes(range(256)) * 4, ["not UTF-8 text (byte 128)"]),
    ("digits.json", b'[{"still_prompt": "x", "seed": ' + b"9" * 5000 + b"}]", ["not valid JSON"]),
    ("date.yaml", b"shots: [{still_prompt: x, name: 2024-02-30}]", ["not valid YAML"]),
    ("cell.csv", b"still_prompt\n" + b"x" * 200_000 + b"\n", ["not valid CSV"]),
    ("many.json", json.dumps([{"still_prompt": "x"}] * 10_001).encode(), ["10001 shots",
                                                                           "at most 10000"]),
])
async def test_a_hostile_shots_file_is_one_typed_error_naming_shots(tmp_path, name, content,
                                                                   needles):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InvalidRequest) as info:
        await load_shots(str(path))
    assert info.value.field == "shots", info.value
    for needle in needles:
        assert needle in str(info.value)


def test_a_csv_cell_nested_past_pythons_limit_is_an_invalid_shot():
    with pytest.raises(InvalidShot) as info:
        parse_shots("still_prompt,reference_images\nx," + "[" * 60_000 + "]" * 60_000 + "\n", "csv")
    assert (info.value.row, info.value.field) == (1, "reference_images")


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_non_finite_number_is_an_invalid_shot_naming_its_field(value):
    for field in ("duration", "seed"):
        text = f'[{{"still_prompt": "x", "{field}": {value}}}]'
        with pytest.raises(InvalidShot) as info:
            parse_shots(text, "json", source="board.json")
        assert (info.value.field, info.value.row) == (field, 1), info.value
    with pytest.raises(InvalidShot) as info:
        parse_shots("shots: [{still_prompt: x, duration: .inf}]", "yaml")
    assert info.value.field == "duration"


async def test_a_shots_file_over_the_size_limit_is_not_read_whole(tmp_path, monkeypatch):
    from prefect_runway.flows import shots

    path = tmp_path / "big.json"
    path.write_bytes(json.dumps([{"still_prompt": "x" * 100}] * 100).encode())
    monkeypatch.setattr(shots, "MAX_FILE_BYTES", 1000)
    with pytest.raises(InvalidRequest, match="larger than 1000 bytes"):
        await load_shots(str(path))


def test_aliases_of_earlier_values_still_work():
    text = """
defaults: {reference_images: &refs [{uri: "https://example.com/ref.png", tag: hero}]}
shots:
  - &a {name: a, still_prompt: "a @hero", duration: 10}
  - {<<: *a, name: b, seed: 3, reference_images: *refs}
"""
    a, b = parse_shots(text, "yaml")
    assert [(s.name, s.still_prompt, s.duration, s.seed) for s in (a, b)] == [
        ("a", "a @hero", 10, None), ("b", "a @hero", 10, 3)]
    assert a.reference_images == b.reference_images


def test_a_shot_name_with_a_control_character_is_an_invalid_shot():
    with pytest.raises(InvalidShot) as info:
        parse_shots('[{"still_prompt": "x"}, {"name": "a\\nb", "still_prompt": "y"}]', "json")
    assert (info.value.row, info.value.field) == (2, "name")
    (shot,) = parse_shots('[{"name": "café 東京", "still_prompt": "x"}]', "json")
    assert shot.name == "café 東京"


def test_a_shot_with_no_still_is_text_to_video_in_every_format():
    csv_text = ("name,still_prompt,motion_prompt,video_model,ratio,duration\n"
                "a,a harbour,pan,gen4_turbo,1280:720,5\n"
                "b,,gulls over the pier,veo3.1,1280:720,4\n")
    yaml_text = ("shots:\n  - {name: a, still_prompt: a harbour, motion_prompt: pan}\n"
                 "  - {name: b, still_prompt: '  ', motion_prompt: gulls over the pier, "
                 "video_model: veo3.1, ratio: 1280:720, duration: 4}\n")
    for text, fmt in ((csv_text, "csv"), (yaml_text, "yaml")):
        a, b = parse_shots(text, fmt)
        assert a.still_prompt == "a harbour" and b.still_prompt is None  # blank: no still
        request = b.text_request()
        assert (request.model, request.prompt, request.ratio, request.duration) == (
            "veo3.1", "gulls over the pier", "1280:720", 4)


@pytest.mark.parametrize("shot, field, allowed", [
    ({"motion_prompt": "gulls", "video_model": "gen4.5", "ratio": "1104:832"}, "ratio",
     ["1280:720", "720:1280"]),
    ({"motion_prompt": "gulls", "video_model": "gen4.5", "video_ratio": "960:960"},
     "video_ratio", ["1280:720", "720:1280"]),
    ({"motion_prompt": "gulls", "video_model": "veo3.1", "duration": 10}, "duration", [4, 6, 8]),
    ({"motion_prompt": "gulls", "video_model": "veo3.1", "duration": 4,
      "video_options": {"loop": True}}, "video_options.loop", ["audio", "negative_prompt"]),
    ({"motion_prompt": "", "video_model": "gen4.5"}, "motion_prompt", None),
])
def test_a_bad_text_to_video_shot_names_its_row_and_field(shot, field, allowed):
    with pytest.raises(InvalidShot) as caught:
        parse_shots(json.dumps([{"still_prompt": "x"}, shot]), "json", source="board.json")
    assert (caught.value.row, caught.value.field) == (2, field)
    if allowed is not None:
        assert caught.value.allowed == allowed


def test_with_continuity_a_shot_after_the_first_needs_no_still_nor_text_model():
    text = ("still_prompt,motion_prompt,video_model\n"
            "a lighthouse,dolly in,gen4_turbo\n,the light turns,gen4_turbo\n")
    with pytest.raises(InvalidShot) as caught:  # alone, row 2 would be text-to-video
        parse_shots(text, "csv")
    assert (caught.value.row, caught.value.field) == (2, "still_prompt")
    assert "gen4.5" in str(caught.value.allowed)
    first, second = parse_shots(text, "csv", continuity=True)
    assert second.still_prompt is None and second.video_model == "gen4_turbo"
    with pytest.raises(InvalidShot) as caught:  # the first shot starts on nothing before it
        parse_shots("still_prompt,motion_prompt\n,pan\n", "csv", continuity=True)
    assert (caught.value.row, caught.value.field) == (1, "still_prompt")
