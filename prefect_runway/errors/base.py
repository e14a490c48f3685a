"""The root of every error prefect-runway raises."""

from __future__ import annotations

from typing import Any


def _restore(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    """An error as it was pickled, without calling its ``__init__`` again."""
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class PrefectRunwayError(Exception):
    """Base class of every error raised by prefect-runway.

    Every error pickles (a process pool, a task's failed state): keyword-only arguments and
    the attributes are restored as they were, whatever the subclass's ``__init__`` takes."""

    def __reduce__(self) -> Any:
        return (_restore, (type(self), self.args, dict(self.__dict__)))


#: The earlier name of :class:`PrefectRunwayError` (the same class).
RunwayError = PrefectRunwayError
