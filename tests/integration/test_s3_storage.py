"""S3Storage over a prefect-aws S3Bucket (moto on 127.0.0.1), and key-template injection at
the storage and download-task level, for S3 and local storage alike."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from prefect import flow
from prefect_aws.s3 import S3Bucket
from s3_helpers import (  # noqa: F401
    AWS_SECRET,
    aws_credentials,
    emulator_credentials,
    get_object,
    list_keys,
    moto_url,
    new_bucket,
)

from prefect_runway.errors import InvalidRequest
from prefect_runway.models import ImageRequest, StoredOutput
from prefect_runway.storage import LocalStorage, resolve_storage
from prefect_runway.storage.s3 import S3Storage
from prefect_runway.tasks.collect import download_generation
from prefect_runway.testing.fixtures import EMULATOR_KEY

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64


@pytest.fixture()
def bucket(moto_url, request):  # noqa: F811
    name = "st-" + hashlib.sha256(request.node.name.encode()).hexdigest()[:12]
    return new_bucket(aws_credentials(moto_url), name, "team/outputs")


def _staged(storage, data: bytes = PNG) -> Path:
    path = storage.staging_dir() / f".part-{hashlib.sha256(data).hexdigest()[:8]}"
    path.write_bytes(data)
    return path


def _stored(storage, key: str, data: bytes = PNG) -> StoredOutput:
    return StoredOutput(
        location=storage.location(key), key=key, size=len(data),
        sha256=hashlib.sha256(data).hexdigest(), media_type="image/png", provider="segmind",
        model="gen4_image", kind="image", job_id="job-1", fingerprint="f" * 64,
        source_url="https://example.com/out.png",
    )


# ---- S3Storage -----------------------------------------------------------------------------


async def test_put_streams_a_file_in_and_removes_it(bucket, tmp_path):
    storage = S3Storage(bucket, staging_dir=tmp_path)
    path = _staged(storage)
    sha = hashlib.sha256(PNG).hexdigest()
    location = await storage.put(path, "day/one.png", "image/png", sha256=sha)
    assert location == f"s3://{bucket.bucket_name}/team/outputs/day/one.png"
    assert not path.exists()
    assert get_object(bucket, "team/outputs/day/one.png") == PNG
    head = await storage.head("day/one.png")
    assert head["ContentType"] == "image/png" and head["Metadata"] == {"sha256": sha}
    assert await storage.read_bytes("day/one.png") == PNG
    assert await storage.sha256("day/one.png") == sha
    assert await storage.read_bytes("day/missing.png") is None
    assert await storage.sha256("day/missing.png") is None


async def test_verified_uses_size_and_recorded_digest_and_catches_tampering(bucket, tmp_path):
    storage = S3Storage(bucket, staging_dir=tmp_path)
    stored = _stored(storage, "a.png")
    await storage.put(_staged(storage), "a.png", "image/png", sha256=stored.sha256)
    assert await storage.verified("a.png") is None  # no sidecar yet
    await storage.write_sidecar(stored)
    assert (await storage.verified("a.png")).sha256 == stored.sha256
    # Same size, other bytes, written by another tool (no recorded digest): streamed and caught.
    other = bytes(reversed(PNG))
    bucket.credentials.get_s3_client().put_object(
        Bucket=bucket.bucket_name, Key="team/outputs/a.png", Body=other)
    assert await storage.verified("a.png") is None
    # Overwritten with its digest recorded, but not the sidecar's: caught without a download.
    await storage.put(_staged(storage, other), "a.png", "image/png",
                      sha256=hashlib.sha256(other).hexdigest())
    assert await storage.verified("a.png") is None
    # verify_bytes=True never trusts metadata.
    await storage.put(_staged(storage), "a.png", "image/png", sha256=hashlib.sha256(other).hexdigest())
    assert await storage.verified("a.png") is None
    assert (await S3Storage(bucket, verify_bytes=True).verified("a.png")).sha256 == stored.sha256


async def test_presigned_url_is_sigv4_short_lived_and_fetchable(bucket, tmp_path):
    import httpx

    storage = S3Storage(bucket, staging_dir=tmp_path)
    await storage.put(_staged(storage), "p.png", "image/png")
    url = await storage.presigned_url("p.png")
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url and "X-Amz-Expires=900" in url
    assert AWS_SECRET not in url
    assert "X-Amz-Expires=604800" in await storage.presigned_url("p.png", 10**9)  # capped: 7 days
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.get(url)
    assert response.status_code == 200 and response.content == PNG


async def test_a_missing_bucket_is_a_typed_error_that_is_not_retried(moto_url, tmp_path):  # noqa: F811
    storage = S3Storage(S3Bucket(bucket_name="no-such-bucket", credentials=aws_credentials(moto_url)),
                        staging_dir=tmp_path)
    path = _staged(storage)
    with pytest.raises(InvalidRequest) as info:
        await storage.put(path, "x.png", "image/png")
    assert info.value.field == "storage" and "NoSuchBucket" in str(info.value)
    assert not path.exists()
    with pytest.raises(InvalidRequest):
        await storage.write_bytes("x.json", b"{}")


def test_from_uri_reads_the_endpoint_from_the_environment(moto_url, monkeypatch):  # noqa: F811
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    storage = resolve_storage("s3://my-bucket/runs//nightly/")
    assert isinstance(storage, S3Storage)
    assert storage.location("a/b.png") == "s3://my-bucket/runs/nightly/a/b.png"
    assert repr(storage) == "S3Storage('s3://my-bucket/runs/nightly')"
    credentials = storage.bucket.credentials
    assert credentials.aws_client_parameters.endpoint_url == moto_url
    assert credentials.region_name == "eu-west-1"
    assert credentials.aws_secret_access_key is None  # keys come from boto3's chain, not the block
    assert S3Storage.from_uri("s3://b").location("k.png") == "s3://b/k.png"


@pytest.mark.parametrize("uri", ["s3://", "s3:///prefix", "s3://b/../up", "s3://b/p?x=1", "gs://b/p"])
def test_from_uri_rejects_what_is_not_a_bucket_and_prefix(uri):
    with pytest.raises(InvalidRequest) as info:
        S3Storage.from_uri(uri)
    assert info.value.field in ("storage", "key_template")


def test_resolve_storage_wraps_an_s3_bucket_block(bucket):
    storage = resolve_storage(bucket)
    assert isinstance(storage, S3Storage)
    assert storage.object_key("x/y.png") == "team/outputs/x/y.png"


# ---- key-template injection at the task level -------------------------------------------------


@flow(name="store-one-output")
async def store(result, credentials, storage, template, name) -> list[StoredOutput]:
    return await download_generation(result, credentials, storage, template, name)


@pytest.fixture(scope="module")
async def image_result(runway_emulator):
    credentials = emulator_credentials(runway_emulator.url)
    request = ImageRequest(prompt="injection target @hero", seed=9,
                           reference_images=[{"uri": "https://example.com/r.png", "tag": "hero"}])
    async with credentials.get_client() as client:
        return await client.wait(await client.submit(request))


HOSTILE_TEMPLATES = [
    "../{name}.{ext}",
    "../../etc/{name}.{ext}",
    "/etc/{name}.{ext}",
    "{name}/../../{seed}.{ext}",
    "C:/windows/{name}.{ext}",
    "a\\..\\b/{name}.{ext}",
    "{name.__class__}.{ext}",
    "{fingerprint[0]}.{ext}",
    "{0}.{ext}",
    "{name!r}.{ext}",
    "{secret}.{ext}",
    "..",
]

HOSTILE_NAMES = [
    "../../etc/passwd",
    "/etc/passwd",
    "..",
    "a/../../b",
    "x\x00y",
    "名前 with spaces; rm -rf ~",
    "${HOME}%2e%2e%2f",
    "C:\\Windows\\system32",
]


@pytest.mark.parametrize("template", HOSTILE_TEMPLATES)
async def test_hostile_templates_are_refused_before_anything_is_stored(
    template, image_result, segmind_credentials, bucket, tmp_path
):
    for storage in (S3Storage(bucket, staging_dir=tmp_path / "s"), LocalStorage(tmp_path / "local")):
        with pytest.raises(InvalidRequest) as info:
            await store(image_result, segmind_credentials, storage, template, "n")
        assert info.value.field == "key_template"
    assert list_keys(bucket) == []
    assert not (tmp_path / "local").exists() or not any((tmp_path / "local").rglob("*.png"))


@pytest.mark.parametrize("name", HOSTILE_NAMES)
async def test_hostile_names_are_made_safe_inside_the_root(
    name, image_result, segmind_credentials, bucket, tmp_path
):
    template = "{flow_run}/{name}/{name}-{seed}.{ext}"
    s3 = S3Storage(bucket, staging_dir=tmp_path / "s")
    local = LocalStorage(tmp_path / "local")
    for storage in (s3, local):
        [stored] = await store(image_result, segmind_credentials, storage, template, name)
        parts = stored.key.split("/")
        assert len(parts) == 3 and ".." not in parts and "" not in parts
        assert all(p and p.isascii() and "\\" not in p and "\x00" not in p for p in parts)
    keys = list_keys(bucket)
    assert keys and all(k.startswith("team/outputs/") and ".." not in k.split("/") for k in keys)
    assert all(path.resolve().is_relative_to(local.root) for path in local.root.rglob("*"))
    assert len(list(local.root.rglob("*.png"))) == 1


async def test_sidecars_hold_no_secret_in_s3_or_on_disk(image_result, segmind_credentials, bucket, tmp_path):
    local = LocalStorage(tmp_path / "local")
    for storage in (S3Storage(bucket, staging_dir=tmp_path / "s"), local):
        [stored] = await store(image_result, segmind_credentials, storage, "{name}.{ext}", "sidecar")
        raw = await storage.read_bytes("sidecar.png.json")
        sidecar = StoredOutput.model_validate_json(raw)
        assert sidecar.sha256 == stored.sha256 and sidecar.size == stored.size
        assert sidecar.request and sidecar.job_id == image_result.generation.job_id
        for secret in (EMULATOR_KEY, AWS_SECRET):
            assert secret.encode() not in raw


async def test_artifact_links_live_a_day_unless_told_otherwise(bucket, monkeypatch):
    """The links a person opens from an artifact: one day by default, then the
    environment's PREFECT_RUNWAY_ARTIFACT_LINK_SECONDS, then the storage's own setting."""
    from prefect_runway.settings import ARTIFACT_LINK_ENV

    monkeypatch.delenv(ARTIFACT_LINK_ENV, raising=False)
    assert "X-Amz-Expires=86400&" in await S3Storage(bucket).link("p.png")
    monkeypatch.setenv(ARTIFACT_LINK_ENV, "7200")
    assert "X-Amz-Expires=7200&" in await S3Storage(bucket).link("p.png")
    assert "X-Amz-Expires=600&" in await S3Storage(bucket, link_seconds=600).link("p.png")
    for bad in ("a week", "0", str(8 * 86400)):
        monkeypatch.setenv(ARTIFACT_LINK_ENV, bad)
        with pytest.raises(InvalidRequest) as info:
            S3Storage(bucket)
        assert info.value.field == ARTIFACT_LINK_ENV
    with pytest.raises(InvalidRequest) as info:
        S3Storage(bucket, link_seconds=10)
    assert info.value.field == "link_seconds"
