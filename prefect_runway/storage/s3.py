"""Outputs in S3 (or any S3-compatible store) through a prefect-aws ``S3Bucket`` block."""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from prefect_runway.errors import InvalidRequest, StorageError
from prefect_runway.models import StoredOutput
from prefect_runway.settings import MAX_PRESIGN_SECONDS, get_settings, link_seconds
from prefect_runway.storage.base import OutputStorage, StreamedPut
from prefect_runway.storage.keys import safe_key
from prefect_runway.storage.s3_stream import StreamedUpload

if TYPE_CHECKING:  # boto3 is imported when S3 is used, not by every flow run
    from boto3.s3.transfer import TransferConfig

#: S3 error codes that mean "nothing is stored there".
S3_ABSENT = frozenset({"NoSuchKey", "404", "NotFound"})
#: S3 error codes that no retry cures: the storage is misconfigured.
_MISCONFIGURED = frozenset({
    "NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
    "AllAccessDisabled", "InvalidBucketName", "403",
})
#: S3 error codes that mean "this store or these credentials take no object tags".
_NO_TAGS = frozenset({"AccessDenied", "NotImplemented", "403", "501"})
#: The tag holding a streamed output's sha256.
SHA256_TAG = "sha256"
_MiB = 1024 * 1024


def default_transfer_config() -> TransferConfig:
    """Multipart above 16 MiB, 8 MiB parts, 4 in flight: at most ~32 MiB buffered."""
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_threshold=16 * _MiB,
        multipart_chunksize=8 * _MiB,
        max_concurrency=4,
        use_threads=True,
    )


class S3Storage(OutputStorage):
    """Verified outputs and their sidecars in an S3 bucket (under the block's folder).

    Args:
        bucket: A prefect-aws ``S3Bucket`` block; its ``bucket_folder`` is the key prefix.
        transfer_config: boto3 ``TransferConfig`` for uploads (default:
            :func:`default_transfer_config`).
        staging_dir: Local directory for partial downloads (default: one per bucket and
            prefix in a folder of the system temp dir that only this user may enter). It
            must have room for the largest output.
        verify_bytes: When checking an output that is already stored, stream and hash its
            bytes instead of trusting the size and sha256 recorded at upload.
        link_seconds: How long the links in artifacts stay valid (presigned ``GET`` URLs;
            anyone holding one may download that output until then): 60 to 604800 s;
            default ``PREFECT_RUNWAY_ARTIFACT_LINK_SECONDS``, else one day.

    Example:
        ```python
        from prefect import flow
        from prefect_aws.s3 import S3Bucket
        from prefect_runway import SegmindCredentials, image_to_video

        @flow
        async def nightly():
            bucket = await S3Bucket.load("BLOCK_NAME")
            return await image_to_video(
                still_prompt="a lighthouse @model", motion_prompt="slow dolly in",
                credentials=await SegmindCredentials.load("BLOCK_NAME"),
                reference_images=[{"uri": "https://example.com/ref.png", "tag": "model"}],
                storage=bucket, key_template="{date}/{name}-{seed}.{ext}", name="lighthouse",
            )
        ```
    """

    def __init__(
        self,
        bucket: Any,
        *,
        transfer_config: TransferConfig | None = None,
        staging_dir: str | os.PathLike[str] | None = None,
        verify_bytes: bool = False,
        link_seconds: int | None = None,
    ) -> None:
        self.link_seconds = artifact_link_seconds(link_seconds)
        self.bucket = bucket
        self.bucket_name: str = bucket.bucket_name
        self.prefix = _clean_prefix(getattr(bucket, "bucket_folder", "") or "")
        self.transfer_config = transfer_config or default_transfer_config()
        self.verify_bytes = verify_bytes
        self._presigner: Any = None
        self._tags_refused = False
        # One staging directory per bucket and prefix, stable across processes, so a partial
        # download left by a killed process is found and resumed by the next one; by default
        # in a folder of the shared temp dir that is this user's alone (see staging_dir).
        private = Path(tempfile.gettempdir()) / f"prefect-runway-staging-{os.geteuid()}"
        self._private_root = None if staging_dir else private
        self._staging = Path(staging_dir) if staging_dir else (
            private / hashlib.sha256(self.uri.encode()).hexdigest()[:16]
        )

    @classmethod
    def from_uri(cls, uri: str, **kwargs: Any) -> S3Storage:
        """An S3Storage for ``s3://bucket/prefix``, configured from the environment.

        The endpoint comes from ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (any
        S3-compatible store; path-style addressing is used with a custom endpoint), the region
        from ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, and the keys from boto3's usual chain
        (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, an instance or
        task role). The block built here holds no secret itself.

        Raises:
            InvalidRequest: when ``uri`` is not ``s3://bucket[/prefix]``.
        """
        from prefect_aws import AwsClientParameters, AwsCredentials
        from prefect_aws.s3 import S3Bucket

        parts = urlsplit(uri)
        if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
            raise InvalidRequest("storage", f"{uri!r} is not an S3 URI", allowed="s3://bucket/prefix")
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        client_parameters = AwsClientParameters(
            endpoint_url=endpoint or None,
            config={"s3": {"addressing_style": "path"}} if endpoint else None,
        )
        credentials = AwsCredentials(
            region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
            aws_client_parameters=client_parameters,
        )
        bucket = S3Bucket(
            bucket_name=parts.netloc, bucket_folder=_clean_prefix(parts.path),
            credentials=credentials,
        )
        return cls(bucket, **kwargs)

    def __repr__(self) -> str:
        return f"S3Storage({self.uri!r})"

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket_name}/{self.prefix}".rstrip("/")

    # ---- keys -----------------------------------------------------------------------------

    def object_key(self, key: str) -> str:
        """The S3 object key of a storage key: the bucket folder, then the (safe) key."""
        safe = safe_key(key)
        return f"{self.prefix}/{safe}" if self.prefix else safe

    def location(self, key: str) -> str:
        return f"s3://{self.bucket_name}/{self.object_key(key)}"

    def staging_dir(self) -> Path:
        """The staging directory, made if needed. The default one is in the system's shared
        temp dir, so its folder must be this user's alone (mode 0700, not a link): another
        user could otherwise plant links there or swap a verified file before its upload.

        Raises:
            StorageError: the default staging folder exists but is not private.
        """
        if self._private_root is not None:
            _private_directory(self._private_root)
        self._staging.mkdir(parents=True, exist_ok=True)
        return self._staging

    def client(self) -> Any:
        """The bucket's boto3 S3 client (cached by prefect-aws per credentials)."""
        return self.bucket.credentials.get_s3_client()

    def typed_errors(self, object_key: str) -> AbstractContextManager[None]:
        """Errors no retry cures on ``object_key`` (no bucket, no access, no credentials)
        raised as :class:`InvalidRequest`, so the download task does not retry them."""
        return _s3_errors(self, object_key)

    def presigning_client(self) -> Any:
        """A client for presigning: the bucket's settings, with SigV4 unless set otherwise.

        boto3 may presign with the legacy SigV2 query format, which AWS no longer accepts
        in newer regions; SigV4 URLs live at most 7 days.
        """
        if self._presigner is None:
            from botocore.config import Config

            credentials = self.bucket.credentials
            params = credentials.aws_client_parameters.get_params_override()
            config = params.pop("config", None) or Config()
            if getattr(config, "signature_version", None) is None:
                config = config.merge(Config(signature_version="s3v4"))
            region = getattr(credentials, "region_name", None)
            if region:
                params["region_name"] = region
            self._presigner = credentials.get_boto3_session().client(
                "s3", config=config, **params
            )
        return self._presigner

    # ---- OutputStorage --------------------------------------------------------------------

    async def put(
        self, path: Path, key: str, media_type: str, sha256: str | None = None
    ) -> str:
        """Upload the file at ``path`` (multipart when large) and delete it; returns the URI.

        The upload runs in a worker thread, reading the file part by part; ``sha256`` (the
        digest computed while downloading) is stored as object metadata.
        """
        object_key = self.object_key(key)
        extra: dict[str, Any] = {"ContentType": media_type}
        if sha256:
            extra["Metadata"] = {"sha256": sha256}
        try:
            await asyncio.to_thread(self._upload, Path(path), object_key, extra)
        finally:
            Path(path).unlink(missing_ok=True)
        return self.location(key)

    def _upload(self, path: Path, object_key: str, extra: dict[str, Any]) -> None:
        with _s3_errors(self, object_key):
            self.client().upload_file(
                Filename=str(path), Bucket=self.bucket_name, Key=object_key,
                ExtraArgs=extra, Config=self.transfer_config,
            )

    def streamed(self, key: str, media_type: str, logger: Any = None) -> StreamedPut | None:
        """A :class:`StreamedUpload` of the output for ``key``: its parts go to S3 while it
        downloads."""
        return StreamedUpload(self, key, media_type, logger)

    def tag_sha256(self, object_key: str, sha256: str, version_id: str | None = None) -> None:
        """Record ``sha256`` as the ``sha256`` tag of the object (of that version, if given):
        where a streamed output keeps it, since S3 takes metadata only when an upload starts.

        Raises:
            Exception: S3 refused (no ``s3:PutObjectTagging``, a store without tags); once
                refused, later calls on this storage do nothing.
        """
        if self._tags_refused:
            return
        extra = {"VersionId": version_id} if version_id else {}
        try:
            self.client().put_object_tagging(
                Bucket=self.bucket_name, Key=object_key,
                Tagging={"TagSet": [{"Key": SHA256_TAG, "Value": sha256}]}, **extra,
            )
        except Exception as exc:
            self._tags_refused = s3_error_code(exc) in _NO_TAGS
            raise

    def _tagged_sha256(self, object_key: str, version_id: str | None) -> str | None:
        """The object's ``sha256`` tag; None when it has none, or its tags cannot be read."""
        extra = {"VersionId": version_id} if version_id else {}
        try:
            tags = self.client().get_object_tagging(
                Bucket=self.bucket_name, Key=object_key, **extra)["TagSet"]
        except Exception:  # no s3:GetObjectTagging, or no tags in this store: hash instead
            return None
        return next((t["Value"] for t in tags if t.get("Key") == SHA256_TAG), None)

    async def read_bytes(self, key: str, max_bytes: int | None = None) -> bytes | None:
        """The bytes at ``key``, or None when absent.

        With ``max_bytes``, at most ``max_bytes + 1`` bytes are read: an answer longer than
        ``max_bytes`` means the object is larger.
        """
        return await asyncio.to_thread(self._read, self.object_key(key), max_bytes)

    def _get(self, object_key: str) -> Any:
        """The object's GetObject answer, or None when it is absent."""
        try:
            return self.client().get_object(Bucket=self.bucket_name, Key=object_key)
        except Exception as exc:
            if s3_error_code(exc) in S3_ABSENT:
                return None
            raise

    def _read(self, object_key: str, max_bytes: int | None = None) -> bytes | None:
        with _s3_errors(self, object_key):
            response = self._get(object_key)
            if response is None:
                return None
            body = response["Body"]
            try:
                return body.read() if max_bytes is None else body.read(max_bytes + 1)
            finally:
                body.close()

    async def write_bytes(self, key: str, data: bytes) -> str:
        object_key = self.object_key(key)
        media_type = mimetypes.guess_type(object_key)[0] or "application/octet-stream"
        await asyncio.to_thread(self._write, object_key, data, media_type)
        return self.location(key)

    def _write(self, object_key: str, data: bytes, media_type: str) -> None:
        with _s3_errors(self, object_key):
            self.client().put_object(
                Bucket=self.bucket_name, Key=object_key, Body=data, ContentType=media_type,
            )

    async def sha256(self, key: str) -> str | None:
        """Stream the object and hash it (1 MiB at a time); None when absent."""
        return await asyncio.to_thread(self._stream_sha256, self.object_key(key))

    def _stream_sha256(self, object_key: str) -> str | None:
        with _s3_errors(self, object_key):
            response = self._get(object_key)
            if response is None:
                return None
            digest = hashlib.sha256()
            body = response["Body"]
            try:
                for chunk in body.iter_chunks(_MiB):
                    digest.update(chunk)
            finally:
                body.close()
            return digest.hexdigest()

    async def head(self, key: str) -> dict[str, Any] | None:
        """The object's size, media type and metadata (``HEAD``); None when absent."""
        return await asyncio.to_thread(self._head, self.object_key(key))

    def _head(self, object_key: str) -> dict[str, Any] | None:
        with _s3_errors(self, object_key):
            try:
                return self.client().head_object(Bucket=self.bucket_name, Key=object_key)
            except Exception as exc:
                if s3_error_code(exc) in S3_ABSENT:
                    return None
                raise

    async def verified(self, key: str) -> StoredOutput | None:
        """The sidecar of an output whose object still matches it, without downloading it.

        Matching means: same size, and the sha256 recorded at upload (its metadata; for an
        output streamed while it downloaded, its ``sha256`` tag) equals the sidecar's. An
        object with neither (written by another tool, or its tags not readable), or
        ``verify_bytes=True``, is streamed and hashed instead.
        """
        stored = await self.read_sidecar(key)
        if stored is None:
            return None
        head = await self.head(key)
        if head is None or head.get("ContentLength") != stored.size:
            return None
        if not self.verify_bytes:
            recorded = (head.get("Metadata") or {}).get("sha256") or await asyncio.to_thread(
                self._tagged_sha256, self.object_key(key), head.get("VersionId"))
            if recorded:
                return stored if recorded == stored.sha256 else None
        return stored if await self.sha256(key) == stored.sha256 else None

    async def link(self, key: str) -> str | None:
        """A presigned ``GET`` URL for ``key``, valid :attr:`link_seconds`."""
        return await self.presigned_url(key, self.link_seconds)

    async def presigned_url(self, key: str, expires_seconds: int = 900) -> str | None:
        """A presigned ``GET`` URL for ``key``, valid for ``expires_seconds`` (max 7 days)."""
        expires = max(1, min(int(expires_seconds), MAX_PRESIGN_SECONDS))
        object_key = self.object_key(key)
        return await asyncio.to_thread(
            self.presigning_client().generate_presigned_url,
            "get_object", Params={"Bucket": self.bucket_name, "Key": object_key},
            ExpiresIn=expires,
        )


def artifact_link_seconds(value: int | None = None) -> int:
    """The lifetime of artifact links: ``value``, else the setting
    ``PREFECT_RUNWAY_ARTIFACT_LINK_SECONDS`` (one day unless set).

    Raises:
        InvalidRequest: not a whole number of seconds from 60 to 604800 (SigV4's limit).
    """
    return get_settings().artifact_link_seconds if value is None else link_seconds(
        value, "link_seconds")


def _private_directory(path: Path) -> None:
    """Make ``path`` (mode 0700) or check that it is a directory of this user's that no one
    else may enter; StorageError if not."""
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(path)
    except OSError as exc:
        raise StorageError(f"cannot make the staging folder {path} ({exc.strerror})",
                           location=str(path)) from None
    if (not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid()
            or info.st_mode & 0o077):
        raise StorageError(
            f"the staging folder {path} is not private (a link, another user's, or open to "
            "others): remove it, or pass S3Storage(staging_dir=...)", location=str(path),
        )


def _clean_prefix(prefix: str) -> str:
    prefix = prefix.strip("/")
    return safe_key(prefix) if prefix else ""


def s3_error_code(exc: BaseException) -> str | None:
    """The error code of a boto3 ``ClientError`` (``NoSuchKey``, ``403``), or None."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str((response.get("Error") or {}).get("Code") or "") or None
    return None


@contextmanager
def _s3_errors(storage: S3Storage, object_key: str) -> Iterator[None]:
    """Turn errors no retry cures (no bucket, no access, no credentials) into
    :class:`InvalidRequest` on ``storage``, so the download task does not retry them."""
    from botocore.exceptions import NoCredentialsError, PartialCredentialsError

    where = f"s3://{storage.bucket_name}/{object_key}"
    try:
        yield
    except (NoCredentialsError, PartialCredentialsError):
        raise InvalidRequest(
            "storage", f"no AWS credentials to reach {where}",
            allowed="AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, or an AwsCredentials block",
        ) from None
    except Exception as exc:
        # boto3's S3UploadFailedError wraps the ClientError that says why (or only names it).
        inner = exc.__cause__ or exc.__context__
        code = s3_error_code(exc) or (s3_error_code(inner) if inner is not None else None)
        if code is None:
            code = next((c for c in _MISCONFIGURED if f"({c})" in str(exc)), None)
        if code in _MISCONFIGURED:
            raise InvalidRequest(
                "storage", f"S3 refused {where} ({code})",
                allowed="an existing bucket these credentials may read and write",
            ) from None
        raise
