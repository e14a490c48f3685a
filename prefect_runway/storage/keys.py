"""Every rule for storage keys: the templates, rendering, safety, and derived names.

Keys come from a template such as ``{flow_run}/{name}-{seed}.{ext}``; every value is made
safe (:func:`slug`: ``café`` is ``cafe``), and a key that would climb out of the storage root (``..``, absolute paths) is refused.
Beside an output's key live its sidecar (``<key>.json``), its preview
(``<key>.preview.gif``) and, while it downloads, its partial file (``.part-<hash>``).
"""

from __future__ import annotations

import hashlib
import re
import string
import unicodedata
from pathlib import PurePosixPath
from typing import Any, Literal

from prefect_runway.errors import InvalidRequest
from prefect_runway.providers.wire import redact_url

#: Storage keys of single generations and chains.
DEFAULT_KEY_TEMPLATE = "{kind}-{fingerprint}.{ext}"
#: Storage keys of a storyboard's outputs (``{name}`` is the shot's name).
STORYBOARD_KEY_TEMPLATE = "{name}-{kind}-{fingerprint}.{ext}"
#: The characters a storage key's component keeps (the rest become ``-``).
KEY_CHARACTERS = "A-Za-z0-9._=+-"
KEY_FIELDS = (
    "flow_run", "name", "seed", "kind", "model", "provider", "job_id", "fingerprint", "ext",
    "index", "date",
)
#: File extension per media type (anything else: ``bin``).
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "video/mp4": "mp4"}
_UNSAFE = re.compile(f"[^{KEY_CHARACTERS}]+")
MAX_COMPONENT = 120


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


def render_key(template: str, **values: Any) -> str:
    """Fill a key template with safe values and check the result stays inside the root.

    Only plain ``{field}`` placeholders from :data:`KEY_FIELDS` are allowed (optionally with a
    format spec such as ``{fingerprint:.12}``); no attribute or index access.

    Raises:
        InvalidRequest: on an unknown placeholder, or a key that is absolute or climbs out.
    """
    out: list[str] = []
    for literal, name, spec, conversion in string.Formatter().parse(template):
        out.append(literal)
        if name is None:
            continue
        if name not in KEY_FIELDS or conversion:
            raise InvalidRequest(
                "key_template", f"placeholder {{{name}}} is not allowed", allowed=KEY_FIELDS
            )
        value = values.get(name)
        if "{" in (spec or ""):
            raise InvalidRequest("key_template", f"nested placeholder in {{{name}:{spec}}}")
        try:
            text = format(value if value is not None else "none", spec or "")
        except (ValueError, TypeError):
            try:  # e.g. {seed:06d} when there is no seed: fall back to the plain value
                text = format(str(value if value is not None else "none"))
            except ValueError:
                raise InvalidRequest("key_template", f"bad format spec {{{name}:{spec}}}") from None
        out.append(slug(text, max_length=MAX_COMPONENT) or "none")
    return safe_key("".join(out))


def safe_key(key: str) -> str:
    """Normalise a relative storage key; refuse absolute keys and ``..`` segments."""
    if "\\" in key or "\x00" in key:
        raise InvalidRequest("key_template", f"key {key!r} has a backslash or NUL")
    path = PurePosixPath(key)
    if path.is_absolute() or re.match(r"^[A-Za-z]:", key):
        raise InvalidRequest("key_template", f"key {key!r} is absolute", allowed="relative keys")
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise InvalidRequest("key_template", f"key {key!r} leaves the storage root")
    if any(len(p) > 255 for p in parts):
        raise InvalidRequest("key_template", "a key segment is longer than 255 characters")
    return "/".join(_UNSAFE.sub("-", p) for p in parts)


def sidecar_key(key: str) -> str:
    return f"{key}.json"


def preview_key(video_key: str, fmt: Literal["gif", "png"] = "gif") -> str:
    """Where a video's preview is stored: beside it, ``<video key>.preview.<fmt>``."""
    return f"{video_key}.preview.{fmt}"


def partial_name(key: str, url: str) -> str:
    """The partial file of one output: stable across processes for the same key and output
    (a re-signed URL is the same output), different for a resubmitted job's new output."""
    ident = hashlib.sha256(f"{key}|{redact_url(url)}".encode()).hexdigest()[:24]
    return f".part-{ident}"


def output_key(
    template: str | None,
    *,
    kind: str,
    model: str,
    provider: str,
    fingerprint: str,
    seed: int | None,
    name: str | None,
    media_type: str,
    index: int = 0,
    count: int = 1,
    job_id: str | None = None,
    flow_run: str | None = None,
    date: str | None = None,
) -> str:
    """The storage key of one output, from the key template."""
    template = template or DEFAULT_KEY_TEMPLATE
    ext = EXTENSIONS.get(media_type, "bin")
    if count > 1 and "{index" not in template:
        stem, dot, suffix = template.rpartition(".")
        template = f"{stem}-{{index}}.{suffix}" if dot else f"{template}-{{index}}"
    return render_key(
        template, kind=kind, model=model, provider=provider, fingerprint=fingerprint[:16],
        seed=seed, name=name or kind, ext=ext, index=index, job_id=job_id, flow_run=flow_run,
        date=date,
    )
