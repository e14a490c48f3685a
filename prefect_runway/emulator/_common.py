"""Small helpers shared by the protocol modules: request parsing and value checks."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request

from .inputs import url_problem

#: Largest seed the Runway models take (AIMLAPI and Runway document 0..4294967295).
MAX_SEED = 4_294_967_295


class FieldError(Exception):
    """A request field is missing or invalid; `field` names it (None: the whole body)."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


async def read_json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, or `FieldError(None, ...)`."""
    raw = await request.body()
    if not raw.strip():
        raise FieldError(None, "request body must be a JSON object")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FieldError(None, f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise FieldError(None, "request body must be a JSON object")
    return body


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer <token>` header."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def base_url(request: Request) -> str:
    """`http://host:port` the client used to reach us (for absolute URLs we hand out)."""
    return str(request.base_url).rstrip("/")


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, as the providers count prompt length."""
    return len(text.encode("utf-16-le")) // 2


def get_string(
    body: dict[str, Any],
    name: str,
    *,
    required: bool,
    max_utf16: int | None = None,
    allow_empty: bool = False,
) -> str | None:
    """A string field; None when absent and not required."""
    value = body.get(name)
    if value is None:
        if required:
            raise FieldError(name, "is required")
        return None
    if not isinstance(value, str):
        raise FieldError(name, "must be a string")
    if not allow_empty and not value.strip():
        raise FieldError(name, "must not be empty")
    if max_utf16 is not None and utf16_len(value) > max_utf16:
        raise FieldError(name, f"must be at most {max_utf16} characters (UTF-16 code units)")
    return value


def get_int(
    body: dict[str, Any],
    name: str,
    *,
    low: int,
    high: int,
    allow_numeric_string: bool = False,
) -> int | None:
    """An integer field within [low, high]; None when absent."""
    value = body.get(name)
    if value is None:
        return None
    if allow_numeric_string and isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(name, "must be an integer")
    if not low <= value <= high:
        raise FieldError(name, f"must be between {low} and {high}")
    return value


def get_choice(
    body: dict[str, Any],
    name: str,
    choices: Iterable[Any],
    *,
    default: Any = None,
    required: bool = False,
    allow_numeric_string: bool = False,
) -> Any:
    """A field that must be one of `choices`; `default` when absent."""
    choices = list(choices)
    value = body.get(name)
    if value is None:
        if required:
            raise FieldError(name, "is required; one of " + ", ".join(map(str, choices)))
        return default
    if allow_numeric_string and isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or value not in choices:
        raise FieldError(name, f"must be one of {', '.join(map(str, choices))}; got {value!r}")
    return value


def get_image_ref(
    body: dict[str, Any], name: str, *, required: bool, allow_data: bool
) -> str | None:
    """An image URL (or data URI, if allowed) field."""
    value = get_string(body, name, required=required)
    if value is None:
        return None
    return check_image_ref(name, value, allow_data=allow_data)


def check_image_ref(name: str, value: Any, *, allow_data: bool) -> str:
    if not isinstance(value, str) or not value:
        raise FieldError(name, "must be a non-empty string")
    problem = url_problem(value, allow_data=allow_data)
    if problem:
        raise FieldError(name, problem)
    return value


def size_of_ratio(ratio: str) -> tuple[int, int]:
    """`"1280:720"` -> `(1280, 720)`."""
    width, height = ratio.split(":")
    return int(width), int(height)
