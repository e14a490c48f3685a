"""Bad input, refused before anything is sent: a request, a shot, a retired model, the
command line."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prefect_runway.errors.base import PrefectRunwayError


class InvalidRequest(PrefectRunwayError, ValueError):
    """A request is invalid for the chosen provider and model; nothing was sent.

    Attributes:
        field: The request field at fault (e.g. ``"ratio"``).
        allowed: The allowed values or range, where there is a finite description.
        provider: The provider whose rule was broken, if the rule is provider-specific.
        model: The model whose rule was broken, if the rule is model-specific.
    """

    def __init__(
        self,
        field: str,
        message: str,
        *,
        allowed: Iterable[Any] | str | None = None,
        provider: str | None = None,
        model: str | None = None,
    ) -> None:
        self.field = field
        self.provider = provider
        self.model = model
        self.allowed: list[Any] | str | None
        if allowed is None or isinstance(allowed, str):
            self.allowed = allowed
        else:
            self.allowed = list(allowed)
        where = " ".join(p for p in (provider, model) if p)
        text = f"{field}: {message}"
        if where:
            text += f" (for {where})"
        if self.allowed is not None:
            shown = self.allowed if isinstance(self.allowed, str) else ", ".join(
                repr(a) for a in self.allowed
            )
            text += f"; allowed: {shown}"
        super().__init__(text)


class InvalidShot(InvalidRequest):
    """A shot of a storyboard is invalid; nothing of the storyboard was submitted.

    The message names where the shot is (the file, its row, the shot's name) and the field.

    Attributes:
        row: 1-based position of the shot in its list or file (for CSV: the data row).
        shot: The shot's name, where it has one.
        source: The shots file, or None for shots given as a list.
        line: The line of the file where the shot starts, where known (CSV).
    """

    def __init__(
        self,
        row: int,
        field: str,
        message: str,
        *,
        source: str | None = None,
        shot: str | None = None,
        line: int | None = None,
        allowed: Iterable[Any] | str | None = None,
        provider: str | None = None,
        model: str | None = None,
    ) -> None:
        self.row = row
        self.shot = shot
        self.source = source
        self.line = line
        self._message = message
        super().__init__(field, message, allowed=allowed, provider=provider, model=model)
        where = f"{source}: " if source else ""
        where += f"row {row}"
        details = [d for d in (f"line {line}" if line else None, f"shot {shot!r}" if shot else None) if d]
        if details:
            where += f" ({', '.join(details)})"
        self.args = (f"{where}: {self.args[0]}",)

    def __reduce__(self) -> Any:
        return (_rebuild_invalid_shot, (self.row, self.field, self._message, {
            "source": self.source, "shot": self.shot, "line": self.line, "allowed": self.allowed,
            "provider": self.provider, "model": self.model,
        }))


def _rebuild_invalid_shot(row: int, field: str, message: str, kwargs: dict[str, Any]) -> InvalidShot:
    return InvalidShot(row, field, message, **kwargs)


class UsageError(PrefectRunwayError):
    """A mistake on the ``prefect-runway`` command line: printed as one line, exit status 2."""


class ModelRetired(InvalidRequest):
    """The provider retired this model; nothing was sent.

    Attributes:
        retired_on: The day the provider retired it, where known.
        replacement: The model the provider offers instead, where there is one.
        served_by: The providers that still serve this model.
    """

    def __init__(
        self,
        model: str,
        *,
        provider: str,
        retired_on: Any = None,
        replacement: str | None = None,
        served_by: Iterable[str] = (),
        allowed: Iterable[Any] | str | None = None,
    ) -> None:
        self.retired_on = retired_on
        self.replacement = replacement
        self.served_by = list(served_by)
        message = f"{model!r} was retired by {provider}"
        if retired_on is not None:
            message += f" on {retired_on}"
        if replacement:
            message += f"; use {replacement!r} instead"
        if self.served_by:
            message += f"; still served by {', '.join(self.served_by)}"
        super().__init__("model", message, allowed=allowed, provider=provider, model=model)

    def __reduce__(self) -> Any:
        return (_rebuild_model_retired, (self.model, {
            "provider": self.provider, "retired_on": self.retired_on,
            "replacement": self.replacement, "served_by": self.served_by, "allowed": self.allowed,
        }))


def _rebuild_model_retired(model: str, kwargs: dict[str, Any]) -> ModelRetired:
    return ModelRetired(model, **kwargs)


class UnsupportedOption(InvalidRequest):
    """The request sets an option this provider or model has no field for; nothing was sent."""


class UploadRequired(InvalidRequest):
    """A local image is too large to send inline (as a data URI); it must be uploaded first.

    The engine uploads it (Runway: ``POST /v1/uploads``) and sends the ``runway://`` URI;
    see ``Provider.uploads_needed``. Nothing was sent.

    Attributes:
        size: The image's size in bytes.
        limit: The provider's data-URI limit (characters of the encoded URI).
    """

    def __init__(self, field: str, message: str, *, size: int, limit: int, **kwargs: Any) -> None:
        self.size = size
        self.limit = limit
        super().__init__(field, message, **kwargs)

    def __reduce__(self) -> Any:
        return (_rebuild_upload_required, (self.field, str(self), {
            "size": self.size, "limit": self.limit,
        }))


def _rebuild_upload_required(field: str, text: str, kwargs: dict[str, Any]) -> UploadRequired:
    error = UploadRequired(field, "", **kwargs)
    error.args = (text,)
    return error
