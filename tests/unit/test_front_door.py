"""The package's front door: a small ``__all__``, every error in ``prefect_runway.errors``, and
imports that load only what is asked for."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import pkgutil
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import prefect_runway
from prefect_runway import errors

#: What ``from prefect_runway import *`` gives: the blocks, the flows, the tasks, the requests
#: and results, and the root of every error.
PUBLIC = {
    "AimlapiCredentials", "ProviderCredentials", "RunwayCredentials", "SegmindCredentials",
    "animate_image", "generate_image", "image_to_video", "storyboard", "text_to_video",
    "collect_generation", "download_generation", "submit_generation", "wait_for_generation",
    "ImageRequest", "ReferenceImage", "Shot", "TextToVideoRequest", "VideoRequest",
    "Generation", "GenerationResult", "ImageToVideoResult", "ShotResult", "StoredOutput",
    "StoryboardSummary",
    "PrefectRunwayError",
}


#: Every module that defines a flow (the package loads each on first use).
FLOW_MODULES = ("import prefect_runway.flows.generation, prefect_runway.flows.single, "
                "prefect_runway.flows.storyboard")


def _fresh(code: str, env: dict[str, str] | None = None) -> dict:
    """Run ``code`` in a new interpreter (``env`` added to this one's); it prints one JSON
    value."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_all_is_the_small_front_door():
    assert set(prefect_runway.__all__) == PUBLIC
    assert len(prefect_runway.__all__) == len(PUBLIC)


def test_every_public_name_resolves_to_the_object_of_its_module():
    from prefect_runway.blocks import SegmindCredentials
    from prefect_runway.flows import image_to_video
    from prefect_runway.models import VideoRequest
    from prefect_runway.tasks import submit_generation

    namespace: dict = {}
    exec("from prefect_runway import *", namespace)
    assert PUBLIC <= set(namespace)
    assert namespace["SegmindCredentials"] is SegmindCredentials
    assert namespace["image_to_video"] is image_to_video
    assert namespace["VideoRequest"] is VideoRequest
    assert namespace["submit_generation"] is submit_generation
    assert namespace["PrefectRunwayError"] is errors.PrefectRunwayError
    assert PUBLIC <= set(dir(prefect_runway))


def _package_exceptions() -> dict[str, type[BaseException]]:
    """Every exception class the package defines outside the emulator, by name."""
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(prefect_runway.__path__, "prefect_runway."):
        if info.name.startswith("prefect_runway.emulator") or info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseException)
                    and obj.__module__.startswith("prefect_runway")
                    and not name.startswith("_") and not obj.__name__.startswith("_")):
                found[obj.__name__] = obj
    return found


def test_every_exception_of_the_package_is_in_errors():
    found = _package_exceptions()
    assert "SubmissionInDoubt" in found and "LedgerRecordUnreadable" in found
    for name, cls in found.items():
        assert name in errors.__all__, f"{name} is not exported by prefect_runway.errors"
        assert getattr(errors, name) is cls
        assert cls.__module__ == "prefect_runway.errors", name
        assert issubclass(cls, errors.PrefectRunwayError), name
    assert set(errors.__all__) == set(found) | {"RunwayError"}


def test_submission_in_doubt_is_reachable_from_errors():
    from prefect_runway.errors import SubmissionInDoubt, SubmissionUncertain

    assert issubclass(SubmissionInDoubt, SubmissionUncertain)


def test_a_name_that_left_the_front_door_still_imports_with_a_warning():
    with pytest.warns(DeprecationWarning, match="prefect_runway.errors"):
        from prefect_runway import InvalidRequest
    assert InvalidRequest is errors.InvalidRequest
    with pytest.warns(DeprecationWarning, match="prefect_runway.storage"):
        from prefect_runway import S3Storage
    from prefect_runway.storage import S3Storage as FromStorage

    assert S3Storage is FromStorage
    assert "InvalidRequest" not in prefect_runway.__all__
    assert "InvalidRequest" not in dir(prefect_runway)


def test_an_unknown_name_is_an_attribute_error():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError, match="no_such_name"):
            prefect_runway.no_such_name  # noqa: B018
        with pytest.raises(ImportError):
            from prefect_runway import NoSuchName  # noqa: F401


def test_importing_errors_or_models_loads_neither_prefect_nor_the_rest():
    loaded = _fresh(
        "import json, sys\n"
        "import prefect_runway, prefect_runway.errors, prefect_runway.models\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('prefect', 'prefect_aws', 'boto3', 'botocore', 'httpx', 'av', 'PIL') "
        "or m.startswith(('prefect_runway.flows', 'prefect_runway.tasks', "
        "'prefect_runway.emulator', 'prefect_runway.engine', 'prefect_runway.blocks', "
        "'prefect_runway.storage')))))"
    )
    assert loaded == []


def test_a_flow_run_loads_no_boto3_until_it_uses_s3():
    """The flows and tasks (what a worker imports for every flow run) leave boto3 to the
    runs that store to S3."""
    loaded = _fresh(
        "import json, sys\n"
        "import prefect_runway.flows, prefect_runway.tasks, prefect_runway.storage\n"
        f"{FLOW_MODULES}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('boto3', 'botocore', 's3transfer'))))"
    )
    assert loaded == []


def test_a_flow_run_loads_no_pyav_or_pillow_until_it_makes_a_picture():
    """PyAV and Pillow (previews, thumbnails) load when a flow run makes a preview, not with
    the flows and tasks."""
    loaded = _fresh(
        "import json, sys\n"
        "import prefect_runway.flows, prefect_runway.tasks, prefect_runway.storage\n"
        f"{FLOW_MODULES}\n"
        "import prefect_runway.storage.previews, prefect_runway.flows.artifacts\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('av', 'PIL'))))"
    )
    assert loaded == []


@pytest.mark.parametrize(("entrypoint", "name"), [
    ("generation.py:image_to_video", "image-to-video"),
    ("storyboard.py:storyboard", "storyboard"),
])
def test_a_deployment_entrypoint_builds_only_its_own_flow(entrypoint, name):
    """Prefect runs a deployment by loading its entrypoint's file (as a module of its own):
    that run builds the one flow it runs (each costs Prefect a parameter schema), not the
    package's other flows, nor a second copy of its own."""
    path = Path(prefect_runway.__file__).parent / "flows" / entrypoint
    loaded = _fresh(
        "import json, sys\n"
        "from prefect.flows import load_flow_from_entrypoint\n"
        "from prefect_runway.flows.parameters import RunwayFlow\n"
        "built = []\n"
        "init = RunwayFlow.__init__\n"
        "def counted(self, fn, *args, **options):\n"
        "    built.append(fn.__name__)\n"
        "    init(self, fn, *args, **options)\n"
        "RunwayFlow.__init__ = counted\n"
        f"flow = load_flow_from_entrypoint({str(path)!r})\n"
        "print(json.dumps({'name': flow.name, 'built': built, 'modules': sorted(m for m in "
        "sys.modules if m.startswith('prefect_runway.flows.') and m.rsplit('.', 1)[1] in "
        "('generation', 'single', 'storyboard'))}))",
        env={"PREFECT_SERVER_ANALYTICS_ENABLED": "false"},
    )
    assert loaded == {"name": name, "built": [entrypoint.split(":")[1]], "modules": []}


def test_the_flows_package_names_the_flows_whichever_module_was_imported_first():
    """``prefect_runway.flows.storyboard`` is the flow (as it always was), also after its
    module was imported by name; the single-step flows still import from ``generation``."""
    loaded = _fresh(
        "import json\n"
        "import prefect_runway.flows.storyboard\n"
        "import prefect_runway.flows as flows\n"
        "from prefect_runway.flows import storyboard\n"
        "from prefect_runway.flows.generation import generate_image, text_to_video\n"
        "from prefect_runway.flows.single import animate_image\n"
        "print(json.dumps([type(storyboard).__name__, type(flows.storyboard).__name__,\n"
        "    generate_image is flows.generate_image, text_to_video is flows.text_to_video,\n"
        "    animate_image is flows.animate_image, set(flows.__all__) <= set(dir(flows))]))"
    )
    assert loaded == ["RunwayFlow", "RunwayFlow", True, True, True, True]


def test_loading_saved_credentials_imports_no_other_prefect_collection(prefect_harness):
    """A flow run given ``"segmind-credentials/NAME"`` loads the block with its own class:
    Prefect's lookup by slug would first import every installed collection (prefect-aws and
    boto3 with it)."""
    from prefect.settings import PREFECT_API_URL
    from pydantic import SecretStr

    from prefect_runway.blocks import SegmindCredentials

    SegmindCredentials(api_key=SecretStr("front-door-key")).save("front-door", overwrite=True)
    loaded = _fresh(
        "import asyncio, json, sys\n"
        "import prefect_runway.flows, prefect_runway.tasks\n"
        "from prefect_runway.blocks.requests import load_credentials\n"
        "block = asyncio.run(load_credentials('segmind-credentials/front-door'))\n"
        "print(json.dumps([type(block).__name__, block.api_key.get_secret_value(), sorted(\n"
        "    m for m in sys.modules if m.split('.')[0] in\n"
        "    ('prefect_aws', 'prefect_redis', 'boto3', 'botocore'))]))",
        env={"PREFECT_API_URL": PREFECT_API_URL.value(),
             "PREFECT_SERVER_ANALYTICS_ENABLED": "false"},
    )
    assert loaded == ["SegmindCredentials", "front-door-key", []]


def test_the_package_alone_loads_only_its_version():
    loaded = _fresh(
        "import json, sys\nimport prefect_runway\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('prefect'))))"
    )
    assert loaded == ["prefect_runway", "prefect_runway._version"]


def test_the_prefect_collection_entry_point_registers_the_blocks():
    """Prefect imports the entry point before it looks a block type up by its slug
    (``Block.load("segmind-credentials/...")`` in a worker that imported nothing else)."""
    pyproject = (Path(prefect_runway.__file__).parents[1] / "pyproject.toml").read_text()
    section = pyproject.split('[project.entry-points."prefect.collections"]')[1].split("\n[")[0]
    found = re.search(r'^prefect_runway = "([\w.]+)"$', section, re.M)
    assert found is not None
    module = found.group(1)
    slugs = _fresh(
        "import json, importlib\n"
        "from prefect.blocks.core import Block\n"
        "from prefect.utilities.dispatch import get_registry_for_type\n"
        f"importlib.import_module({module!r})\n"
        "print(json.dumps(sorted(k for k in get_registry_for_type(Block) "
        "if k.endswith('-credentials'))))"
    )
    assert {"segmind-credentials", "aimlapi-credentials", "runway-credentials"} <= set(slugs)
