"""What the flows return: a chain's two outputs, a storyboard's per-shot summary."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from prefect_runway.flows.doubts import Doubt, doubts_markdown
from prefect_runway.flows.markdown import code, cost_text, md
from prefect_runway.models import StoredOutput

__all__ = ["ImageToVideoResult", "ShotResult", "StoryboardSummary", "first_frame_key"]


class ImageToVideoResult(BaseModel):
    """The two outputs of the chain (no video when the still was rejected at review)."""

    still: StoredOutput
    video: StoredOutput | None = None
    finished: StoredOutput | None = Field(
        default=None, description="The video after the finishing step (an upscale, a new "
        "frame rate), stored beside it; None: no finishing step.")
    status: Literal["completed", "rejected"] = Field(
        default="completed", description="completed, or rejected at review (no video)."
    )


class ShotResult(BaseModel):
    """What became of one shot: its stored outputs, or why it failed."""

    row: int = Field(description="1-based position of the shot in the storyboard.")
    name: str = Field(description="The shot's name (default shot-NNN).")
    status: Literal["completed", "failed", "not_started", "rejected"] = Field(
        description="completed, failed, not_started (a step would have passed the budget), "
                    "or rejected at review (its still was not animated, as asked)."
    )
    still: StoredOutput | None = Field(default=None, description="The stored still, if made.")
    video: StoredOutput | None = Field(default=None, description="The stored video, if made.")
    finished: StoredOutput | None = Field(default=None, description="The video after its "
                                          "finishing step, if the shot has one and it was made.")
    error: str | None = Field(default=None, description="Why the shot failed.")
    same_as: str | None = Field(
        default=None,
        description="The shot this one is identical to: its outputs were generated once.",
    )

    @property
    def ok(self) -> bool:
        return self.status in ("completed", "rejected")

    def fallbacks(self) -> list[str]:
        """How this shot's steps fell back to another provider (empty when none did)."""
        from prefect_runway.flows.fallback import describe_fallback

        return [note for note in (describe_fallback(self.still), describe_fallback(self.video))
                if note]


class StoryboardSummary(BaseModel):
    """Every shot's result, in storyboard order, and the counts."""

    total: int = Field(description="Shots in the storyboard.")
    completed: int = Field(description="Shots whose outputs are stored (the still, where the "
                           "shot has one, and the video).")
    failed: int = Field(description="Shots that failed.")
    generated: int = Field(description="Distinct shots generated (identical shots count once).")
    shots: list[ShotResult] = Field(description="One result per shot, in order.")
    not_started: int = Field(default=0, description="Shots not started: over the budget.")
    rejected: int = Field(default=0, description="Shots rejected at review (not animated).")
    costs: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Spent per provider and model (each job once) beside the plan's estimate "
                    "(see prefect_runway.money.cost_plan.spending).",
    )
    doubts: list[Doubt] = Field(
        default_factory=list,
        description="Submissions in doubt the run met (their shots failed), each with the "
                    "commands that settle it.",
    )

    @classmethod
    def of(cls, results: Sequence[ShotResult], generated: int) -> StoryboardSummary:
        done = sum(1 for r in results if r.status == "completed")
        rejected = sum(1 for r in results if r.status == "rejected")
        return cls(total=len(results), completed=done, failed=len(results) - done - rejected,
                   generated=generated, shots=list(results), rejected=rejected)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def describe(self, limit: int = 10) -> str:
        """One paragraph: the counts, then each failed shot and its reason."""
        text = f"{self.completed} of {self.total} shots completed"
        fell = sum(1 for r in self.shots if r.fallbacks())
        if fell:
            text += f" ({fell} on a fallback provider)"
        if self.rejected:
            text += f" ({self.rejected} rejected at review)"
        if not self.failed:
            return text + "."
        failures = [r for r in self.shots if not r.ok]
        shown = "; ".join(f"row {r.row} {r.name}: {r.error}" for r in failures[:limit])
        more = f"; and {len(failures) - limit} more" if len(failures) > limit else ""
        doubts = (f" ({len(self.doubts)} submission(s) in doubt: the summary artifact gives "
                  "the command that settles each)") if self.doubts else ""
        return f"{text}, {self.failed} failed{doubts}: {shown}{more}"

    def markdown(self, pictures: Mapping[str, str] | None = None,
                 links: Mapping[str, str] | None = None) -> str:
        """The summary as a markdown contact sheet: a row per shot with its still and its
        video's preview (``pictures``: a stored key -> the picture's data URI or URL), each
        output's key and, where ``links`` has one (a stored key -> a URL a browser opens),
        an ``open`` link. Never a ``file://`` link: a browser does not open one from a page."""
        title = f"# Storyboard: {self.completed} of {self.total} shots completed"
        if self.failed:
            title += f", {self.failed} failed"
        if self.not_started:
            title += f" ({self.not_started} not started: over the budget)"
        if self.rejected:
            title += f", {self.rejected} rejected at review"
        finishing = any(r.finished for r in self.shots)
        lines = [title, "", "| # | shot | status | still | video | "
                 + ("finished | " if finishing else "") + "reason |",
                 "| --- " * (7 if finishing else 6) + "|"]
        for r in self.shots:
            reason = (r.error or "").replace("|", "\\|").replace("\n", " ")
            if r.same_as:
                reason = (reason + " " if reason else "") + f"(identical to {r.same_as})"
            for note in r.fallbacks():
                reason = (reason + "; " if reason else "") + note.replace("|", "\\|")
            finished = f" | {_cell(r.finished, links)}" if finishing else ""
            lines.append(
                f"| {r.row} | {md(r.name)} | {r.status} | {_still_cell(r, links)} "
                f"| {_cell(r.video, links)}{finished} | {reason} |"
            )
        lines += _contact_sheet(self.shots, pictures or {}, finishing)
        if self.doubts:
            lines += ["", doubts_markdown(self.doubts)]
        if self.costs:
            lines += ["", "## Costs: spent vs plan", "", _spending(self.costs)]
        return "\n".join(lines)


def _spending(rows: Sequence[dict[str, Any]]) -> str:
    """Spent beside planned, per provider and model, each amount with its unit."""
    lines = ["| provider | model | jobs | spent | planned | of which estimated |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        planned = cost_text(r["planned"], r["unit"])
        if r.get("unpriced"):  # a model with no known price: never shown as free
            planned = f"{planned} + unknown" if r["planned"] else "unknown"
        lines.append(f"| {r['provider']} | {r['model']} | {r['jobs']} | "
                     f"{cost_text(r['spent'], r['unit'])} | {planned} "
                     f"| {r['estimated']} job(s) |")
    return "\n".join(lines)


def _contact_sheet(shots: Sequence[ShotResult], pictures: Mapping[str, str],
                   finishing: bool = False) -> list[str]:
    """Each shot's still (or the frame it started on) and its videos' previews, side by side
    (an identical shot's once)."""
    rows = []
    for r in shots:
        frame = first_frame_key(r)
        cells = [f"![{md(o.kind)}]({pictures[_shown_key(o)]})" if o and _shown_key(o) in pictures
                 else "" for o in (r.still, r.video, r.finished)]
        if not cells[0] and frame in pictures:
            cells[0] = f"![last frame of the shot before]({pictures[frame]})"
        if not r.same_as and any(cells):
            rows.append(f"| {md(r.name)} | " + " | ".join(cells[:3 if finishing else 2]) + " |")
    if not rows:
        return []
    head = "| shot | still | video (preview) |" + (" finished (preview) |" if finishing else "")
    return ["", "## Contact sheet", "", head, "| --- " * (4 if finishing else 3) + "|", *rows]


def first_frame_key(result: ShotResult) -> str:
    """The stored frame a shot's video started on (continuity), or ""."""
    first = result.video.first_frame if result.video else None
    return (first or {}).get("frame", "")


def _still_cell(result: ShotResult, links: Mapping[str, str] | None) -> str:
    """The still's key; for a shot with no still, what its video started from."""
    if result.still is not None or result.video is None:
        return _cell(result.still, links)
    first = result.video.first_frame
    if first:
        return f"last frame of {code(first.get('video', ''))}"
    return "none: text-to-video"


def _shown_key(output: StoredOutput) -> str:
    """The stored picture that shows ``output``: a video's preview, a still itself."""
    return (output.preview_key or output.key) if output.kind == "video" else output.key


def _cell(output: StoredOutput | None, links: Mapping[str, str] | None) -> str:
    """An output in the summary: its key, and a link a browser opens where there is one."""
    if output is None:
        return ""
    url = (links or {}).get(output.key)
    if url is None and output.location.startswith(("https://", "http://")):
        url = output.location
    return code(output.key) + (f" [open]({url})" if url else "")
