"""What needs a credentials block to work on a request: loading the block by its saved name,
preparing the request for its provider, uploading its local images."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from prefect.blocks.core import Block

from prefect_runway.blocks.credentials import (
    AimlapiCredentials,
    ProviderCredentials,
    RunwayCredentials,
    SegmindCredentials,
)
from prefect_runway.errors import InvalidRequest
from prefect_runway.models import (
    PLACEHOLDER_IMAGE,
    FinishRequest,
    ImageRequest,
    Request,
    VideoRequest,
)
from prefect_runway.providers.base import PreparedRequest

__all__ = [
    "CREDENTIALS_ALLOWED", "credentials_mapping_refused", "load_credentials",
    "message_of_exception", "prepare", "reseeder", "upload_images",
]


def prepare(request: Request | FinishRequest, credentials: ProviderCredentials) -> PreparedRequest:
    """Check ``request`` against the credentials' provider and build what would be sent.

    The one place a request is prepared; the result is what the submit task takes.

    Raises:
        InvalidRequest: naming the field and the allowed values; nothing was sent.
    """
    return credentials.provider().prepare(request, credentials.resolved_base_url())


def reseeder(request: Request, credentials: ProviderCredentials) -> Callable[[int], PreparedRequest]:
    """``seed -> PreparedRequest``: ``request`` with another seed, prepared."""
    return lambda seed: prepare(request.model_copy(update={"seed": seed}), credentials)


async def upload_images(
    request: Request, credentials: ProviderCredentials, *, upload: bool = False
) -> Request:
    """``request`` with its local images uploaded where the provider needs (or is asked) to.

    A local image (a file, bytes as a data URI, a stored still) too long for a data URI
    (``UploadRequired``), or any local image when ``upload`` is True, goes to the provider as
    an upload (Runway: an ephemeral ``runway://`` upload, valid 24 h) and the request names
    its URI. The rest of the request is checked before anything is uploaded; the fingerprint
    knows the image by its sha256, never by the URI, so the same image uploaded again makes
    the same request. Unchanged where nothing needs uploading (or the provider has no
    upload route).

    Args:
        request: The request.
        credentials: The provider's credentials block.
        upload: Upload every local image, not only those too long to send inline.

    Raises:
        InvalidRequest: naming the field and the allowed values; nothing was sent.
        ProviderError: the upload was refused.
    """
    # The images ``prepare`` would refuse with UploadRequired (or every local one, asked to).
    pending = credentials.provider().uploads_needed(request, force=upload)
    if not pending:
        return request
    # Everything but the images to upload is checked first: an invalid request costs nothing.
    stand_in = {p.field: PLACEHOLDER_IMAGE for p in pending}
    prepare(_with_images(request, stand_in, {p.field: p.sha256 for p in pending}), credentials)
    async with credentials.get_client() as client:
        return await client.upload_images(request, force=upload)


def _with_images(request: Request, images: dict[str, str], digests: dict[str, str]) -> Request:
    """``request`` with the images at ``images``' fields replaced (and their sha256 set)."""
    if isinstance(request, VideoRequest):
        if "image" not in images:
            return request
        return request.model_copy(update={"image": images["image"], "image_sha256": digests["image"]})
    assert isinstance(request, ImageRequest)
    refs = []
    for i, ref in enumerate(request.reference_images):
        key = f"reference_images[{i}].uri"
        if key in images:
            ref = ref.model_copy(update={"uri": images[key], "sha256": digests[key]})
        refs.append(ref)
    return request.model_copy(update={"reference_images": refs})


#: What a credentials parameter takes, when it is given a mapping instead.
CREDENTIALS_ALLOWED = (
    "a saved credentials block's name, 'block-type/name' (save one with `prefect-runway blocks "
    "create` or SegmindCredentials(api_key=...).save('nightly')), or the block itself "
    "(await SegmindCredentials.load('nightly'))"
)


def credentials_mapping_refused(field: str) -> InvalidRequest:
    """The error for credentials given as a mapping (a dict of the block's fields): a flow
    run's parameters would hold its API key in clear text."""
    return InvalidRequest(
        field, "credentials given as a mapping are refused: the API key in it would be stored "
        "in clear text with the flow run's parameters", allowed=CREDENTIALS_ALLOWED,
    )


async def load_credentials(
    credentials: ProviderCredentials | str | None, field: str = "credentials"
) -> ProviderCredentials:
    """A credentials block, or the name of a saved one (``"segmind-credentials/nightly"``).

    Raises:
        InvalidRequest: naming ``field``, for anything else: no value, a mapping (its key
            would be stored in clear: :func:`credentials_mapping_refused`), a name that is not
            a saved block's, a saved block that is not a provider's credentials.
    """
    allowed = "SegmindCredentials, AimlapiCredentials, RunwayCredentials, or 'block-type/name'"
    if isinstance(credentials, ProviderCredentials):
        return credentials
    if isinstance(credentials, Mapping):
        raise credentials_mapping_refused(field)
    if isinstance(credentials, str) and "/" in credentials:
        try:
            loader, name = _loader(credentials)
            block = await loader.aload(name)
        except InvalidRequest:
            raise
        except (ValueError, KeyError) as e:  # Prefect: ValueError for a missing document
            raise InvalidRequest(
                field, f"{credentials!r} is not a saved block ({message_of_exception(e)})",
                allowed="a saved credentials block, 'block-type/name'",
            ) from None
        if isinstance(block, ProviderCredentials):
            return block
        raise InvalidRequest(
            field, f"{credentials!r} is a {type(block).__name__}, not provider credentials",
            allowed=allowed,
        )
    shown = repr(credentials) if isinstance(credentials, str) else type(credentials).__name__
    raise InvalidRequest(field, f"{shown} is not a provider credentials block", allowed=allowed)


def _loader(slug: str) -> tuple[type[Block], str]:
    """The class that loads the saved block ``slug`` (``"block-type/name"``), and the name to
    give it: ours by their type's slug; any other through Prefect's registry, which first
    imports every installed Prefect collection (prefect-aws and boto3 among them: half a
    second of a flow run)."""
    block_type, name = slug.split("/", 1)
    for cls in (SegmindCredentials, AimlapiCredentials, RunwayCredentials):
        if cls.get_block_type_slug() == block_type:
            return cls, name
    return Block, slug


def message_of_exception(error: BaseException) -> str:
    """An exception's first line, without a trailing period."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text.rstrip(".")
