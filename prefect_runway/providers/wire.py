"""What goes over the wire, described and read: HTTP calls, upload forms, API URLs, and the
values and error texts of the providers' answers."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import html
import io
import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from prefect_runway.errors import InvalidRequest
from prefect_runway.models import sniff_media_type

__all__ = [
    "BASE_URL_ALLOWED", "HttpCall", "PendingUpload", "UploadForm", "api_origin",
    "check_base_url", "decode_data_uri", "error_detail", "image_size", "is_loopback_host",
    "json_or_text", "number", "redact_url", "whole",
]


@dataclass(frozen=True)
class HttpCall:
    """One HTTP request, described but not sent. ``url`` is absolute."""

    method: Literal["GET", "POST", "DELETE"]
    url: str
    json: dict[str, Any] | None = None
    params: dict[str, str] | None = None


@dataclass(frozen=True)
class PendingUpload:
    """A local image that must go through the provider's upload route before the request.

    Attributes:
        field: Where it is in the request: ``image`` or ``reference_images[i].uri``.
        data: The image's bytes.
        media_type: ``image/png``, ``image/jpeg`` or ``image/webp``.
        sha256: sha256 of ``data`` (hex): the image's identity in the fingerprint.
        filename: The name to announce to the upload route.
    """

    field: str
    data: bytes = dataclasses.field(repr=False)
    media_type: str
    sha256: str
    filename: str

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class UploadForm:
    """A provider's answer to "I want to upload": where to POST the file, and the result URI.

    The file goes as ``multipart/form-data`` to ``url`` with every entry of ``fields`` and the
    file itself under ``file_field``, without the API key (the form is presigned).
    """

    url: str
    fields: dict[str, str]
    uri: str
    file_field: str = "file"


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


#: What an API base URL may be (the key is sent there).
BASE_URL_ALLOWED = "https://host[:port][/path] (http only on loopback: 127.0.0.1, ::1, localhost)"


def check_base_url(url: Any, field: str = "base_url") -> str:
    """``url`` if it is an API base URL the key may be sent to: https, or http on loopback.

    Raises:
        InvalidRequest: naming ``field``, for anything else (plain http to another host, a
            URL without a host, a bad port, not a URL at all).
    """
    if not isinstance(url, str) or not url.strip():
        raise InvalidRequest(field, "is not a URL", allowed=BASE_URL_ALLOWED)
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - a bad port raises here
    except ValueError:
        raise InvalidRequest(field, "is not a URL (it cannot be parsed)",
                             allowed=BASE_URL_ALLOWED) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(field, f"{redact_url(url)!r} is not an absolute http(s) URL",
                             allowed=BASE_URL_ALLOWED)
    if scheme == "http" and not is_loopback_host(parts.hostname):
        raise InvalidRequest(
            field, f"{redact_url(url)!r} is plain http to a host that is not this machine: "
            "the API key would cross the network unencrypted", allowed=BASE_URL_ALLOWED,
        )
    return url.strip()


def api_origin(base_url: str) -> str:
    """The origin of an API base URL: scheme, host and port; no path, query or user info."""
    parts = urlsplit(base_url)
    if not parts.scheme or not parts.hostname:
        raise InvalidRequest("base_url", f"{base_url!r} is not an absolute URL",
                             allowed="http(s)://host[:port][/path]")
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def redact_url(url: str) -> str:
    """The URL without its query string and fragment: safe to log (signatures live there)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def decode_data_uri(uri: str, field_name: str) -> tuple[str, bytes]:
    """(media type, bytes) of a base64 ``data:`` URI."""
    m = re.match(r"^data:([\w.+-]+/[\w.+-]+)?(;[^,]*)?,(.*)$", uri, re.S)
    if not m or not (m.group(2) or "").endswith("base64"):
        raise InvalidRequest(field_name, "is not a base64 data URI", allowed="data:image/png;base64,...")
    try:
        data = base64.b64decode(m.group(3), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(field_name, "data URI is not valid base64") from None
    return (m.group(1) or sniff_media_type(data) or "application/octet-stream"), data


def image_size(data: bytes) -> tuple[int, int] | None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Exception:
        return None


def number(value: Any) -> float | None:
    """``value`` as a float if it is a JSON number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def whole(value: Any) -> int | None:
    """``value`` as an int if it is a whole JSON number (not a bool), else None."""
    n = number(value)
    return int(n) if n is not None and n == int(n) else None


def error_detail(body: Any, limit: int = 300) -> str | None:
    """A short, human-readable error text from a provider body (JSON or not)."""
    if body is None:
        return None
    if isinstance(body, dict):
        for key in ("error", "message", "detail", "failure", "msg"):
            v = body.get(key)
            if isinstance(v, dict):
                v = v.get("message") or v.get("name") or json.dumps(v)[:limit]
            if isinstance(v, list):
                v = "; ".join(str(x) for x in v)
            if v:
                return str(v)[:limit]
        return json.dumps(body, sort_keys=True)[:limit]
    text = str(body)
    if "<" in text and ">" in text:  # an HTML error page: keep its words only
        text = re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", " ", text)
        text = html.unescape(re.sub(r"<[^>]+>", " ", text))
    text = " ".join(text.split())
    return text[:limit] or None


def json_or_text(content: bytes) -> Any:
    """Parse a response body as JSON; fall back to its text (HTML pages, plain errors)."""
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return content.decode("utf-8", errors="replace")


def data_uri_length(size: int, media_type: str) -> int:
    """Characters of ``data:<media_type>;base64,<...>`` for ``size`` bytes."""
    return len(f"data:{media_type};base64,") + 4 * ((size + 2) // 3)


def inline_length(value: str, data: bytes, media_type: str) -> int:
    """Characters the bytes take as a data URI: the given URI's own, or the one we would build."""
    return len(value) if value.startswith("data:") else data_uri_length(len(data), media_type)
