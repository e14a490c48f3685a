"""Routes: a step's providers loaded and checked (:func:`load_route`), and a storyboard's,
shot by shot (:class:`ShotRouter`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from prefect_runway.blocks.credentials import ProviderCredentials
from prefect_runway.blocks.requests import load_credentials
from prefect_runway.errors import InvalidRequest, InvalidShot
from prefect_runway.flows.fallback import (
    FallbackPolicy,
    Route,
    Step,
)
from prefect_runway.models import PLACEHOLDER_IMAGE

__all__ = ["ShotRouter", "ShotRoutes", "invalid_shot", "load_route"]


@dataclass
class ShotRoutes:
    """A storyboard shot's two routes (each with the shot's or the flow's fallbacks)."""

    still: Route
    video: Route


class ShotRouter:
    """Each storyboard shot's routes, every fallback provider checked against the shot,
    before anything is sent; saved blocks are loaded once each.

    A shot's own ``image_fallback`` / ``video_fallback`` (saved blocks' names) replace the
    flow's. Call :meth:`route` as each shot is planned
    (:func:`prefect_runway.flows.plan.plan_storyboard`'s ``router``), so a shot is planned on the
    provider its route starts on: the head is dropped when it does not serve the model.

    Args:
        image_fallback: The flow's fallbacks for every still.
        video_fallback: The flow's fallbacks for every video.
        policy: Which failures allow a fallback.
        source: The shots file, for error messages.
    """

    def __init__(
        self,
        *,
        image_fallback: Sequence[ProviderCredentials | str] | None = None,
        video_fallback: Sequence[ProviderCredentials | str] | None = None,
        policy: FallbackPolicy | None = None,
        source: str | None = None,
    ) -> None:
        self.image_fallback, self.video_fallback = image_fallback, video_fallback
        self.policy = policy or FallbackPolicy()
        self.source = source
        self.routes: dict[int, ShotRoutes] = {}
        self._loaded: dict[str, ProviderCredentials] = {}

    async def _load(self, value: Any, where: str) -> ProviderCredentials:

        if isinstance(value, str) and value in self._loaded:
            return self._loaded[value]
        credentials = await load_credentials(value, where)
        if isinstance(value, str):
            self._loaded[value] = credentials
        return credentials

    async def route(
        self, row: int, name: str, shot: Any,
        image_credentials: ProviderCredentials, video_credentials: ProviderCredentials,
        mode: str = "still",
    ) -> ShotRoutes:
        """The shot's routes (kept in :attr:`routes` by row), each checked against the shot
        as ``mode`` plans it (:data:`prefect_runway.flows.plan.Mode`; with no still, the
        still's route is its provider alone and is not checked).

        Raises:
            InvalidRequest: a flow-level fallback is not usable (naming ``video_fallback[i]``).
            InvalidShot: a shot's fallback is not usable, or a fallback provider cannot take
                the shot (naming the row, the field and the provider).
        """
        from prefect_runway.flows.shots import message_of

        chosen: dict[str, Route] = {}
        has_still = mode == "still"  # no still: its route is the video's provider alone
        steps: tuple[tuple[Step, Any, Any, Any], ...] = (
            ("still", image_credentials, shot.image_fallback if has_still else None,
             self.image_fallback if has_still else None),
            ("video", video_credentials, shot.video_fallback, self.video_fallback),
        )
        for step, primary, own, flow_level in steps:
            field_name = f"{'image' if step == 'still' else 'video'}_fallback"
            try:
                route = await load_route(step, primary, own or flow_level, field_name,
                                         self.policy, load=self._load)
            except InvalidRequest as e:
                if not own:
                    raise
                raise InvalidShot(row, e.field, message_of(e), source=self.source,
                                  shot=name, allowed=e.allowed) from None
            chosen[step] = route
        if has_still:
            chosen["still"].check(shot.still_request(), on_invalid=invalid_shot(
                chosen["still"], row, shot, name, self.source))
        video = (shot.text_request() if mode == "text"
                 else shot.video_request(PLACEHOLDER_IMAGE, None))
        chosen["video"].check(video, on_invalid=invalid_shot(chosen["video"], row, shot, name,
                                                             self.source))
        routes = self.routes[row] = ShotRoutes(still=chosen["still"], video=chosen["video"])
        return routes

    async def plan_on(
        self, row: int, name: str, shot: Any,
        image_credentials: ProviderCredentials, video_credentials: ProviderCredentials,
        mode: str = "still",
    ) -> tuple[ProviderCredentials, ProviderCredentials]:
        """:meth:`route`, then where the shot's still and video start: the
        ``router`` of :func:`prefect_runway.flows.plan.plan_storyboard`."""
        routes = await self.route(row, name, shot, image_credentials, video_credentials, mode)
        return routes.still.primary, routes.video.primary


async def load_route(
    step: Step,
    primary: ProviderCredentials,
    fallback: Sequence[ProviderCredentials | str] | ProviderCredentials | str | None,
    field_name: str,
    policy: FallbackPolicy | None = None,
    *,
    load: Callable[[Any, str], Awaitable[ProviderCredentials]] | None = None,
) -> Route:
    """A step's route: ``primary``, then each fallback (a block, or a saved block's name).

    Args:
        step: ``still`` or ``video``.
        primary: The step's provider.
        fallback: Its fallbacks, in order (one, a list, or None).
        field_name: The parameter naming them (``video_fallback``), for errors.
        policy: Which failures allow a fallback (default: every reason).
        load: ``(value, field) -> credentials`` (default
            :func:`prefect_runway.blocks.requests.load_credentials`).

    Raises:
        InvalidRequest: naming ``field_name[i]``: not credentials, or the same provider and
            API as an earlier one.
    """
    if load is None:
        from prefect_runway.blocks.requests import load_credentials

        load = load_credentials
    values: list[Any]
    if fallback is None:
        values = []
    elif isinstance(fallback, (str, ProviderCredentials)):
        values = [fallback]
    else:
        values = list(fallback)
    providers = [primary]
    for index, value in enumerate(values):
        where = f"{field_name}[{index}]"
        credentials = await load(value, where)
        for earlier in providers:
            if (earlier.provider_name, earlier.resolved_base_url()) == (
                credentials.provider_name, credentials.resolved_base_url()
            ):
                raise InvalidRequest(
                    where, f"{credentials.provider_name} at {credentials.resolved_base_url()} is "
                    f"already on the {step}'s route", allowed="another provider (or API)",
                )
        providers.append(credentials)
    return Route(step=step, parameter=field_name, providers=providers,
                 policy=policy or FallbackPolicy())


def invalid_shot(
    route: Route, row: int, shot: Any, name: str, source: str | None,
) -> Callable[[int, ProviderCredentials, InvalidRequest], Exception]:
    """An ``on_invalid`` for :meth:`Route.check` naming a storyboard shot's row and field."""
    from prefect_runway.flows.shots import message_of

    def invalid(index: int, credentials: ProviderCredentials, error: InvalidRequest) -> Exception:
        field_name = shot.shot_field(route.step, error.field)
        where = "" if index == 0 else (
            f" on {credentials.provider_name}, the {route.step}'s fallback "
            f"{route.parameter}[{index - 1}]")
        return InvalidShot(row, field_name, message_of(error) + where, source=source,
                           shot=name, allowed=error.allowed,
                           provider=error.provider or credentials.provider_name,
                           model=error.model)

    return invalid
