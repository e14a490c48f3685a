"""What every model of the package shares: the strict base, and checks of single values."""

from __future__ import annotations

import base64
import math
import unicodedata
from datetime import datetime, timezone
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError

from prefect_runway.errors import InvalidRequest

__all__ = [
    "MAX_NAME", "StrictModel", "as_invalid_request", "bytes_to_data_uri", "check_name",
    "seconds_value", "sniff_media_type", "utc_now", "utf16_len",
]

#: The longest name (a shot's, a flow's ``name``), in characters.
MAX_NAME = 200
#: Bidirectional overrides and isolates: they make a name read differently than it is.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def utf16_len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units, the unit the providers count prompts in."""
    return len(text.encode("utf-16-le")) // 2


def bytes_to_data_uri(data: bytes, media_type: str | None = None) -> str:
    """Encode raw image bytes as a ``data:`` URI, sniffing the media type when not given."""
    media_type = media_type or sniff_media_type(data) or "application/octet-stream"
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


def sniff_media_type(data: bytes) -> str | None:
    """Media type from magic bytes, for the formats this package reads and writes."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":
        return "video/mp4"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None


def as_invalid_request(error: ValidationError, model: type[BaseModel] | None = None) -> InvalidRequest:
    """The first problem in a pydantic ValidationError, as the typed InvalidRequest; a value
    outside a ``Literal`` field of ``model`` names the allowed values, as every check does."""
    first = error.errors()[0]
    original = (first.get("ctx") or {}).get("error")
    if isinstance(original, InvalidRequest):
        return original
    loc = first.get("loc", ())
    field = ".".join(str(p) for p in loc) or "request"
    if first.get("type") == "literal_error" and model is not None and len(loc) == 1:
        info = model.model_fields.get(str(loc[0]))
        allowed = get_args(info.annotation) if info is not None else ()
        if allowed and get_origin(info.annotation) is Literal:  # type: ignore[union-attr]
            return InvalidRequest(field, f"{first.get('input')!r} is not allowed",
                                  allowed=list(allowed))
    return InvalidRequest(field, first.get("msg", "is invalid"))


class StrictModel(BaseModel):
    """Raises InvalidRequest (naming the field) instead of pydantic's ValidationError."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise as_invalid_request(e, type(self)) from None

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as e:
            raise as_invalid_request(e, cls) from None


def seconds_value(field: str, value: Any, allowed: str = "a number of seconds > 0") -> float:
    """A length of time in seconds, finite and above 0 (a flow's ``timeout``, a review's
    ``review_timeout``), or a typed error naming ``field``."""
    try:
        seconds = math.nan if isinstance(value, bool) else float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int past float's range
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise InvalidRequest(field, f"{value!r} is not a number of seconds", allowed=allowed)
    return seconds


def check_name(value: Any, field: str = "name") -> str | None:
    """A name that is safe wherever it shows (task-run names, logs, the terminal, artifacts
    and their descriptions, storage keys through :func:`prefect_runway.storage.keys.slug`), or a typed error.

    Refused: a name that is not text, longer than :data:`MAX_NAME`, or holding a control
    character (a newline forges log lines, an escape sequence drives a terminal), a
    bidirectional override, or a lone surrogate (no UTF-8 form: the Prefect API could not
    store it). Any other Unicode is kept as it is.

    Raises:
        InvalidRequest: naming ``field``; nothing was sent.
    """
    if value is None:
        return None
    allowed = f"a string of at most {MAX_NAME} characters, without control characters"
    if not isinstance(value, str):
        raise InvalidRequest(field, f"{value!r} is not text", allowed=allowed)
    if len(value) > MAX_NAME:
        raise InvalidRequest(field, f"is {len(value)} characters long", allowed=allowed)
    for i, c in enumerate(value):
        if c in _BIDI or unicodedata.category(c) in ("Cc", "Cs"):
            raise InvalidRequest(field, f"{value!r} has the control character U+{ord(c):04X} "
                                        f"at {i}", allowed=allowed)
    return value
