"""Doubts a person settles: a submit whose answer was lost is refused on re-run until someone
settles it; where a person looks (the summary, a Prefect event, ``ledger ls --doubts``) each
doubt comes with its commands; ``ledger resolve FP --job JOB_ID`` adopts the job the provider
shows, so the next run continues with it and pays nothing — against the emulator, through the
public API and the CLI, its counters read over ``GET /_emulator/stats``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.events.filters import (
    EventFilter,
    EventNameFilter,
    EventOccurredFilter,
    EventResourceFilter,
)

from prefect_runway import StoryboardFailed, SubmissionUncertain, generate_image, storyboard
from prefect_runway.cli import main as cli_main
from prefect_runway.emulator import Emulator
from prefect_runway.errors import SubmissionInDoubt
from prefect_runway.flows.events import DOUBT_EVENT
from prefect_runway.testing.fixtures import EMULATOR_KEY

REF = [{"uri": "https://example.com/ref.png", "tag": "hero"}]

pytestmark = pytest.mark.timeout(300)


def _counters(emu: Emulator) -> dict[str, Any]:
    return httpx.get(f"{emu.url}/_emulator/stats", timeout=10).json()["segmind"]


def _job_ids(emu: Emulator) -> set[str]:
    return {job["id"] for job in httpx.get(f"{emu.url}/_emulator/jobs", timeout=10).json()["segmind"]}


def _lose_the_next_answer(emu: Emulator) -> None:
    """The next Segmind submit makes its job, then the connection drops: a lost answer."""
    emu.set_faults({"scripted": [{"route": "segmind.submit", "nth": 1, "fault": "reset_after"}]})


async def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """The ``prefect-runway`` command, as a user types it (in a thread: it runs its own loop)."""
    capsys.readouterr()
    code = await asyncio.to_thread(cli_main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def _artifacts(flow_run_id: Any) -> dict[str, Any]:
    async with get_client() as client:
        artifacts = await client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {a.key: a for a in artifacts}


async def _doubt_events(fingerprint: str, since: datetime) -> list[Any]:
    event_filter = EventFilter(
        occurred=EventOccurredFilter(since=since),
        event=EventNameFilter(name=[DOUBT_EVENT]),
        resource=EventResourceFilter(id=[f"prefect-runway.submission.{fingerprint}"]),
    )
    for _ in range(60):  # the server persists events asynchronously: at most ~30 s
        async with get_client() as client:
            page = await client.read_events(filter=event_filter, limit=10)
        if page.events:
            return page.events
        await asyncio.sleep(0.5)
    return []


async def test_a_storyboard_doubt_is_in_its_summary_and_an_event_and_adopting_its_job_pays_nothing(
    runway_emulator: Emulator, segmind_credentials: Any, tmp_path: Path, capsys: Any,
) -> None:
    emu = runway_emulator
    block = f"segmind-credentials/doubts-{uuid.uuid4().hex[:8]}"
    await segmind_credentials.save(block.split("/")[1], overwrite=True)
    out = str(tmp_path / "out")
    shots = [{"name": f"café {tmp_path.name}", "still_prompt": f"a dock {tmp_path.name} @hero",
              "reference_images": REF, "motion_prompt": "pan", "seed": 1},
             {"name": "lighthouse", "still_prompt": f"a lighthouse {tmp_path.name} @hero",
              "reference_images": REF, "motion_prompt": "pan", "seed": 2}]
    since = datetime.now(timezone.utc) - timedelta(seconds=5)
    jobs_before = _job_ids(emu)
    _lose_the_next_answer(emu)
    try:  # one shot at a time: the first submit, row 1's still, loses its answer
        with pytest.raises(StoryboardFailed) as failed:
            await storyboard(shots=shots, credentials=block, storage=out, concurrency=1)
    finally:
        emu.clear_faults()
    summary = failed.value.summary
    assert [r.status for r in summary.shots] == ["failed", "completed"]
    (doubt,) = summary.doubts
    assert (doubt.provider, doubt.model, doubt.kind, doubt.name) == (
        "segmind", "gen4_image", "image", shots[0]["name"])
    assert doubt.error == "SubmissionUncertain" and doubt.storage == str(Path(out).resolve())
    assert doubt.adopt_command == (f"prefect-runway ledger resolve {doubt.fingerprint[:16]} "
                                   f"--job JOB_ID --storage {doubt.storage} --credentials {block}")
    assert doubt.clear_command == (f"prefect-runway ledger resolve {doubt.fingerprint[:16]} "
                                   f"--storage {doubt.storage}")
    assert "1 submission(s) in doubt" in summary.describe()

    # Where a person looks: the summary artifact, with the exact commands ...
    flow_run_id = summary.shots[1].still.flow_run_id
    markdown = (await _artifacts(uuid.UUID(flow_run_id)))["storyboard-summary"].data
    assert "## Submissions in doubt: 1" in markdown
    assert f"`{doubt.adopt_command}`" in markdown and f"`{doubt.clear_command}`" in markdown
    # ... a Prefect event an automation can act on (no key in it) ...
    (event,) = await _doubt_events(doubt.fingerprint, since)
    assert (event.resource["prefect-runway.provider"], event.resource["prefect-runway.model"],
            event.resource["prefect-runway.fingerprint"]) == ("segmind", "gen4_image",
                                                              doubt.fingerprint)
    assert f"prefect.flow-run.{flow_run_id}" in {r.id for r in event.related}
    assert event.payload["adopt_command"] == doubt.adopt_command
    assert event.payload["flow_run_id"] == flow_run_id
    assert EMULATOR_KEY not in json.dumps(event.model_dump(mode="json"))
    # ... and the ledger.
    code, listed, _ = await _cli(capsys, "ledger", "ls", "--doubts", "--storage", out)
    assert code == 0 and doubt.fingerprint[:16] in listed and "--job JOB_ID" in listed

    # A plain re-run (here from the command line) refuses the doubt, prints the commands that
    # settle it and fails in one line; nothing is sent.
    billed, duplicates = (_counters(emu)[k] for k in ("total_submissions",
                                                      "duplicate_submissions"))
    board = tmp_path / "board.json"
    board.write_text(json.dumps(shots))
    code, printed, err = await _cli(capsys, "storyboard", str(board), "--credentials", block,
                                    "--storage", out, "--concurrency", "1")
    assert code == 1 and err.count("\n") == 1 and SubmissionInDoubt.__name__ in err, err
    assert f"In doubt: {shots[0]['name']}'s gen4_image submit" in printed
    assert doubt.adopt_command in printed and doubt.clear_command in printed
    assert _counters(emu)["total_submissions"] == billed

    # The dashboard shows the job the lost answer made: adopt it.
    completed = {r.still.job_id for r in summary.shots if r.still} | {
        r.video.job_id for r in summary.shots if r.video}
    (lost_job,) = _job_ids(emu) - jobs_before - completed
    code, said, err = await _cli(capsys, "ledger", "resolve", doubt.fingerprint[:16], "--job",
                                 lost_job, "--storage", out, "--credentials", block)
    assert code == 0, err
    assert f"Adopted segmind job {lost_job}" in said and "pays nothing" in said
    code, listed, _ = await _cli(capsys, "ledger", "ls", "--doubts", "--storage", out)
    assert code == 0 and listed.strip() == "No submissions in doubt."

    # The next run continues with the adopted job: every shot done, no new billable submission
    # of the still (its video is new work, paid once).
    done = await storyboard(shots=shots, credentials=block, storage=out, concurrency=1)
    assert done.ok and not done.doubts
    assert done.shots[0].still.job_id == lost_job
    counters = _counters(emu)
    assert counters["total_submissions"] == billed + 1  # row 1's video, never sent before
    assert counters["duplicate_submissions"] == duplicates  # nothing paid twice
    # And once more: everything is reused, nothing at all is sent.
    again_done = await storyboard(shots=shots, credentials=block, storage=out, concurrency=1)
    assert again_done.ok and _counters(emu)["total_submissions"] == billed + 1


async def test_a_single_runs_doubt_is_an_artifact_and_resolve_job_checks_the_job(
    runway_emulator: Emulator, segmind_credentials: Any, aimlapi_credentials: Any,
    tmp_path: Path, capsys: Any,
) -> None:
    emu = runway_emulator
    out = str(tmp_path / "out")
    kwargs = dict(prompt=f"a harbour {tmp_path.name} @hero", reference_images=REF, seed=5,
                  credentials=segmind_credentials, storage=out, name="harbour")
    jobs_before = _job_ids(emu)
    _lose_the_next_answer(emu)
    try:
        state = await generate_image(**kwargs, return_state=True)
    finally:
        emu.clear_faults()
    assert state.is_failed()
    error = await state.aresult(raise_on_failure=False)
    assert isinstance(error, SubmissionUncertain)
    markdown = (await _artifacts(state.state_details.flow_run_id))["submission-doubts"].data
    reference = error.fingerprint[:16]
    # An unsaved block: the command names no --credentials (the provider's default is read).
    assert f"`prefect-runway ledger resolve {reference} --job JOB_ID --storage " in markdown
    (lost_job,) = _job_ids(emu) - jobs_before
    billed = _counters(emu)["total_submissions"]

    # Each mistake is one line, exit 2, and nothing is written.
    saved = f"doubts-{uuid.uuid4().hex[:8]}"
    await segmind_credentials.save(saved, overwrite=True)
    await aimlapi_credentials.save(saved, overwrite=True)
    for argv, needle in (
        (["--job", "no-such-job", "--credentials", f"segmind-credentials/{saved}"],
         "holds no job 'no-such-job'"),
        (["--job", lost_job, "--credentials", f"aimlapi-credentials/{saved}"],
         "sent to segmind"),
        (["--job", lost_job, "--credentials", "segmind-credentials/never-saved-x1"],
         "--credentials"),
        (["--credentials", f"segmind-credentials/{saved}"], "--credentials"),
        (["--job", " "], "job"),
    ):
        code, _, err = await _cli(capsys, "ledger", "resolve", reference, "--storage", out, *argv)
        assert code == 2 and err.count("\n") == 1 and needle in err, (argv, err)
    with pytest.raises(SubmissionInDoubt):
        await generate_image(**kwargs)

    code, said, err = await _cli(capsys, "ledger", "resolve", reference, "--job", lost_job,
                                 "--storage", out, "--credentials", f"segmind-credentials/{saved}")
    assert code == 0, err
    still = await generate_image(**kwargs)
    assert still.job_id == lost_job and Path(still.location).is_file()
    assert _counters(emu)["total_submissions"] == billed  # 0 new billable submissions
