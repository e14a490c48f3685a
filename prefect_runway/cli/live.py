"""What the ``prefect-runway`` command shows while a run goes: one row per job, live.

The CLI runs the flows in its own process (``demo``, ``storyboard``), so it watches their jobs
through :func:`prefect_runway.engine.events.subscribe` rather than reading logs back: each
:class:`~prefect_runway.engine.events.JobEvent` updates a :class:`JobBoard`, and a
:class:`LiveDisplay` draws the board with `rich <https://rich.readthedocs.io>`_ (installed with
Prefect):

```
 shot      kind   provider/model      state     progress                         job
 harbour   still  segmind/gen4_image  stored    ━━━━━━━━━━━━━━━━━━━━ done          3f2a9c
 harbour   video  runway/gen4_turbo   running   ━━━━━━━━━╺━━━━━━━━━━ 45% (provider) 8c1d07
 2 jobs: 1 stored, 1 running · 14 s
```

Only on a terminal: where stdout is a pipe or a CI log, the display writes one plain line per
change of a job's state (no escape codes) and a last line with the totals. Watching never
fails a run: whatever the display raises is dropped (the run goes on, its logs unchanged).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import IO, Any

from rich.console import Console, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from prefect_runway.engine.events import JOB_STATES, JobEvent, subscribe

__all__ = ["JobBoard", "JobRow", "LiveDisplay", "cost_plan_table", "print_cost_plan"]

log = logging.getLogger(__name__)

#: How each state looks on a terminal.
STATE_STYLES = {
    "queued": "dim", "submitted": "cyan", "running": "bold blue", "throttled": "yellow",
    "downloading": "magenta", "stored": "green", "failed": "bold red", "not started": "dim",
}
_ACTIVE = ("submitted", "running", "throttled")
_KIND = {"image": "still", "video": "video"}


@dataclass
class JobRow:
    """What the board knows of one job (one step of one shot, across resubmits)."""

    name: str
    kind: str
    provider: str = ""
    model: str = ""
    state: str = "queued"
    job_id: str = ""
    progress: float | None = None
    age: float | None = None
    expected: tuple[float, float] | None = None
    detail: str = ""
    at: float = 0.0

    @property
    def label(self) -> str:
        """``still 'harbour' on segmind``."""
        text = _KIND.get(self.kind, self.kind)
        if self.name:
            text += f" {self.name!r}"
        return f"{text} on {self.provider}" if self.provider else text

    def elapsed(self, now: float) -> float | None:
        """Seconds since submit, now (the last poll's age plus the time since it)."""
        if self.age is None:
            return None
        if self.state in _ACTIVE:
            return self.age + max(0.0, now - self.at)
        return self.age

    def share(self, now: float) -> float | None:
        """How far along, 0-1: the provider's progress, else elapsed vs the usual maximum."""
        if self.state in ("stored", "downloading"):
            return 1.0
        if self.progress is not None:
            return self.progress
        elapsed = self.elapsed(now)
        if self.state in _ACTIVE and elapsed is not None and self.expected:
            return min(0.99, elapsed / max(self.expected[1], 1e-6))
        return None

    def progress_text(self, now: float) -> str:
        """``45% (provider)``, ``12 s of usually 20-60 s``, ``done``, or the state's note."""
        if self.state == "stored":
            return "done"
        if self.state == "failed":
            return self.detail[:60]
        if self.state == "downloading":
            return "downloading"
        elapsed = self.elapsed(now)
        if self.progress is not None:
            text = f"{self.progress:.0%} (provider)"
            return f"{text}, {elapsed:.0f} s" if elapsed is not None else text
        if elapsed is not None and self.expected:
            low, high = self.expected
            if elapsed > high:
                return f"{elapsed:.0f} s, past the usual {high:.0f} s"
            return f"{elapsed:.0f} s of usually {low:.0f}-{high:.0f} s"
        if elapsed is not None:
            return f"{elapsed:.0f} s"
        return ""


class JobBoard:
    """The jobs of a run, from their events: a subscriber (call it with each event).

    Thread-safe: events come from the run's event loop, the display reads from its own
    refresh thread.
    """

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], JobRow] = {}
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def __call__(self, event: JobEvent) -> JobRow | None:
        """Apply ``event``; returns the row when its state changed (else None)."""
        with self._lock:
            if not self.rows:
                self.started = event.at  # the run's first job, not the server's start-up
            row = self.rows.get(event.slot)
            if row is None:
                row = self.rows[event.slot] = JobRow(name=event.slot[0], kind=event.slot[1])
                changed = True
            else:
                changed = row.state != event.state
            if event.state == "queued" and row.state != "queued" and row.state != "failed":
                return None  # a step announced again as it starts: nothing new
            elapsed = row.elapsed(event.at)  # at the old state: frozen once the wait ends
            row.state = event.state
            row.provider = event.provider or row.provider
            row.model = event.model or row.model
            if event.job_id:
                row.job_id = event.job_id
            if event.state == "queued":
                row.job_id, row.progress, row.age = "", None, None
            if event.progress is not None:
                row.progress = event.progress
            if event.age is not None:
                row.age, row.at = event.age, event.at
            elif elapsed is not None:
                row.age, row.at = elapsed, event.at
            if event.expected is not None:
                row.expected = event.expected
            if event.detail:
                row.detail = event.detail
            return row if changed else None

    def snapshot(self) -> list[JobRow]:
        """The rows, in the order they were first seen (copies)."""
        with self._lock:
            return [JobRow(**vars(row)) for row in self.rows.values()]

    def totals(self) -> dict[str, int]:
        """How many jobs are in each state (states with none left out)."""
        counts: dict[str, int] = {}
        for row in self.snapshot():
            counts[row.state] = counts.get(row.state, 0) + 1
        return counts

    def describe_totals(self, now: float | None = None) -> str:
        """``2 jobs: 1 stored, 1 running · 14 s``."""
        now = time.monotonic() if now is None else now
        counts = self.totals()
        total = sum(counts.values())
        order = [*JOB_STATES, "not started"]
        parts = ", ".join(f"{counts[s]} {s}" for s in sorted(counts, key=order.index))
        text = f"{total} job{'s' if total != 1 else ''}"
        return f"{text}: {parts} · {now - self.started:.0f} s" if parts else text

    def finish(self) -> None:
        """After the run: jobs that never started are ``not started``."""
        with self._lock:
            for row in self.rows.values():
                if row.state == "queued":
                    row.state = "not started"

    def table(self, now: float | None = None, title: str | None = None) -> Table:
        """The board as a rich table, with the totals as its caption."""
        now = time.monotonic() if now is None else now
        table = Table(title=title, caption=self.describe_totals(now), caption_justify="left",
                      expand=False, box=None, header_style="bold", pad_edge=False)
        for column in ("shot", "kind", "provider/model", "state", "progress", "job"):
            table.add_column(column, no_wrap=column != "progress", overflow="ellipsis")
        for row in self.snapshot():
            share = row.share(now)
            bar = ProgressBar(total=1.0, completed=share or 0.0, width=20,
                              pulse=share is None and row.state in _ACTIVE)
            progress = Table.grid(padding=(0, 1))
            progress.add_row(bar, Text(row.progress_text(now), overflow="ellipsis", no_wrap=True))
            table.add_row(
                Text(row.name or "-"), Text(_KIND.get(row.kind, row.kind)),
                Text(f"{row.provider}/{row.model}" if row.model else row.provider),
                Text(row.state, style=STATE_STYLES.get(row.state, "")),
                progress, Text(row.job_id[:12], style="dim"),
            )
        return table


def plain_line(row: JobRow, now: float) -> str:
    """One line for a state change, without escape codes: ``video 'harbour' on runway
    (gen4_turbo): running, job 8c1d07, 12 s of usually 20-60 s``."""
    text = f"{row.label}" + (f" ({row.model})" if row.model else "") + f": {row.state}"
    if row.job_id:
        text += f", job {row.job_id}"
    note = row.progress_text(now)
    if row.state == "stored" and row.detail:
        note = row.detail
    if note and note != row.state:
        text += f", {note}"
    return text


class LiveDisplay:
    """Shows a run's jobs while it goes: a live table on a terminal, plain lines elsewhere.

    Use it around the flow call::

        with LiveDisplay(Console()):
            asyncio.run(image_to_video(...))

    Args:
        console: Where to draw (default: a console on stdout). The live table is drawn only
            when ``console.is_terminal``; otherwise plain lines go to ``console.file``.
        title: The table's title.
        refresh_per_second: How often the live table is redrawn.
    """

    def __init__(self, console: Console | None = None, *, title: str | None = None,
                 refresh_per_second: float = 4) -> None:
        self.console = console or Console(markup=False)
        self.board = JobBoard()
        self.title = title
        self.live = self.console.is_terminal
        self.refresh_per_second = refresh_per_second
        self._live: Live | None = None
        self._unsubscribe: Any = None
        self._handlers: list[tuple[Any, Any]] = []

    # The live table calls this on each refresh.
    def __rich__(self) -> RenderableType:
        try:
            return self.board.table(title=self.title)
        except Exception as exc:  # noqa: BLE001 - never fail a run over the display
            return Text(f"(progress display unavailable: {exc})")

    def __call__(self, event: JobEvent) -> None:
        row = self.board(event)
        if row is not None and not self.live:
            self._write(plain_line(row, time.monotonic()))

    def _write(self, line: str) -> None:
        file: IO[str] = self.console.file
        try:
            file.write(line + "\n")
            file.flush()
        except Exception as exc:  # noqa: BLE001 - a closed pipe does not fail the run
            log.debug("Could not write a progress line: %s", exc)

    def __enter__(self) -> LiveDisplay:
        self._unsubscribe = subscribe(self)
        if self.live:
            try:
                self._live = Live(self, console=self.console,
                                  refresh_per_second=self.refresh_per_second, transient=False,
                                  redirect_stdout=True, redirect_stderr=True)
                self._live.start()
                self._route_prefect_console()
            except Exception as exc:  # noqa: BLE001 - then plain lines
                log.debug("No live display: %s", exc)
                self._live, self.live = None, False
        return self

    def __exit__(self, *exc: object) -> None:
        self.board.finish()
        try:
            if self._live is not None:
                self._live.refresh()
                self._live.stop()
            else:
                self._write(self.board.describe_totals())
        except Exception as error:  # noqa: BLE001 - never fail a run over the display
            log.debug("Could not close the live display: %s", error)
        finally:
            self._restore_prefect_console()
            if self._unsubscribe is not None:
                self._unsubscribe()

    def _route_prefect_console(self) -> None:
        """Prefect's console log handlers print through the live console while it is shown,
        so their lines appear above the table instead of tearing it."""
        from prefect.logging.handlers import PrefectConsoleHandler

        loggers = [logging.getLogger()] + [
            logger for logger in logging.Logger.manager.loggerDict.values()
            if isinstance(logger, logging.Logger)
        ]
        for logger in loggers:
            for handler in logger.handlers:
                if isinstance(handler, PrefectConsoleHandler) and all(
                        handler is not h for h, _ in self._handlers):
                    self._handlers.append((handler, handler.console))
                    handler.console = self.console

    def _restore_prefect_console(self) -> None:
        for handler, console in self._handlers:
            handler.console = console
        self._handlers.clear()


def cost_plan_table(cost_plan: Any) -> Table:
    """A :class:`~prefect_runway.costs.CostPlan` as a rich table (``prefect-runway plan``)."""
    from prefect_runway.money.costs import format_amount

    usd = cost_plan.total_usd
    table = Table(
        title=f"Cost plan: {cost_plan.requests} request(s) to pay for {cost_plan.shots} shot(s)",
        caption="; ".join(f"total {provider}: {format_amount(amount)} {unit}"
                          for (provider, unit), amount in sorted(cost_plan.totals().items())),
        show_footer=True, header_style="bold",
    )
    columns = [("provider", "total", "left"), ("model", "", "left"),
               ("steps", str(cost_plan.steps), "right"), ("cached", str(cost_plan.cached), "right"),
               ("requests to pay", str(cost_plan.requests), "right"),
               ("estimated cost", "", "right"), ("unit", "", "left"),
               ("USD", "" if usd is None else f"{usd:.2f}", "right")]
    for header, footer, justify in columns:
        table.add_column(header, footer=footer, justify=justify)  # type: ignore[arg-type]
    for r in cost_plan.rows:
        table.add_row(r.provider, r.model, str(r.steps), str(r.cached), str(r.requests),
                      format_amount(r.amount), r.unit, "" if r.usd is None else f"{r.usd:.2f}")
    return table


def print_cost_plan(cost_plan: Any, console: Console | None = None) -> None:
    """Print a cost plan: a rich table on a terminal, the plain-text table elsewhere."""
    console = console or Console(markup=False)
    if console.is_terminal:
        console.print(cost_plan_table(cost_plan))
    else:
        console.file.write(cost_plan.table() + "\n")
