"""Provider fallback: when a provider provably did not take a job, the next one serves it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from prefect_runway.blocks.credentials import ProviderCredentials
from prefect_runway.blocks.requests import prepare, reseeder
from prefect_runway.errors import (
    DailyQuotaExceeded,
    InsufficientCredits,
    InvalidRequest,
    ModelRetired,
    PrefectRunwayError,
    ProviderUnavailable,
    RateLimited,
    SubmissionUncertain,
    UnsupportedOption,
)
from prefect_runway.models import Generation, Request, StoredOutput
from prefect_runway.providers.base import PreparedRequest

__all__ = [
    "DEFAULT_REASONS", "REASONS", "FallbackPolicy", "Route", "Served", "Skip", "Step",
    "StepFallback", "Submit", "balance_covered", "check_fallback_on", "describe_fallback",
    "error_text", "failure_reason", "fallback_logger", "same_request",
]

#: Every reason a step may fall back for, and what it means.
REASONS: dict[str, str] = {
    "unavailable": "503 answers or no connection (nothing sent) past the retry budget",
    "rate_limited": "429 answers past the retry budget",
    "daily_quota": "the provider's daily generation quota is spent",
    "insufficient_credits": "the account cannot pay for the job",
    "model_unsupported": "the provider does not serve the model or an option of the request",
}
#: The reasons a step falls back for unless ``fallback_on`` says otherwise: all of them.
DEFAULT_REASONS: frozenset[str] = frozenset(REASONS)

Step = Literal["still", "video"]


def failure_reason(error: BaseException) -> str | None:
    """Why ``error`` proves the provider did not take the job, or None when it does not.

    None for :class:`~prefect_runway.errors.SubmissionUncertain` (and anything that may have
    made a job), for an authentication error, a refused or invalid request, and every error
    that is not this package's.
    """
    if isinstance(error, SubmissionUncertain):
        return None  # the job may exist and be billed: never pay twice
    if isinstance(error, (ModelRetired, UnsupportedOption)):
        return "model_unsupported"
    if isinstance(error, InvalidRequest) or not isinstance(error, PrefectRunwayError):
        return None
    from prefect_runway.engine.retry import made_no_job

    if not made_no_job(error):
        return None
    if isinstance(error, DailyQuotaExceeded):
        return "daily_quota"
    if isinstance(error, RateLimited):
        return "rate_limited"
    if isinstance(error, InsufficientCredits):
        return "insufficient_credits"
    if isinstance(error, ProviderUnavailable):
        return "unavailable"
    return None


def check_fallback_on(value: Any, field_name: str = "fallback_on") -> frozenset[str]:
    """The reasons a run falls back for: ``value`` checked (None: :data:`DEFAULT_REASONS`).

    Takes a list (or set) of reasons, or one string of comma-separated reasons; an empty
    list means never fall back.

    Raises:
        InvalidRequest: naming ``field_name`` and the allowed reasons.
    """
    if value is None:
        return DEFAULT_REASONS
    if isinstance(value, str):
        items: list[Any] = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, Iterable) and not isinstance(value, (bytes, dict)):
        items = list(value)
    else:
        raise InvalidRequest(field_name, f"{value!r} is not a list of reasons",
                             allowed=sorted(REASONS))
    for item in items:
        if not isinstance(item, str) or item not in REASONS:
            raise InvalidRequest(field_name, f"{item!r} is not a fallback reason",
                                 allowed=sorted(REASONS))
    return frozenset(items)


@dataclass(frozen=True)
class FallbackPolicy:
    """Which failures let a step go to its next provider.

    Attributes:
        reasons: The reasons (keys of :data:`REASONS`) that allow a fallback.
    """

    reasons: frozenset[str] = DEFAULT_REASONS

    @classmethod
    def parse(cls, fallback_on: Any = None, field_name: str = "fallback_on") -> FallbackPolicy:
        """The policy of a ``fallback_on`` parameter (see :func:`check_fallback_on`)."""
        return cls(check_fallback_on(fallback_on, field_name))

    def reason(self, error: BaseException) -> str | None:
        """The reason ``error`` allows a fallback under this policy, or None."""
        reason = failure_reason(error)
        return reason if reason in self.reasons else None


@dataclass(frozen=True)
class Skip:
    """A provider a step did not run on, and why.

    Attributes:
        provider: The provider skipped.
        reason: The reason (a key of :data:`REASONS`).
        error: The error that proved it (type and message; never a key).
        stage: ``plan`` (known before anything was sent) or ``submit`` (it refused the job).
    """

    provider: str
    reason: str
    error: str
    stage: Literal["plan", "submit"]

    def as_dict(self) -> dict[str, str]:
        return {"provider": self.provider, "reason": self.reason, "error": self.error,
                "stage": self.stage}


def error_text(error: BaseException, limit: int = 300) -> str:
    """``Type: message`` of an error, on one line, at most ``limit`` characters (never a key)."""
    text = f"{type(error).__name__}: {error}".replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_fallback(output: StoredOutput | None) -> str:
    """One line saying how an output's step fell back (empty when it did not)."""
    skipped = getattr(output, "fallback", None) or []
    if output is None or not skipped:
        return ""
    tried = ", ".join(f"{s['provider']} {s['reason']}" for s in skipped)
    return f"{output.kind} on {output.provider} after fallback ({tried})"


@dataclass
class Route:
    """Where one step may go: its provider, then its fallbacks, in order.

    Attributes:
        step: ``still`` or ``video``.
        parameter: The parameter naming the fallbacks (``video_fallback``), for errors.
        providers: The providers, the one to try first at the head.
        policy: Which failures allow a fallback.
        skipped: Providers dropped at plan time (``model_unsupported``), in order.
    """

    step: Step
    parameter: str
    providers: list[ProviderCredentials]
    policy: FallbackPolicy = field(default_factory=FallbackPolicy)
    skipped: list[Skip] = field(default_factory=list)

    @property
    def primary(self) -> ProviderCredentials:
        """The provider the step is sent to first."""
        return self.providers[0]

    @property
    def fallbacks(self) -> list[ProviderCredentials]:
        return self.providers[1:]

    @property
    def active(self) -> bool:
        """Whether the step has anywhere to fall back to (or already did at plan time)."""
        return len(self.providers) > 1 or bool(self.skipped)

    def runtime(
        self, build: Callable[[ProviderCredentials], Awaitable[Request]], name: str | None = None,
    ) -> StepFallback | None:
        """The route at run time (None when the step has no fallback)."""
        return StepFallback(self, build, name) if self.active else None

    def covers(self, error: BaseException) -> bool:
        """Whether a refusal of this route's head (a balance check's ``InsufficientCredits``)
        is one the step may fall back from: then it is no reason to stop the run."""
        return (
            len(self.providers) > 1 and isinstance(error, InsufficientCredits)
            and "insufficient_credits" in self.policy.reasons
            and getattr(error, "provider", None) == self.primary.provider_name
        )

    def prepared(self, request: Request) -> list[tuple[ProviderCredentials, PreparedRequest]]:
        """The step's request prepared for each provider of the route that takes it (what a
        plan prices its worst case on)."""
        out = []
        for credentials in self.providers:
            try:
                out.append((credentials, prepare(request, credentials)))
            except InvalidRequest:  # checked at plan time: only a head dropped there
                continue
        return out

    def credentials_for(self, provider: str) -> ProviderCredentials:
        """The route's credentials for ``provider`` (the first one, if it has several)."""
        for credentials in self.providers:
            if credentials.provider_name == provider:
                return credentials
        return self.primary

    def check(
        self,
        request: Request,
        *,
        on_invalid: Callable[[int, ProviderCredentials, InvalidRequest], Exception] | None = None,
        logger: Any = None,
    ) -> Route:
        """Prepare the step for every provider of the route, before anything is sent.

        The head of the route may be dropped when it does not serve the model and
        ``model_unsupported`` is a reason (recorded in :attr:`skipped`, said at WARNING); any
        other provider that cannot take the request is an error.

        Args:
            request: The step's request (a video step's with a placeholder image: its still
                is not made yet); each provider maps it to its own vocabulary.
            on_invalid: ``(index, credentials, error) -> exception`` (index 0 is the head),
                to name the field as the caller knows it; default: an InvalidRequest naming
                the field, the provider and the fallback.
            logger: Where the warning goes (default: this module's logger).

        Raises:
            InvalidRequest: a provider of the route cannot take the request.
        """
        if len(self.providers) == 1:
            return self  # no fallback: the flow's own planning checks it, as ever
        start = 0
        for index, credentials in enumerate(self.providers):
            try:
                prepare(request, credentials)
            except InvalidRequest as error:
                reason = self.policy.reason(error)
                if index == start and index < len(self.providers) - 1 and reason is not None:
                    skip = Skip(credentials.provider_name, reason, error_text(error), "plan")
                    self.skipped.append(skip)
                    fallback_logger(logger).warning(
                        "The %s cannot go to %s (%s: %s); it goes to %s instead (fallback)",
                        self.step, credentials.provider_name, reason, error,
                        self.providers[index + 1].provider_name,
                    )
                    start = index + 1
                    continue
                if on_invalid is not None:
                    raise on_invalid(index, credentials, error) from None
                if index == 0:
                    raise
                raise self.invalid_fallback(index, credentials, error) from None
        self.providers = self.providers[start:]
        return self

    def invalid_fallback(
        self, index: int, credentials: ProviderCredentials, error: InvalidRequest
    ) -> InvalidRequest:
        """The error for a fallback provider that cannot take the step's request."""
        from prefect_runway.flows.shots import message_of

        return InvalidRequest(
            error.field,
            f"{message_of(error)} on {credentials.provider_name}, the {self.step}'s fallback "
            f"{self.parameter}[{index - 1}]; every fallback provider must take the request",
            allowed=error.allowed, provider=error.provider or credentials.provider_name,
            model=error.model,
        )


def fallback_logger(logger: Any) -> Any:
    """``logger``, else the run's logger, else this module's."""
    if logger is not None:
        return logger
    try:
        from prefect.logging import get_run_logger

        return get_run_logger()
    except Exception:  # noqa: BLE001 - outside a run: the module's logger
        import logging

        return logging.getLogger(__name__)


#: ``(prepared, credentials, last) -> Generation``: one submit (``last``: the route's last
#: provider, which keeps the submit task's own retries).
Submit = Callable[[PreparedRequest, ProviderCredentials, bool], Awaitable[Generation]]


@dataclass
class Served:
    """Where a step's job went: the provider, its prepared request and the job."""

    credentials: ProviderCredentials
    prepared: PreparedRequest
    generation: Generation
    reseed: Callable[[int], PreparedRequest] | None


@dataclass
class StepFallback:
    """A step's route at run time: submits to each provider in turn while refusals allow.

    Attributes:
        route: The checked route.
        build: ``credentials -> Request`` (awaitable): the step's request for a fallback
            provider (a video step hands its still over as that provider needs it).
        name: The step's name in log lines (the shot's or the run's name).
        skipped: Providers skipped, at plan time and at this run's submits.
        served_by: The credentials that took the job, once one did.
    """

    route: Route
    build: Callable[[ProviderCredentials], Awaitable[Request]]
    name: str | None = None
    skipped: list[Skip] = field(default_factory=list)
    served_by: ProviderCredentials | None = None

    def __post_init__(self) -> None:
        self.skipped = list(self.route.skipped)

    async def submit(
        self,
        prepared: PreparedRequest,
        credentials: ProviderCredentials,
        reseed: Callable[[int], PreparedRequest] | None,
        submit: Submit,
        *,
        logger: Any = None,
    ) -> Served:
        """Submit to ``credentials``, then to each fallback while the refusal allows it.

        Raises:
            SubmissionUncertain: never followed by a fallback (the job may be billed).
            ProviderError: the last provider's refusal (with a note naming every skip), or a
                refusal the policy does not allow a fallback for.
        """
        log = fallback_logger(logger)
        # Called with other credentials than the route's head: no fallback.
        rest = list(self.route.fallbacks) if credentials is self.route.primary else []
        what = self.route.step + (f" {self.name!r}" if self.name else "")
        current, request, current_reseed = credentials, prepared, reseed
        while True:
            try:
                generation = await submit(request, current, not rest)
            except SubmissionUncertain:
                if rest:
                    log.warning(
                        "Not falling back from %s for the %s: the submit's outcome is unknown "
                        "(the job may exist and be billed), so another provider could make "
                        "it paid twice", current.provider_name, what,
                    )
                raise
            except Exception as error:
                reason = self.route.policy.reason(error)
                if reason is None or not rest:
                    if self.skipped:
                        error.add_note("fallback: " + "; ".join(
                            f"{s.provider} skipped ({s.reason}: {s.error})" for s in self.skipped
                        ))
                    raise
                following = rest.pop(0)
                self.skipped.append(Skip(current.provider_name, reason, error_text(error), "submit"))
                log.warning(
                    "%s refused the %s (%s: %s); it provably did not take the job, so the %s "
                    "falls back to %s",
                    current.provider_name, what, reason, error_text(error), self.route.step,
                    following.provider_name,
                )
                built = await self.build(following)
                request = prepare(built, following)
                current, current_reseed = following, reseeder(built, following)
                continue
            self.served_by = current
            return Served(current, request, generation, current_reseed)

    async def annotate(self, stored: list[StoredOutput], storage: Any) -> list[StoredOutput]:
        """Record the skipped providers in each output and its sidecar (unchanged if none)."""
        if not self.skipped:
            return stored
        record = [s.as_dict() for s in self.skipped]
        return [await storage.annotated(output, fallback=record) for output in stored]


def same_request(request: Request) -> Callable[[ProviderCredentials], Awaitable[Request]]:
    """A route's ``build`` giving the same request for every provider (a still)."""
    async def build(_: ProviderCredentials) -> Request:
        return request

    return build


def balance_covered(error: BaseException, routes: Iterable[Route | None], logger: Any = None) -> bool:
    """Whether a balance check's ``InsufficientCredits`` may be let through because every
    step on that provider has a fallback (said at WARNING); the submit's refusal then moves
    the step on."""
    steps = [r for r in routes if r is not None and r.primary.provider_name == getattr(
        error, "provider", None)]
    if not steps or not all(r.covers(error) for r in steps):
        return False
    fallback_logger(logger).warning(
        "%s; the %s will fall back to %s if %s refuses", error,
        " and ".join(sorted({r.step for r in steps})),
        ", ".join(sorted({c.provider_name for r in steps for c in r.fallbacks})),
        steps[0].primary.provider_name,
    )
    return True
