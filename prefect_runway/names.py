"""A user's names where they name things: one slug rule (storage keys, artifact keys), and
the names refused before anything is paid (:func:`check_name`)."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Any

from prefect_runway.errors import InvalidRequest

__all__ = ["KEY_CHARACTERS", "MAX_NAME", "check_name", "slug"]

#: The characters a storage key's component keeps (the rest become ``-``).
KEY_CHARACTERS = "A-Za-z0-9._=+-"
#: The longest name (a shot's, a flow's ``name``), in characters.
MAX_NAME = 200
#: Bidirectional overrides and isolates: they make a name read differently than it is.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def slug(text: str, *, allowed: str = KEY_CHARACTERS, lower: bool = False,
         max_length: int = 120, collapse: bool = True) -> str:
    """``text`` as a safe ASCII identifier: accents dropped (``café`` -> ``cafe``), each run
    of characters outside ``allowed`` (a regex character class's contents) one ``-`` (each
    such character one ``-`` when not ``collapse``), no leading or trailing ``.`` or ``-``,
    at most ``max_length`` characters.

    Where letters with no ASCII form were dropped (``東京``), 8 hex digits of the text's
    sha256 are appended, so two such names stay two slugs. Empty only for an empty text
    (or one of separators only).
    """
    decomposed = unicodedata.normalize("NFKD", text)
    kept = "".join(c for c in decomposed if not unicodedata.combining(c))
    ascii_text = kept.encode("ascii", "ignore").decode()
    if lower:
        ascii_text = ascii_text.lower()
    out = re.sub(f"[^{allowed}]{'+' if collapse else ''}", "-", ascii_text).strip(".-")
    if len(ascii_text) == len(kept):
        return out[:max_length]
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    if not out:
        return f"u{digest}"[:max_length]
    return f"{out[:max_length - 9].rstrip('.-')}-{digest}"


def check_name(value: Any, field: str = "name") -> str | None:
    """A name that is safe wherever it shows (task-run names, logs, the terminal, artifacts
    and their descriptions, storage keys through :func:`slug`), or a typed error.

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
