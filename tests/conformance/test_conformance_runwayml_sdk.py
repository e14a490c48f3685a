"""The `runwayml` SDK 5.24.0 against the emulator: create, wait_for_task_output, delete, errors.

The SDK sleeps POLL_TIME +- POLL_JITTER/2 seconds (6 +- 1.5) between polls, read from
`runwayml.lib.polling` at call time; the tests shorten it there.
"""

from __future__ import annotations

import io

import pytest
import runwayml
from conformance_helpers import KEYS, download
from PIL import Image
from runwayml import AsyncRunwayML, RunwayML
from runwayml.lib.polling import TaskFailedError

from prefect_runway.emulator.media import fit, mean_abs_difference, probe_video

pytestmark = pytest.mark.timeout(60)


def test_sdk_version():
    assert runwayml.__version__ == "5.24.0"


def test_text_to_image_then_image_to_video(emu, client):
    created = client.text_to_image.create(
        model="gen4_image",
        prompt_text="@hero walks along a pier at sunset",
        ratio="1920:1080",
        reference_images=[{"uri": "https://example.com/hero.png", "tag": "hero"}],
        seed=42,
    )
    task = created.wait_for_task_output(timeout=30)
    assert task.status == "SUCCEEDED"
    assert task.cost.credits == 8
    still = Image.open(io.BytesIO(download(task.output[0])))
    assert still.size == (1920, 1080)

    video_task = client.image_to_video.create(
        model="gen4_turbo",
        prompt_image=task.output[0],
        prompt_text="the camera pulls back",
        ratio="1280:720",
        duration=5,
    ).wait_for_task_output(timeout=30)
    assert video_task.status == "SUCCEEDED"
    info = probe_video(download(video_task.output[0]))
    assert (info.width, info.height) == (1280, 720)
    assert info.duration == pytest.approx(5.0)
    assert mean_abs_difference(info.first_frame, fit(still, 1280, 720)) < 5

    retrieved = client.tasks.retrieve(video_task.id)
    assert retrieved.status == "SUCCEEDED"
    assert retrieved.output != video_task.output  # fresh signed URLs on every GET
    assert emu.stats()["runway"]["submissions"] == {"gen4_image": 1, "gen4_turbo": 1}


def test_prompt_image_as_a_list_of_positions(client):
    still = client.text_to_image.create(model="gen4_image", prompt_text="x", ratio="720:1280")
    still = still.wait_for_task_output(timeout=30)
    task = client.image_to_video.create(
        model="gen4_turbo",
        prompt_image=[{"uri": still.output[0], "position": "first"}],
        ratio="720:1280",
        duration=5,
    ).wait_for_task_output(timeout=30)
    info = probe_video(download(task.output[0]))
    assert (info.width, info.height) == (720, 1280)


def test_failure_raises_task_failed_error(client):
    created = client.text_to_image.create(model="gen4_image", prompt_text="[fail]",
                                          ratio="720:720")
    with pytest.raises(TaskFailedError) as caught:
        created.wait_for_task_output(timeout=30)
    details = caught.value.task_details
    assert details.status == "FAILED"
    assert details.failure and details.failure_code == "SAFETY.INPUT.TEXT"


def test_delete_cancels_then_deletes(emu, client):
    emu.configure(latency=10)
    created = client.text_to_image.create(model="gen4_image", prompt_text="x", ratio="720:720")
    client.tasks.delete(created.id)
    assert client.tasks.retrieve(created.id).status == "CANCELLED"
    client.tasks.delete(created.id)
    with pytest.raises(runwayml.NotFoundError):
        client.tasks.retrieve(created.id)
    assert emu.stats()["runway"]["cancels"] == 1


def test_throttled_is_a_status_the_sdk_models(emu, client):
    emu.configure(runway_concurrency=1, latency=1.0)
    first = client.text_to_image.create(model="gen4_image", prompt_text="1", ratio="720:720")
    second = client.text_to_image.create(model="gen4_image", prompt_text="2", ratio="720:720")
    assert client.tasks.retrieve(second.id).status == "THROTTLED"
    assert second.wait_for_task_output(timeout=30).status == "SUCCEEDED"
    assert client.tasks.retrieve(first.id).status == "SUCCEEDED"


def test_errors_map_to_sdk_exceptions(emu):
    with RunwayML(api_key=KEYS["runway"], base_url=emu.url, max_retries=0) as client:
        with pytest.raises(runwayml.BadRequestError) as caught:
            client.image_to_video.create(model="gen4_turbo", prompt_image="https://a.example/b",
                                         ratio="16:9")
        assert "ratio" in caught.value.body["error"]
    with RunwayML(api_key="wrong", base_url=emu.url, max_retries=0) as client:
        with pytest.raises(runwayml.AuthenticationError):
            client.tasks.retrieve("x")
    with RunwayML(api_key=KEYS["runway"], base_url=emu.url, max_retries=0,
                  runway_version="2023-01-01") as client:
        with pytest.raises(runwayml.BadRequestError):
            client.tasks.retrieve("x")


def test_sdk_retries_a_lost_submit_and_pays_twice(emu):
    """The SDK retries POSTs after a dropped connection without an idempotency key: the
    emulator's accounting shows the duplicate paid job (the complaint in PROVIDERS.md)."""
    emu.set_faults(scripted=[{"route": "runway.submit", "fault": "reset_after"}])
    with RunwayML(api_key=KEYS["runway"], base_url=emu.url, max_retries=2) as client:
        created = client.text_to_image.create(model="gen4_image", prompt_text="x",
                                              ratio="720:720")
        assert created.wait_for_task_output(timeout=30).status == "SUCCEEDED"
    stats = emu.stats()["runway"]
    assert stats["total_submissions"] == 2
    assert stats["duplicate_submissions"] == 1


def test_sdk_retries_429_with_retry_after(emu):
    emu.set_faults(scripted=[{"route": "runway.status", "fault": "429"}], retry_after=0)
    with RunwayML(api_key=KEYS["runway"], base_url=emu.url, max_retries=2) as client:
        created = client.text_to_image.create(model="gen4_image", prompt_text="x",
                                              ratio="720:720")
        assert created.estimated_cost.credits == 5
        assert client.tasks.retrieve(created.id).id == created.id  # after one 429 and a retry
    assert emu.stats()["runway"]["errors"] == {"429": 1}
    assert emu.stats()["runway"]["status_calls"] == 1


async def test_async_client(emu):
    async with AsyncRunwayML(api_key=KEYS["runway"], base_url=emu.url) as client:
        created = await client.text_to_image.create(model="gen4_image", prompt_text="async",
                                                    ratio="960:720")
        task = await created.wait_for_task_output(timeout=30)
        assert task.status == "SUCCEEDED"
        cancelled = await client.text_to_image.create(model="gen4_image", prompt_text="c",
                                                      ratio="960:720")
        await client.tasks.delete(cancelled.id)
        with pytest.raises(TaskFailedError):  # the async waiter treats CANCELLED as failed
            await cancelled.wait_for_task_output(timeout=30)
    assert Image.open(io.BytesIO(download(task.output[0]))).size == (960, 720)


# -- today's catalogue (issue 17) -----------------------------------------------------------


def _png(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (640, 360), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_upload_then_gen4_image_turbo_on_the_runway_uri(emu, client):
    uploaded = client.uploads.create_ephemeral(file=("hero.png", _png((30, 160, 60))))
    assert uploaded.uri.startswith("runway://")
    task = client.text_to_image.create(
        model="gen4_image_turbo",
        prompt_text="@hero on a bridge",
        ratio="1360:768",
        reference_images=[{"uri": uploaded.uri, "tag": "hero"}],
        content_moderation={"public_figure_threshold": "low"},
    ).wait_for_task_output(timeout=30)
    assert task.status == "SUCCEEDED" and task.cost.credits == 2
    assert Image.open(io.BytesIO(download(task.output[0]))).size == (1360, 768)
    # the upload also animates: its pixels are the video's first frame
    video = client.image_to_video.create(
        model="gen4_turbo", prompt_image=uploaded.uri, ratio="1280:720", duration=2,
    ).wait_for_task_output(timeout=30)
    info = probe_video(download(video.output[0]))
    assert mean_abs_difference(info.first_frame, fit(Image.open(io.BytesIO(
        _png((30, 160, 60)))), 1280, 720)) < 5
    assert emu.stats()["runway"]["uploads"] == 1


@pytest.mark.parametrize(("model", "seconds", "credits"),
                         [("gen4_turbo", 3, 15), ("gen4_turbo", 8, 40), ("gen4.5", 7, 84)])
def test_videos_last_the_asked_length(client, model, seconds, credits):
    still = client.text_to_image.create(model="gen4_image", prompt_text="x", ratio="720:720")
    still = still.wait_for_task_output(timeout=30)
    created = client.image_to_video.create(
        model=model, prompt_image=still.output[0], prompt_text="the camera orbits",
        ratio="960:960", duration=seconds,
        content_moderation={"public_figure_threshold": "auto"},
    )
    assert created.estimated_cost.credits == credits
    task = created.wait_for_task_output(timeout=30)
    assert task.cost.credits == credits
    info = probe_video(download(task.output[0]))
    assert (info.width, info.height) == (960, 960)
    assert info.duration == pytest.approx(seconds)


def test_organization_retrieve(emu, client):
    emu.configure(credits=500, model_concurrency={"gen4.5": 1}, daily_limits={"gen4.5": 50})
    client.text_to_image.create(model="gen4_image", prompt_text="x",
                                ratio="1920:1080").wait_for_task_output(timeout=30)
    org = client.organization.retrieve()
    assert org.credit_balance == 500 - 8
    assert org.tier.max_monthly_credit_spend == 1_000_000
    assert org.tier.models["gen4.5"].max_concurrent_generations == 1
    assert org.tier.models["gen4.5"].max_daily_generations == 50
    assert org.tier.models["gen4_image"].max_daily_generations is None
    assert org.usage.models["gen4_image"].daily_generations == 1


def test_gen3a_turbo_is_refused_with_400(emu, client):
    with pytest.raises(runwayml.BadRequestError) as caught:
        client.image_to_video.create(
            model="gen3a_turbo",  # no longer in the SDK's types; sent as given
            prompt_image="https://example.com/a.png", prompt_text="x", duration=5,
        )
    assert caught.value.status_code == 400
    assert "retired" in caught.value.body["error"]
    assert emu.stats()["runway"]["total_submissions"] == 0


def test_failure_codes_reach_the_sdk(client):
    created = client.text_to_image.create(model="gen4_image", prompt_text="[internal]",
                                          ratio="720:720")
    with pytest.raises(TaskFailedError) as caught:
        created.wait_for_task_output(timeout=30)
    assert caught.value.task_details.failure_code == "INTERNAL.BAD_OUTPUT"
    assert caught.value.task_details.cost.credits == 0
