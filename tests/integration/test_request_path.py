"""The path of one request through the layers, as docs/architecture.md draws it: the call
stacks of ``image_to_video``'s still (prepared, submitted, stored), read while the flow runs
against the emulator, each descending through the layers and each module on the page."""

from __future__ import annotations

import importlib.util
import re
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import prefect_runway
from prefect_runway.flows import image_to_video

ROOT = Path(prefect_runway.__file__).parent
REPO = Path(__file__).resolve().parents[2]
#: Where the still's path ends in each stack: a frame entering ``name`` in ``folder``.
LEAVES = {"prepared": ("providers", "prepare"), "submitted": ("providers", "submit_call"),
          "stored": ("storage", "put")}


def _layers() -> dict[str, int]:
    """Folder or top-level module -> its layer, from the import-graph test's one table."""
    path = REPO / "tests" / "unit" / "test_import_graph.py"
    spec = importlib.util.spec_from_file_location("_import_graph_layers", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {top: n for n, tops in enumerate(module.LAYERS, 1) for top in tops}


def _package_frames(frame: FrameType | None) -> list[tuple[str, str]]:
    """``(module path under prefect_runway/, function)`` of the package's frames, outermost
    first (the emulator serving the requests is not on the request's path)."""
    frames = []
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        if path.is_relative_to(ROOT) and path.relative_to(ROOT).parts[0] != "emulator":
            frames.append((path.relative_to(ROOT).as_posix(), frame.f_code.co_name))
        frame = frame.f_back
    return frames[::-1]


def _documented_modules() -> set[str]:
    page = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = re.search(r"<!-- request-path:.*?-->(.*?)<!-- /request-path -->", page, re.S)
    assert table, "docs/architecture.md has no request-path table"
    return set(re.findall(r"`(\w+/\w+\.py)`", table.group(1)))


async def test_one_request_goes_down_the_layers_through_the_modules_the_page_names(
        segmind_credentials, tmp_path):
    stacks: dict[str, list[tuple[str, str]]] = {}

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event != "call" or not frame.f_code.co_filename.startswith(str(ROOT)):
            return
        for leaf, (folder, function) in LEAVES.items():
            if leaf not in stacks and frame.f_code.co_name == function:
                frames = _package_frames(frame)
                start = ("flows/generation.py", "image_to_video")  # before it: how the flow is called
                if frames[-1][0].startswith(folder + "/") and start in frames:
                    stacks[leaf] = frames[frames.index(start):]

    sys.setprofile(profile)
    threading.setprofile(profile)
    try:
        result = await image_to_video(
            still_prompt="a lighthouse at dusk @hero", motion_prompt="slow dolly in",
            credentials=segmind_credentials, storage=str(tmp_path),
            reference_images=[{"uri": "https://example.com/ref.png", "tag": "hero"}],
        )
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    assert (tmp_path / result.still.key).is_file() and result.video is not None

    assert set(stacks) == set(LEAVES), f"the still never reached {set(LEAVES) - set(stacks)}"
    layers = _layers()
    for leaf, frames in stacks.items():
        path = [layers[module.split("/")[0].removesuffix(".py")] for module, _ in frames]
        shown = " -> ".join(f"{m}:{f}" for m, f in frames)
        assert path == sorted(path, reverse=True), f"{leaf}: a call goes up a layer: {shown}"
    passed = {module for frames in stacks.values() for module, _ in frames}
    missing = passed - _documented_modules()
    assert not missing, (f"the request passes modules docs/architecture.md does not name: "
                         f"{sorted(missing)}")


def test_the_layer_check_sees_a_call_going_up():
    layers = _layers()
    up = ["flows/generation.py", "storage/delivery.py", "tasks/collect.py"]
    path = [layers[m.split("/")[0]] for m in up]
    assert path != sorted(path, reverse=True)
