"""Reading the images a request points at, and the URL rules shared by the protocols."""

from __future__ import annotations

import base64
import binascii
import io
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes, urlsplit

import httpx
from PIL import Image, UnidentifiedImageError

#: Image formats the providers accept, as Pillow names them.
IMAGE_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}

_DATA_URI = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^;,]*)*),(?P<data>.*)$",
                       re.DOTALL)
_MEDIA_PATH = re.compile(r"^/_emulator/media/(?P<id>[A-Za-z0-9_-]+)$")


class InputError(Exception):
    """An input image could not be read; the message is what the job reports."""


@dataclass(frozen=True)
class LoadedImage:
    """A decoded input image and what it was made from."""

    image: Image.Image
    data: bytes
    format: str

    @property
    def aspect(self) -> float:
        width, height = self.image.size
        return width / height


def is_loopback_host(host: str | None) -> bool:
    """True for localhost and loopback IP literals."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_data_uri(value: str) -> bool:
    return value[:5].lower() == "data:"


def url_problem(value: str, *, allow_data: bool) -> str | None:
    """Why `value` is not an acceptable image reference, or None if it is.

    Accepts `https://` URLs, `http://` URLs on loopback hosts (development exception) and,
    when `allow_data`, `data:` URIs.
    """
    if is_data_uri(value):
        return None if allow_data else "must be an HTTPS URL, not a data URI"
    try:
        parts = urlsplit(value)
    except ValueError:
        return "is not a valid URL"
    if not parts.netloc or parts.scheme not in ("http", "https"):
        return "must be an HTTPS URL" + (" or a data URI" if allow_data else "")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        return "must use HTTPS (plain HTTP is accepted for loopback hosts only)"
    return None


def decode_data_uri(value: str) -> tuple[str | None, bytes]:
    """Split a data URI into (media type, bytes); raises `InputError` if malformed."""
    match = _DATA_URI.match(value)
    if not match:
        raise InputError("malformed data URI")
    media_type = match.group("type")
    params = match.group("params") or ""
    payload = match.group("data")
    if ";base64" in params.lower():
        try:
            return media_type, base64.b64decode(payload, validate=False)
        except (binascii.Error, ValueError) as exc:
            raise InputError("data URI is not valid base64") from exc
    return media_type, unquote_to_bytes(payload)


def decode_image(data: bytes, *, max_bytes: int | None = None) -> LoadedImage:
    """Decode image bytes; only JPEG, PNG and WebP are accepted."""
    if max_bytes is not None and len(data) > max_bytes:
        raise InputError(
            f"image is {len(data)} bytes, over the limit of {max_bytes} bytes"
        )
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise InputError("input is not a readable image") from exc
    if image.format not in IMAGE_FORMATS:
        raise InputError(f"image format {image.format} is not supported (JPEG, PNG or WebP)")
    return LoadedImage(image=image, data=data, format=image.format)


class ImageLoader:
    """Fetches input images for jobs (runs on the media worker threads)."""

    def __init__(self, read_own_media, timeout: float = 10.0, read_upload=None) -> None:
        """`read_own_media(media_id, query) -> bytes | None` reads the emulator's own store;
        it raises `InputError` for an expired or badly signed URL and returns None for an id
        it does not hold. `read_upload(uri) -> bytes` reads a `runway://` upload."""
        self._read_own_media = read_own_media
        self._read_upload = read_upload
        self.timeout = timeout

    def load(self, reference: str, *, max_bytes: int | None = None) -> LoadedImage:
        """Read and decode the image at `reference` (a URL or a data URI)."""
        if is_data_uri(reference):
            _, data = decode_data_uri(reference)
            return decode_image(data, max_bytes=max_bytes)
        if reference.startswith("runway://") and self._read_upload is not None:
            # uploads have their own (200 MB) limit, checked when uploaded
            return decode_image(self._read_upload(reference))
        return decode_image(self.fetch(reference), max_bytes=max_bytes)

    def fetch(self, url: str) -> bytes:
        """The bytes at a loopback URL."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not is_loopback_host(parts.hostname):
            raise InputError(f"emulator cannot fetch non-loopback image URL: {url}")
        match = _MEDIA_PATH.match(parts.path)
        if match:
            data = self._read_own_media(match.group("id"), parts.query)
            if data is not None:
                return data
        try:
            with httpx.Client(timeout=self.timeout, trust_env=False, follow_redirects=True) as c:
                response = c.get(url)
        except httpx.HTTPError as exc:
            raise InputError(f"could not fetch image URL {url}: {exc!r}") from exc
        if response.status_code != 200:
            raise InputError(f"could not fetch image URL {url}: HTTP {response.status_code}")
        return response.content
