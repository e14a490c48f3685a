"""The image-to-video chain with its outputs, results and cache keys in S3.

S3 is moto's server on 127.0.0.1, reached through prefect-aws ``S3Bucket`` and
``AwsCredentials`` blocks with ``aws_client_parameters={"endpoint_url": ...}``; the providers
are the emulator; flows run on the session's Prefect test server. The still reaches the video
step as a presigned moto URL, which the emulator fetches over loopback.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from pathlib import Path
from uuid import UUID

import av
import numpy as np
import pytest
from PIL import Image
from prefect import flow
from prefect.settings import get_current_settings
from prefect_aws.s3 import S3Bucket
from s3_helpers import (  # noqa: F401
    AWS_KEY_ID,
    AWS_SECRET,
    aws_credentials,
    emulator_credentials,
    get_object,
    list_keys,
    moto_url,
    new_bucket,
)

from prefect_runway import StoredOutput, image_to_video
from prefect_runway.flows import animate_image
from prefect_runway.flows.progress import BatchProgress
from prefect_runway.testing.fixtures import EMULATOR_KEY

REF = [{"uri": "https://example.com/ref.png", "tag": "hero"}]
TEMPLATE = "{flow_run}/{name}-{seed}.{ext}"


async def artifacts_of(flow_run_id: str) -> list:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as client:
        return await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)]))
        )


def first_frame(data: bytes) -> Image.Image:
    with av.open(io.BytesIO(data)) as container:
        return next(container.decode(video=0)).to_image().convert("RGB")


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).mean())


@pytest.fixture(scope="module")
async def chain(moto_url, runway_emulator, prefect_harness):  # noqa: F811
    """One image_to_video run into s3://runway-outputs/nightly/{flow_run}/..."""
    credentials = emulator_credentials(runway_emulator.url)
    bucket = new_bucket(aws_credentials(moto_url), "runway-outputs", "nightly")
    before = runway_emulator.stats()["segmind"]
    result = await image_to_video(
        still_prompt="a lighthouse at dusk, s3 chain @hero", motion_prompt="slow dolly in",
        credentials=credentials, reference_images=REF, still_ratio="1280:720", duration=5,
        seed=4242, storage=bucket, key_template=TEMPLATE, name="light house/../../etc",
    )
    return result, bucket, before


async def test_outputs_land_in_s3_under_the_key_template(chain):
    result, bucket, _ = chain
    run = result.still.flow_run_id
    assert run
    still_key = f"nightly/{run}/light-house-..-..-etc-4242.png"
    video_key = f"nightly/{run}/light-house-..-..-etc-4242.mp4"
    assert result.still.key == still_key.removeprefix("nightly/")
    assert result.still.location == f"s3://runway-outputs/{still_key}"
    assert result.video.location == f"s3://runway-outputs/{video_key}"
    assert list_keys(bucket, f"nightly/{run}/") == sorted([
        still_key, still_key + ".json", video_key, video_key + ".json",
        video_key + ".preview.gif",
    ])
    with Image.open(io.BytesIO(get_object(bucket, still_key))) as still:
        assert (still.format, still.size) == ("PNG", (1280, 720))
    head = bucket.credentials.get_s3_client().head_object(Bucket="runway-outputs", Key=video_key)
    assert head["ContentType"] == "video/mp4"
    assert head["Metadata"]["sha256"] == result.video.sha256
    preview = Image.open(io.BytesIO(get_object(bucket, video_key + ".preview.gif")))
    assert preview.format == "GIF" and preview.n_frames > 1 and preview.width <= 320


async def test_still_is_handed_to_the_video_as_a_presigned_url(chain, runway_emulator, moto_url):  # noqa: F811
    result, bucket, before = chain
    job = runway_emulator.backend.lookup("segmind", result.video.job_id).job
    handed = job.body["promptImage"]
    assert handed.startswith(f"{moto_url}/runway-outputs/nightly/{result.still.flow_run_id}/")
    assert "X-Amz-Signature=" in handed and "X-Amz-Expires=900" in handed
    after = runway_emulator.stats()["segmind"]
    assert after["total_submissions"] - before["total_submissions"] == 2
    # The emulator fetched the presigned URL: the video's first frame is the stored still.
    still = Image.open(io.BytesIO(get_object(bucket, f"nightly/{result.still.key}"))).convert("RGB")
    frame = first_frame(get_object(bucket, f"nightly/{result.video.key}"))
    assert frame.size == still.size
    assert mean_difference(frame, still) < 12


async def test_sidecars_validate_and_hold_no_secret(chain):
    result, bucket, _ = chain
    for output in (result.still, result.video):
        text = get_object(bucket, f"nightly/{output.key}.json").decode()
        for secret in (EMULATOR_KEY, AWS_SECRET, AWS_KEY_ID, "X-Amz-Signature"):
            assert secret not in text
        sidecar = StoredOutput.model_validate_json(text)
        data = get_object(bucket, f"nightly/{output.key}")
        assert sidecar.size == len(data) and sidecar.sha256 == output.sha256
        assert sidecar.location == output.location and sidecar.flow_run_id == output.flow_run_id
        assert (sidecar.provider, sidecar.job_id) == ("segmind", output.job_id)
        assert sidecar.submitted_at and sidecar.completed_at  # timings (Segmind reports no cost)
        assert sidecar.request
    video = StoredOutput.model_validate_json(get_object(bucket, f"nightly/{result.video.key}.json"))
    assert video.media_type == "video/mp4" and video.preview_key == result.video.key + ".preview.gif"
    assert video.request["promptImage"] == f"sha256:{result.still.sha256}"


async def test_artifacts_show_still_preview_and_a_table_with_links(chain, moto_url):  # noqa: F811
    result, _, _ = chain
    artifacts = await artifacts_of(result.still.flow_run_id)
    kinds = sorted(a.type for a in artifacts)
    # the still, the preview, the summary, the image-to-video-progress, the outputs table
    assert kinds == ["markdown", "markdown", "markdown", "progress", "table"]
    by_key = {a.key: a.data for a in artifacts}
    links = by_key["summary-image-to-video"]
    for output in (result.still, result.video):
        assert f"]({moto_url}/runway-outputs/nightly/{output.key}?" in links
    # The still and the preview are thumbnails inlined in the artifact: no URL to them.
    still = by_key["still-light-house-------etc"]
    preview = by_key["preview-light-house-------etc"]
    assert "](data:image/jpeg;base64," in still and "](data:image/gif;base64," in preview
    assert f"[open]({moto_url}/runway-outputs/nightly/{result.still.key}?" in still
    assert f"[open]({moto_url}/runway-outputs/nightly/{result.video.key}?" in preview
    assert ".preview.gif?" not in json.dumps([a.data for a in artifacts])
    table = next(a for a in artifacts if a.type == "table")
    rows = json.loads(table.data)
    assert [r["kind"] for r in rows] == ["image", "video"]
    for row, output in zip(rows, (result.still, result.video), strict=True):
        assert row["link"].startswith(f"[open]({moto_url}/runway-outputs/nightly/{output.key}?")
        assert row["location"] == output.location
        assert row["provider"] == "segmind" and row["model"] == output.model
        assert row["seconds"] is not None and row["seconds"] >= 0
        assert row["cost"] == output.cost
    assert rows[1]["preview"] == result.video.preview_key
    everything = json.dumps([a.model_dump(mode="json") for a in artifacts])
    assert EMULATOR_KEY not in everything and AWS_SECRET not in everything
    # Every link lives one day (it was seven: SigV4's longest).
    lifetimes = re.findall(r"X-Amz-Expires=(\d+)", everything)
    assert len(lifetimes) >= 6 and set(lifetimes) == {"86400"}


async def test_results_and_cache_keys_in_the_same_bucket_find_the_submitted_jobs(
    moto_url, runway_emulator, segmind_credentials  # noqa: F811
):
    """Results and cache records in S3: a rerun finds the jobs there, not on local disk."""
    credentials = aws_credentials(moto_url)
    outputs = new_bucket(credentials, "runway-team", "outputs")
    results = S3Bucket(bucket_name="runway-team", bucket_folder="prefect-results", credentials=credentials)
    await results.save("runway-results-test", overwrite=True)
    nightly = image_to_video.with_options(result_storage=results)
    kwargs = dict(
        still_prompt="cache in s3 @hero", motion_prompt="pan", credentials=segmind_credentials,
        reference_images=REF, seed=77, storage=outputs, key_template="{name}-{seed}.{ext}",
        name="cached",
    )
    before = runway_emulator.stats()["segmind"]
    first = await nightly(**kwargs)
    records = [k for k in list_keys(results, "prefect-results/") if "prefect-runway-submit-" in k]
    assert len(records) == 2  # the still's and the video's submissions
    # Nothing on this machine's disk: another worker, reading the same bucket, finds them too.
    names = {Path(k).name for k in records}
    local = Path(get_current_settings().results.local_storage_path)
    assert not [p for p in local.rglob("*") if p.name in names]
    second = await nightly(**kwargs)
    after = runway_emulator.stats()["segmind"]
    assert after["total_submissions"] - before["total_submissions"] == 2
    assert after["downloads"] - before["downloads"] == 2  # the rerun found both outputs stored
    assert (second.still.sha256, second.video.sha256) == (first.still.sha256, first.video.sha256)


async def test_local_storage_preview_is_a_contact_sheet_linked_in_markdown(runway_credentials, tmp_path):
    """Without S3 there is no URL the UI could load: the preview is stored and linked."""
    from prefect_runway.emulator import media

    still = tmp_path / "still.png"
    still.write_bytes(media.make_still("local preview", 1, 1280, 720))
    video = await animate_image(
        image=str(still), prompt="p", credentials=runway_credentials, ratio="1280:720",
        storage=str(tmp_path / "out"), preview="png", name="local",
    )
    assert video.preview_key == video.key + ".preview.png"
    sheet = Path(video.location + ".preview.png")
    with Image.open(sheet) as image:
        assert image.format == "PNG" and image.width < 1400
    artifacts = await artifacts_of(video.flow_run_id)
    assert sorted(a.type for a in artifacts) == ["markdown", "markdown", "table"]
    # No file:// links (a browser does not open them from the UI): the sheet is inlined.
    preview = next(a for a in artifacts if a.type == "markdown" and a.key.startswith("preview"))
    assert "](data:image/jpeg;base64," in preview.data
    summary = next(a for a in artifacts if a.type == "markdown" and a.key.startswith("summary"))
    assert "](data:image/jpeg;base64," in summary.data and video.location in summary.data
    row = json.loads(next(a for a in artifacts if a.type == "table").data)[0]
    assert row["link"] == video.key and row["location"] == video.location
    assert row["provider"] == "runway"
    assert "file://" not in json.dumps([a.model_dump(mode="json") for a in artifacts])


async def test_batch_progress_artifact_is_updated_as_jobs_finish():
    @flow
    async def batch() -> str:
        progress = BatchProgress(4, key="storyboard-progress", description="storyboard")
        await progress.start()

        async def job(i: int) -> None:
            await asyncio.sleep(0.01 * i)
            await progress.advance(failed=(i == 3))

        await asyncio.gather(*(job(i) for i in range(4)))
        assert progress.percent == 100.0 and (progress.done, progress.failed) == (3, 1)
        from prefect.runtime import flow_run

        return flow_run.id

    run_id = await batch()
    artifacts = await artifacts_of(run_id)
    assert [a.type for a in artifacts] == ["progress"]
    assert artifacts[0].key == "storyboard-progress"
    assert float(artifacts[0].data) == 100.0
    assert artifacts[0].description == "storyboard: 4 of 4 finished (1 failed)"


def test_demo_writes_to_s3_from_the_environment(moto_url, monkeypatch, capsys):  # noqa: F811
    """`prefect-runway demo --storage s3://bucket/prefix` with AWS_ENDPOINT_URL set."""
    from prefect_runway import cli

    bucket = new_bucket(aws_credentials(moto_url), "demo-bucket")
    for name in ("SEGMIND_API_KEY", "AIMLAPI_API_KEY", "RUNWAYML_API_SECRET", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AWS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    code = cli.main(["demo", "--storage", "s3://demo-bucket/runs/today", "--latency", "0.3",
                     "--fps", "4"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "s3://demo-bucket/runs/today/" in out
    keys = list_keys(bucket, "runs/today/")
    ledger = [k for k in keys if k.startswith("runs/today/prefect-runway-ledger/")]
    assert len(ledger) == 2  # the submission ledger lives with the outputs: one record per job
    keys = [k for k in keys if k not in ledger]
    assert [k.rsplit(".", 1)[-1] for k in keys].count("json") == 2
    assert any(k.endswith(".png") for k in keys) and any(k.endswith(".mp4") for k in keys)
    assert any(k.endswith(".mp4.preview.gif") for k in keys)
    assert AWS_SECRET not in out
