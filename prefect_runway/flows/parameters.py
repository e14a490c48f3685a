"""The flows' parameters, checked before Prefect's own validation: one error shape per mistake."""

from __future__ import annotations

import logging
import typing
import warnings
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar

from prefect import Flow
from prefect.client.orchestration import get_client
from pydantic import SecretStr
from pydantic.json_schema import PydanticJsonSchemaWarning

from prefect_runway.blocks.requests import credentials_mapping_refused
from prefect_runway.errors import InvalidRequest
from prefect_runway.flows.review_form import check_review_parameters
from prefect_runway.models import SEED_MAX, check_name, model_durations, seconds_value
from prefect_runway.storage.previews import check_preview

__all__ = ["CREDENTIAL_PARAMETERS", "RunwayFlow", "check_parameters", "credentials_in_clear",
           "forget_credentials_in_clear", "runway_flow"]

P = ParamSpec("P")
R = TypeVar("R")

#: The parameters (of a flow, and of a shot) that take credentials: a block or a saved name.
CREDENTIAL_PARAMETERS = ("credentials", "image_credentials", "video_credentials")
#: The parameters (of a flow, and of a shot) that take a list of credentials.
FALLBACK_PARAMETERS = ("image_fallback", "video_fallback")
#: The parameter groups (:mod:`prefect_runway.flows.options`) that take credentials too.
GROUPS_WITH_CREDENTIALS = ("still", "video")
#: What a flow run's stored parameters hold instead of credentials given as a mapping.
REFUSED = "<credentials given as a mapping: refused, not stored>"
#: A secret as Prefect stores it (a block given as an object: its ``SecretStr`` key).
_MASKED = str(SecretStr("masked"))

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


def credentials_in_clear(
    parameters: Mapping[str, Any], *, stored: bool = False
) -> tuple[dict[str, Any], list[str]]:
    """Where ``parameters`` hold credentials as a mapping (which holds an API key in clear):
    ``(the parameters with each such mapping replaced by a note, their paths)``.

    Looked at: :data:`CREDENTIAL_PARAMETERS`, each item of :data:`FALLBACK_PARAMETERS`, and
    the same fields of every shot given as a mapping (``shots[2].video_fallback[0]``). A
    saved block passed by reference (``{"$ref": ...}``, a deployment's) holds no key and is
    kept. ``stored``: the parameters as Prefect stored them, where a block given as an object
    is a mapping too, its key masked: only a mapping with an ``api_key`` in clear counts.
    """
    found: list[str] = []

    def clean(value: Any, path: str) -> Any:
        if not isinstance(value, Mapping) or set(value) == {"$ref"}:
            return value
        if stored and value.get("api_key") in (None, "", _MASKED):
            return value
        found.append(path)
        return REFUSED

    def fields(values: Mapping[str, Any], prefix: str) -> dict[str, Any]:
        out = dict(values)
        for name in CREDENTIAL_PARAMETERS:
            if name in out:
                out[name] = clean(out[name], prefix + name)
        for name in FALLBACK_PARAMETERS:
            if isinstance(out.get(name), (list, tuple)):
                out[name] = [clean(v, f"{prefix}{name}[{i}]") for i, v in enumerate(out[name])]
        for group in GROUPS_WITH_CREDENTIALS:  # the still's and the video's own providers
            if isinstance(out.get(group), Mapping) and set(out[group]) != {"$ref"}:
                steps = dict(out[group])
                if "credentials" in steps:
                    steps["credentials"] = clean(steps["credentials"], f"{prefix}{group}.credentials")
                if isinstance(steps.get("fallback"), (list, tuple)):
                    steps["fallback"] = [clean(v, f"{prefix}{group}.fallback[{i}]")
                                         for i, v in enumerate(steps["fallback"])]
                finish = steps.get("finish")  # the video's finishing step: its own provider
                if isinstance(finish, Mapping) and "credentials" in finish:
                    steps["finish"] = {**finish, "credentials": clean(
                        finish["credentials"], f"{prefix}{group}.finish.credentials")}
                out[group] = steps
        return out

    cleaned = fields(parameters, "")
    if isinstance(cleaned.get("shots"), (list, tuple)):
        cleaned["shots"] = [fields(shot, f"shots[{i}].") if isinstance(shot, Mapping) else shot
                            for i, shot in enumerate(cleaned["shots"])]
    return cleaned, found


def check_parameters(parameters: Mapping[str, Any]) -> None:
    """Check the flow parameters this package knows, where Prefect would coerce or refuse them.

    Checked where present: ``duration`` (the lengths of ``video_model`` / ``model``),
    ``seed``, ``timeout``, ``queue_timeout``, ``retry_unsafe_output``, ``force``, ``preview``, ``fallback_on``, ``concurrency``, the
    review's settings (:func:`prefect_runway.flows.review_form.review_settings`), ``name``
    (:func:`prefect_runway.models.check_name`), and that ``key_template`` and the prompts are
    text.

    Raises:
        InvalidRequest: naming the parameter and the allowed values; first, credentials given
            as a mapping (:func:`credentials_in_clear`).
    """
    _, in_clear = credentials_in_clear(parameters)
    if in_clear:
        raise credentials_mapping_refused(in_clear[0])
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
        from prefect_runway.flows.fallback import check_fallback_on

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

    Credentials given as a mapping never reach the Prefect API from here
    (:meth:`serialize_parameters`), and a run created with them elsewhere (a deployment's
    parameters) has them removed from its stored parameters as it fails
    (:func:`forget_credentials_in_clear`, an ``on_failure`` hook of every such flow).

    Its options come in groups (:mod:`prefect_runway.flows.options`); the old flat keywords
    are folded into them, in a call and in a deployment's stored parameters.
    """

    def __init__(self, fn: Callable[P, R], *args: Any, **options: Any) -> None:
        from prefect_runway.flows.options import accepting_flat

        options["on_failure"] = [*(options.get("on_failure") or []), forget_credentials_in_clear]
        super().__init__(fn, *args, **options)
        # The run form shows the groups (``self.parameters``, from ``fn``); the function
        # Prefect binds parameters to also takes the old flat keywords (a deployment's).
        self.hints = typing.get_type_hints(fn)
        self.fn = accepting_flat(fn, self.hints)  # type: ignore[arg-type,assignment]

    def with_options(self, **options: Any) -> RunwayFlow[P, R]:  # type: ignore[override]
        """``Flow.with_options``, still a :class:`RunwayFlow` (its checks, its groups)."""
        with warnings.catch_warnings():  # the schema of the flat keywords: replaced below
            warnings.simplefilter("ignore", PydanticJsonSchemaWarning)
            flow = super().with_options(**options)
        flow.__class__ = type(self)
        flow.hints, flow.parameters = self.hints, self.parameters  # type: ignore[attr-defined]
        flow.__wrapped__ = self.__wrapped__  # type: ignore[attr-defined]
        return flow  # type: ignore[return-value]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the flow; the old flat keywords (``video_model=``) go to their groups."""
        from prefect_runway.flows.options import fold

        return super().__call__(*args, **fold(kwargs, self.hints))

    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """What Prefect stores as the flow run's parameters: credentials given as a mapping
        are left out (:data:`REFUSED` in their place); the run then fails on them."""
        from prefect_runway.flows.options import without_unset

        return super().serialize_parameters(credentials_in_clear(without_unset(parameters))[0])

    def validate_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        from prefect_runway.flows.options import flatten, fold, without_unset

        given = without_unset(parameters)
        check_parameters(flatten(given, self.hints))
        return without_unset(super().validate_parameters(fold(given, self.hints)))


async def forget_credentials_in_clear(flow: Any, flow_run: Any, state: Any) -> None:
    """A failed run's hook: where its stored parameters hold credentials as a mapping (a run
    created through the API, a deployment's, with its parameters: stored before any code of
    ours ran), replace them by the parameters without them. Nothing to do for a run this
    package created (:meth:`RunwayFlow.serialize_parameters` left them out)."""
    cleaned, in_clear = credentials_in_clear(flow_run.parameters or {}, stored=True)
    if not in_clear:
        return
    try:
        async with get_client() as client:
            await client.update_flow_run(flow_run.id, parameters=cleaned)
    except Exception as exc:  # noqa: BLE001 - the run failed on the refusal either way
        logging.getLogger(__name__).warning(
            "Could not remove the credentials given as a mapping from flow run %s's stored "
            "parameters (%s); delete the run", flow_run.id, type(exc).__name__)


def runway_flow(**options: Any) -> Callable[[Callable[P, R]], RunwayFlow[P, R]]:
    """``@flow(...)`` for this package's flows: a :class:`RunwayFlow` with ``options``."""

    def decorate(fn: Callable[P, R]) -> RunwayFlow[P, R]:
        return RunwayFlow(fn, **options)

    return decorate
