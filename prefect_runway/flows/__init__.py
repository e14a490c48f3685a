"""Flows: generate_image, animate_image, text_to_video, the chain image_to_video, and the batch
storyboard; each module is loaded on first use, so a flow run builds only the flow it runs."""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefect_runway.flows.generation import image_to_video
    from prefect_runway.flows.results import ImageToVideoResult, ShotResult, StoryboardSummary
    from prefect_runway.flows.retries import run_generation
    from prefect_runway.flows.single import animate_image, generate_image, text_to_video
    from prefect_runway.flows.storyboard import storyboard

#: Each name and the module it comes from. Building a flow costs some 25 ms (Prefect makes its
#: parameter schema); a deployment's run imports this package and its entrypoint's file only.
_NAMES = {
    "animate_image": "prefect_runway.flows.single",
    "generate_image": "prefect_runway.flows.single",
    "text_to_video": "prefect_runway.flows.single",
    "image_to_video": "prefect_runway.flows.generation",
    "storyboard": "prefect_runway.flows.storyboard",
    "run_generation": "prefect_runway.flows.retries",
    "ImageToVideoResult": "prefect_runway.flows.results",
    "ShotResult": "prefect_runway.flows.results",
    "StoryboardSummary": "prefect_runway.flows.results",
}

__all__ = [
    "ImageToVideoResult", "ShotResult", "StoryboardSummary", "animate_image", "generate_image",
    "image_to_video", "run_generation", "storyboard", "text_to_video",
]


def __getattr__(name: str) -> Any:
    """A flow or result class, imported when first asked for (PEP 562)."""
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_NAMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Flows(types.ModuleType):
    """This package, whose ``storyboard`` is the flow, also once the module of that name is
    imported (the import system then sets the attribute to the module)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "storyboard" and isinstance(value, types.ModuleType):
            value = value.storyboard
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Flows
