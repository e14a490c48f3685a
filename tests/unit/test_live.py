"""The live display's parts without a run: the job board, the event fan-out, the plan table.

(The display against real runs on the emulator: tests/integration/test_live_display.py.)
"""

from __future__ import annotations

import io
import re

from rich.console import Console

from prefect_runway.cli.live import JobBoard, plain_line, print_cost_plan
from prefect_runway.engine.events import JobEvent, emit_job, job_scope, subscribed
from prefect_runway.money.cost_plan import CostPlan, CostRow


def test_events_reach_every_subscriber_with_the_scope_and_a_broken_one_is_ignored():
    seen: list[JobEvent] = []

    def broken(event: JobEvent) -> None:
        raise RuntimeError("boom")

    with subscribed(broken), subscribed(seen.append):
        with job_scope(name="harbour", kind="video", provider="runway"):
            emit_job("running", progress=0.4, age=12.0, expected=(20.0, 60.0))
        emit_job("queued", name="pier", kind="image", provider="segmind")
    emit_job("stored")  # no subscriber left: nothing
    assert [(e.state, e.slot, e.provider, e.progress) for e in seen] == [
        ("running", ("harbour", "video"), "runway", 0.4),
        ("queued", ("pier", "image"), "segmind", None),
    ]


def test_the_board_keeps_one_row_per_step_and_reports_state_changes_once():
    board = JobBoard()
    t = 100.0
    assert board(JobEvent("queued", kind="video", name="h", provider="runway", model="gen4_turbo",
                          at=t)) is not None
    assert board(JobEvent("queued", kind="video", name="h", at=t)) is None  # no change
    row = board(JobEvent("submitted", kind="video", name="h", job_id="job-1", at=t + 1))
    assert row is not None and row.job_id == "job-1"
    row = board(JobEvent("running", kind="video", name="h", job_id="job-1", age=10.0,
                         expected=(20.0, 60.0), at=t + 2))
    assert row is not None
    assert board(JobEvent("running", kind="video", name="h", age=15.0, at=t + 7)) is None
    [row] = board.snapshot()
    # between polls the elapsed time moves on; the share is elapsed vs the usual maximum
    assert row.elapsed(t + 9) == 17.0
    assert row.progress_text(t + 9) == "17 s of usually 20-60 s"
    assert abs(row.share(t + 9) - 17 / 60) < 1e-9
    board(JobEvent("downloading", kind="video", name="h", at=t + 10))
    board(JobEvent("stored", kind="video", name="h", detail="h-video.mp4", at=t + 11))
    [row] = board.snapshot()
    assert (row.state, row.elapsed(t + 100), row.share(t + 100)) == ("stored", 18.0, 1.0)
    assert plain_line(row, t + 100) == "video 'h' on runway (gen4_turbo): stored, job job-1, h-video.mp4"


def test_provider_progress_wins_and_unstarted_jobs_are_counted():
    board = JobBoard()
    board(JobEvent("running", kind="image", name="a", provider="runway", progress=0.45, age=3.0,
                   expected=(5.0, 20.0), at=0.0))
    board(JobEvent("queued", kind="video", name="a", provider="runway", at=0.0))
    board(JobEvent("failed", kind="image", name="b", provider="segmind",
                   detail="GenerationFailed: nope", at=1.0))
    [running, _, failed] = board.snapshot()
    assert running.share(4.0) == 0.45 and running.progress_text(4.0) == "45% (provider), 7 s"
    assert failed.progress_text(5.0) == "GenerationFailed: nope"
    board.finish()
    assert board.totals() == {"running": 1, "not started": 1, "failed": 1}
    assert board.describe_totals(now=9.0) == "3 jobs: 1 running, 1 failed, 1 not started · 9 s"


def _plan() -> CostPlan:
    return CostPlan(rows=[CostRow("runway", "gen4_image", "credits", steps=3, requests=2,
                                  amount=10.0),
                          CostRow("runway", "gen4_turbo", "credits", steps=3, requests=3,
                                  amount=75.0)], shots=3, steps=6)


def test_plan_prints_a_rich_table_on_a_terminal_and_plain_text_elsewhere():
    plain = io.StringIO()
    print_cost_plan(_plan(), Console(file=plain))
    assert "\x1b" not in plain.getvalue()
    assert plain.getvalue() == _plan().table() + "\n"
    out = io.StringIO()
    print_cost_plan(_plan(), Console(file=out, force_terminal=True, width=120))
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())
    assert "\x1b" in out.getvalue()
    assert "Cost plan: 5 request(s) to pay for 3 shot(s)" in text
    assert re.search(r"runway\s+│\s+gen4_turbo\s+│\s+3\s+│\s+0\s+│\s+3\s+│\s+75\s+│\s+credits", text)
    assert re.search(r"total\s+│\s+│\s+6\s+│\s+0\s+│\s+5\s+│", text)
    assert "total runway: 85 credits" in text
