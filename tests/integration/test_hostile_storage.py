"""Storage that someone else can write to: what they plant there is data, never a way in.

Links planted in an output folder are not followed; a shared staging folder that is not
this user's is refused; a lock planted to block a request holds it for the hold time only;
a pickle planted as a cache record (in a shared S3 results prefix) is never loaded, and
never makes a job be paid twice.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest
from prefect import flow
from s3_helpers import moto_url, serve_directory  # noqa: F401

from prefect_runway.emulator import media
from prefect_runway.errors import StorageError
from prefect_runway.models import Generation, GenerationResult, JobState, StoredOutput
from prefect_runway.storage import output_key, partial_name
from prefect_runway.tasks.collect import download_generation

STILL = media.make_still("planted links", 4, 640, 360)


@pytest.fixture(scope="module")
def served_still(tmp_path_factory):
    directory = tmp_path_factory.mktemp("served")
    (directory / "still.png").write_bytes(STILL)
    with serve_directory(directory) as url:
        yield f"{url}/still.png"


def _result(url: str) -> GenerationResult:
    now = datetime.now(timezone.utc)
    generation = Generation(
        provider="segmind", model="gen4_image", kind="image", job_id="planted-1",
        fingerprint="a" * 64, base_url="http://127.0.0.1:9", submitted_at=now,
        request={"prompt": "planted links"},
    )
    return GenerationResult(generation=generation, state=JobState.SUCCEEDED, outputs=[url],
                            completed_at=now)


@flow(name="store-with-planted-links")
async def store(result, credentials, storage) -> list[StoredOutput]:
    return await download_generation(result, credentials, storage, "stills/{name}.{ext}", "planted")


def _partial(result: GenerationResult, root: Path) -> Path:
    g = result.generation
    key = output_key("stills/{name}.{ext}", kind=g.kind, model=g.model, provider=g.provider,
                     fingerprint=g.fingerprint, seed=None, name="planted", media_type="image/png")
    return root / partial_name(key, result.outputs[0])


async def test_a_link_planted_at_the_partial_file_is_not_followed(
    served_still, segmind_credentials, tmp_path
):
    """Someone who can write the output folder plants a link where the partial download
    will be: the file it points to is left as it was, and the output lands whole."""
    victim = tmp_path / "elsewhere" / "precious.txt"
    victim.parent.mkdir()
    victim.write_bytes(b"not yours to overwrite\n")
    root = tmp_path / "out"
    root.mkdir()
    result = _result(served_still)
    _partial(result, root).symlink_to(victim)

    stored = (await store(result, segmind_credentials, str(root)))[0]

    assert victim.read_bytes() == b"not yours to overwrite\n"
    assert stored.sha256 == hashlib.sha256(STILL).hexdigest() and stored.size == len(STILL)
    assert Path(stored.location).read_bytes() == STILL
    assert not Path(stored.location).is_symlink()
    assert not list(root.rglob(".part-*"))


async def test_a_hard_link_planted_at_the_partial_file_is_not_written_through(
    served_still, segmind_credentials, tmp_path
):
    victim = tmp_path / "precious.bin"
    victim.write_bytes(b"x" * 100)
    root = tmp_path / "out"
    root.mkdir()
    result = _result(served_still)
    os.link(victim, _partial(result, root))

    stored = (await store(result, segmind_credentials, str(root)))[0]

    assert victim.read_bytes() == b"x" * 100
    assert Path(stored.location).read_bytes() == STILL


def test_a_shared_staging_folder_that_is_not_private_is_refused(tmp_path, monkeypatch):
    """S3 outputs stage in the system's temp dir: its folder must be this user's alone."""
    from prefect_aws.s3 import S3Bucket

    from prefect_runway.storage.s3 import S3Storage

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    storage = S3Storage(S3Bucket(bucket_name="b", bucket_folder="p"))
    shared = tmp_path / f"prefect-runway-staging-{os.geteuid()}"
    assert storage.staging_dir().parent == shared
    assert shared.stat().st_mode & 0o777 == 0o700
    shared.chmod(0o777)  # as if another user had made it for everyone
    with pytest.raises(StorageError, match="not private"):
        storage.staging_dir()
    shared.chmod(0o700)
    shared.rename(tmp_path / "theirs")
    shared.symlink_to(tmp_path / "theirs")
    with pytest.raises(StorageError, match="not private"):
        S3Storage(S3Bucket(bucket_name="b", bucket_folder="p")).staging_dir()


# ---- a lock planted to block a request forever --------------------------------------------


@pytest.mark.timeout(120)
async def test_a_lock_with_a_far_future_expiry_delays_a_submit_by_the_hold_time_only(
    runway_emulator, segmind_credentials, tmp_path, monkeypatch
):
    """Someone writes the lock of a request with an expiry in year 2999: the submit waits
    the lock's hold time (here 2 s), then submits, once."""
    import asyncio

    from prefect_runway import ImageRequest, generate_image
    from prefect_runway.blocks.requests import prepare
    from prefect_runway.settings import LOCK_DIR_ENV, LOCK_HOLD_ENV
    from prefect_runway.tasks.generation import submission_cache_key

    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path / "locks"))
    monkeypatch.setenv(LOCK_HOLD_ENV, "2")
    ref = [{"uri": "https://example.com/ref.png", "tag": "hero"}]
    prompt = f"a blocked request @hero {os.getpid()} {tmp_path.name}"
    prepared = prepare(ImageRequest(prompt=prompt, reference_images=ref, seed=3),
                       segmind_credentials)
    lock = tmp_path / "locks" / f"{submission_cache_key(segmind_credentials, prepared)}.lock"
    lock.parent.mkdir()
    lock.write_text(json.dumps({"holder": "another-host:1:forever",
                                "expiration": "2999-01-01 00:00:00+00:00"}))

    before = runway_emulator.stats()["segmind"]["total_submissions"]
    still = await asyncio.wait_for(generate_image(
        prompt=prompt, reference_images=ref, seed=3, credentials=segmind_credentials,
        storage=str(tmp_path / "out"), name="blocked",
    ), 90)

    assert still.fingerprint == prepared.fingerprint
    assert runway_emulator.stats()["segmind"]["total_submissions"] - before == 1
    assert not lock.exists()  # taken over after 2 s, then released


# ---- records planted in the result storage ---------------------------------------------------


class _CreatesAFile:
    """Unpickled, it creates a file: what a record must never get to do."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _pickled_record(marker: Path, storage_key: str) -> bytes:
    """A record in Prefect's own layout whose result is a pickle (as Prefect wrote them for
    this task before, and as anyone who can write the result storage can)."""
    import base64
    import pickle

    import prefect

    payload = base64.encodebytes(pickle.dumps(_CreatesAFile(marker))).decode()
    return json.dumps({
        "metadata": {"storage_key": storage_key, "expiration": None,
                     "serializer": {"type": "pickle", "picklelib": "cloudpickle"},
                     "prefect_version": prefect.__version__, "storage_block_id": None},
        "result": payload,
    }).encode()


def _put(bucket, key: str, data: bytes) -> None:
    bucket.credentials.get_s3_client().put_object(Bucket=bucket.bucket_name, Key=key, Body=data)


@pytest.mark.parametrize("planted", ["at the cache key", "at the metadata", "at both"])
async def test_a_pickle_planted_as_a_cache_record_in_s3_is_never_unpickled_nor_paid_twice(
    moto_url, runway_emulator, segmind_credentials, tmp_path, planted,  # noqa: F811
):
    """Whoever can write the results prefix of a shared bucket replaces the storyboard's
    cache records with pickles that would create a file when loaded. The re-run (its
    cost plan looks the records up, then each submit) loads none of them: no file, no new
    submission (the ledger holds both jobs), and the records are written again as ours."""
    from s3_helpers import aws_credentials, list_keys, new_bucket

    from prefect_runway import storyboard

    credentials = aws_credentials(moto_url)
    outputs = new_bucket(credentials, "hostile-team", "outputs")
    results = new_bucket(credentials, "hostile-team", f"results-{planted.replace(' ', '-')}")
    await results.save(f"hostile-results-{planted.replace(' ', '-')}", overwrite=True)
    run = storyboard.with_options(result_storage=results)
    shots = [{"name": "harbour", "still_prompt": f"a harbour @hero {planted} {tmp_path.name}",
              "motion_prompt": "slow pan", "seed": 7,
              "reference_images": [{"uri": "https://example.com/ref.png", "tag": "hero"}]}]
    kwargs = dict(shots=shots, credentials=segmind_credentials, storage=outputs)
    first = await run(**kwargs)
    assert first.completed == 1
    prefix = f"{results.bucket_folder}/"
    records = [k for k in list_keys(results, prefix) if "prefect-runway-submit-" in k]
    metadata = [k for k in list_keys(results, prefix) if "/prefect-runway-cache/" in k]
    assert len(records) == len(metadata) == 2  # the still's and the video's

    marker = tmp_path / "pwned"
    for key in records:
        record = _pickled_record(marker, key.removeprefix(prefix))
        if planted != "at the metadata":
            _put(results, key, record)
        if planted != "at the cache key":
            name = key.rsplit("prefect-runway-submit-", 1)[1]
            _put(results, f"{prefix}prefect-runway-cache/{name}.json", record)
    before = runway_emulator.stats()["segmind"]["total_submissions"]

    again = await run(**kwargs)

    assert not marker.exists(), "a planted pickle was loaded"
    assert runway_emulator.stats()["segmind"]["total_submissions"] == before
    assert again.completed == 1
    assert (again.shots[0].still.job_id, again.shots[0].video.job_id) == (
        first.shots[0].still.job_id, first.shots[0].video.job_id)
    for key in records:  # written again, as ours: JSON of a Generation
        body = results.credentials.get_s3_client().get_object(
            Bucket=results.bucket_name, Key=key)["Body"].read()
        assert json.loads(body)["job_id"] in (first.shots[0].still.job_id,
                                               first.shots[0].video.job_id)


async def test_a_record_we_did_not_write_for_a_job_the_ledger_does_not_know_is_a_typed_doubt(
    runway_emulator, segmind_credentials, tmp_path,
):
    """A record at a request's cache key, and no job for it in this storage's ledger (it may
    have been paid through another one): refused unread, and nothing is sent."""
    from prefect.settings import get_current_settings

    from prefect_runway import ImageRequest, generate_image
    from prefect_runway.blocks.requests import prepare
    from prefect_runway.errors import CacheRecordRejected, SubmissionUncertain
    from prefect_runway.tasks.generation import submission_cache_key

    ref = [{"uri": "https://example.com/ref.png", "tag": "hero"}]
    prompt = f"a doubtful record @hero {tmp_path.name}"
    prepared = prepare(ImageRequest(prompt=prompt, reference_images=ref, seed=9),
                       segmind_credentials)
    key = submission_cache_key(segmind_credentials, prepared)
    results = Path(get_current_settings().results.local_storage_path).expanduser()
    marker = tmp_path / "pwned"
    record = _pickled_record(marker, str(results / key))
    (results / "prefect-runway-cache").mkdir(parents=True, exist_ok=True)
    (results / "prefect-runway-cache" / f"{key.removeprefix('prefect-runway-submit-')}.json"
     ).write_bytes(record)
    (results / key).write_bytes(record)
    before = runway_emulator.stats()["segmind"]["total_submissions"]

    with pytest.raises(CacheRecordRejected) as info:
        await generate_image(prompt=prompt, reference_images=ref, seed=9,
                             credentials=segmind_credentials, storage=str(tmp_path / "out"))

    assert isinstance(info.value, SubmissionUncertain) and info.value.scope == key
    assert "pickle" in str(info.value) and "prefect-runway-cache" in info.value.location
    assert not marker.exists()
    assert runway_emulator.stats()["segmind"]["total_submissions"] == before


async def test_the_cancellation_hook_reads_a_planted_record_as_no_job(
    runway_emulator, segmind_credentials, tmp_path, caplog,
):
    """The cancellation hook finds a run's jobs through the API and the records of its
    submits; a pickle that replaced one is not loaded (it names no job)."""
    import logging

    from prefect.settings import get_current_settings

    from prefect_runway import ImageRequest, generate_image
    from prefect_runway.blocks.requests import prepare
    from prefect_runway.flows.cancellation import cancel_remote_jobs
    from prefect_runway.tasks.generation import submission_cache_key

    ref = [{"uri": "https://example.com/ref.png", "tag": "hero"}]
    prompt = f"a cancelled record @hero {tmp_path.name}"
    state = await generate_image(prompt=prompt, reference_images=ref, seed=2,
                                 credentials=segmind_credentials,
                                 storage=str(tmp_path / "out"), return_state=True)
    still = await state.aresult()

    class _Run:
        id = state.state_details.flow_run_id
        parameters: dict = {}

    with caplog.at_level(logging.INFO):
        await cancel_remote_jobs(None, _Run(), None)
    assert still.job_id in caplog.text  # found through its record (Segmind cannot cancel)

    key = submission_cache_key(
        segmind_credentials,
        prepare(ImageRequest(prompt=prompt, reference_images=ref, seed=2), segmind_credentials),
    )
    record = Path(get_current_settings().results.local_storage_path).expanduser() / key
    assert record.is_file()
    marker = tmp_path / "pwned"
    record.write_bytes(_pickled_record(marker, str(record)))
    caplog.clear()
    with caplog.at_level(logging.INFO):
        await cancel_remote_jobs(None, _Run(), None)
    assert not marker.exists(), "a planted pickle was loaded"
    assert "No remote jobs to cancel" in caplog.text and still.job_id not in caplog.text
