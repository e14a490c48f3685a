"""The flows' parameters, checked before Prefect's own validation: one error shape per mistake.

Prefect validates a flow's parameters against their annotations before the flow body runs,
and a wrong value there is a ``ParameterTypeError`` in pydantic's words (``duration="5s"``:
"Input should be a valid integer"). This package's rule is a typed
:class:`~prefect_runway.errors.InvalidRequest` naming the field and the allowed values, raised
before anything is sent. :class:`RunwayFlow` checks the parameters it knows first
(:func:`check_parameters`), then lets Prefect validate the rest as usual (so saved blocks
passed by reference from a deployment are still resolved). The request fields proper
(prompts, ratios, images) are checked by the request models and each provider's ``prepare``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar

from prefect import Flow

from prefect_runway.errors import InvalidRequest
from prefect_runway.models import SEED_MAX, model_durations, seconds_value
from prefect_runway.names import check_name
from prefect_runway.plan import check_preview
from prefect_runway.review import check_review_parameters

__all__ = ["RunwayFlow", "check_parameters", "runway_flow"]

P = ParamSpec("P")
R = TypeVar("R")

_TRUE = ("true", "yes", "1")
_FALSE = ("false", "no", "0")


def _whole_number(field: str, value: Any, allowed: Any, minimum: int | None = None) -> int:
    if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
        raise InvalidRequest(field, f"{value!r} is not a whole number", allowed=allowed)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidRequest(field, f"{value!r} is not a whole number", allowed=allowed) from None
    if minimum is not None and number < minimum:
        raise InvalidRequest(field, f"{number} is too small", allowed=allowed)
    return number


def check_parameters(parameters: Mapping[str, Any]) -> None:
    """Check the flow parameters this package knows, where Prefect would coerce or refuse them.

    Checked where present: ``duration`` (the lengths of ``video_model`` / ``model``),
    ``seed``, ``timeout``, ``queue_timeout``, ``retry_unsafe_output``, ``force``, ``preview``, ``fallback_on``, ``concurrency``, the
    review's settings (:func:`prefect_runway.review.review_settings`), ``name``
    (:func:`prefect_runway.names.check_name`), and that ``key_template`` and the prompts are
    text.

    Raises:
        InvalidRequest: naming the parameter and the allowed values.
    """
    if "duration" in parameters:
        model = parameters.get("video_model") or parameters.get("model") or "gen4_turbo"
        allowed = model_durations(str(model))
        duration = _whole_number("duration", parameters["duration"], allowed)
        if duration not in allowed:
            raise InvalidRequest("duration", f"{duration} is not allowed", allowed=allowed)
    seed = parameters.get("seed")
    if seed is not None:
        number = _whole_number("seed", seed, f"0-{SEED_MAX}")
        if not 0 <= number <= SEED_MAX:
            raise InvalidRequest("seed", f"{number} is out of range", allowed=f"0-{SEED_MAX}")
    for field in ("timeout", "queue_timeout"):
        if parameters.get(field) is not None:
            seconds_value(field, parameters[field], "a number of seconds > 0, or None for the block's")
    if "retry_unsafe_output" in parameters:
        _whole_number("retry_unsafe_output", parameters["retry_unsafe_output"], "0 (never) or more",
                      minimum=0)
    if "force" in parameters:
        force = parameters["force"]
        if not (isinstance(force, bool) or force in (0, 1)
                or isinstance(force, str) and force.strip().lower() in _TRUE + _FALSE):
            raise InvalidRequest("force", f"{force!r} is not a yes or no", allowed=(True, False))
    if "preview" in parameters:
        check_preview(parameters["preview"])
    if "fallback_on" in parameters:
        from prefect_runway.fallback import check_fallback_on

        check_fallback_on(parameters["fallback_on"])
    if "concurrency" in parameters:
        _whole_number("concurrency", parameters["concurrency"], "1 or more", minimum=1)
    check_review_parameters(parameters)
    check_name(parameters.get("name"))
    for field in ("key_template", "prompt", "still_prompt", "motion_prompt", "provider_limit"):
        value = parameters.get(field)
        if value is not None and not isinstance(value, str):
            raise InvalidRequest(field, f"{value!r} is not text", allowed="a string")


class RunwayFlow(Flow[P, R]):
    """A Prefect flow whose known parameters are checked (:func:`check_parameters`) before
    Prefect validates them, so a wrong value raises this package's
    :class:`~prefect_runway.errors.InvalidRequest`, not Prefect's ``ParameterTypeError``.

    ``Flow.with_options`` returns a plain :class:`prefect.Flow` (Prefect's own validation
    only).
    """

    def validate_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        check_parameters(parameters)
        return super().validate_parameters(parameters)


def runway_flow(**options: Any) -> Callable[[Callable[P, R]], RunwayFlow[P, R]]:
    """``@flow(...)`` for this package's flows: a :class:`RunwayFlow` with ``options``."""

    def decorate(fn: Callable[P, R]) -> RunwayFlow[P, R]:
        return RunwayFlow(fn, **options)

    return decorate
