"""The ``storyboard`` flow: many shots, each a gen4_image still then that still animated.

How a storyboard runs:

1. **Read and check every shot** (a list, or a JSON / CSV / YAML file, local or in S3), then
   check each against the provider it will go to (``provider().prepare``). One bad shot stops
   the storyboard with an :class:`~prefect_runway.errors.InvalidShot` naming its row and
   field, *before anything is submitted*.
2. **Generate each distinct shot once.** Shots are keyed by their request fingerprints (still
   and video, provider and API); identical shots share one generation, and shots that share a
   still share its one job.
3. **Run the chains concurrently**, at most ``concurrency`` at a time in this flow run. Each
   job also holds a slot of the Prefect global concurrency limit named for its provider
   (``segmind-jobs``, ...) when one exists, so several workers share a provider's
   concurrency; every request draws from the credentials block's rate limits.
4. **Report per shot.** One failed shot does not stop the others. The flow returns a
   :class:`StoryboardSummary` (each shot's stored outputs, or the reason it failed), shows it
   as a markdown artifact, and ends Completed when every shot succeeded — otherwise Failed,
   with the summary in the state's message and in its :class:`StoryboardFailed` result.

The chains call :func:`~prefect_runway.flows.generation.run_generation` directly inside this
one flow run rather than running ``image_to_video`` as a subflow per shot: a subflow costs a
flow run (and its API traffic) per shot, where a storyboard may have hundreds, and a shared
still could not be shared across subflows. The tasks (submit, wait, download) are the same,
with the same caching: a re-run of the storyboard finds every job already submitted.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.concurrency.asyncio import concurrency as global_concurrency
from prefect.exceptions import ObjectNotFound
from prefect.logging import get_run_logger
from prefect.states import Failed
from pydantic import BaseModel, Field

from prefect_runway.artifacts import BatchProgress
from prefect_runway.blocks.credentials import RunwayProviderCredentials
from prefect_runway.cancellation import cancel_remote_jobs
from prefect_runway.errors import InvalidRequest, InvalidShot, StoryboardFailed
from prefect_runway.flows.generation import load_credentials, run_generation, still_reference
from prefect_runway.models import PLACEHOLDER_IMAGE, ImageRequest, Shot, StoredOutput
from prefect_runway.shots import load_shots, message_of

#: Chains in flight at once in one flow run. Runway runs only a few jobs per key at once
#: (more wait THROTTLED), and Segmind and AIMLAPI queue the rest: more buys little.
DEFAULT_CONCURRENCY = 4
#: Storage keys of a storyboard's outputs.
DEFAULT_KEY_TEMPLATE = "{name}-{kind}-{fingerprint}.{ext}"
#: The Prefect global concurrency limit each job takes a slot of, when it exists.
DEFAULT_PROVIDER_LIMIT = "{provider}-jobs"
SUMMARY_ARTIFACT_KEY = "storyboard-summary"


class ShotResult(BaseModel):
    """What became of one shot: its stored outputs, or why it failed."""

    row: int = Field(description="1-based position of the shot in the storyboard.")
    name: str = Field(description="The shot's name (default shot-NNN).")
    status: Literal["completed", "failed"] = Field(description="completed or failed.")
    still: StoredOutput | None = Field(default=None, description="The stored still, if made.")
    video: StoredOutput | None = Field(default=None, description="The stored video, if made.")
    error: str | None = Field(default=None, description="Why the shot failed.")
    same_as: str | None = Field(
        default=None,
        description="The shot this one is identical to: its outputs were generated once.",
    )

    @property
    def ok(self) -> bool:
        return self.status == "completed"


class StoryboardSummary(BaseModel):
    """Every shot's result, in storyboard order, and the counts."""

    total: int = Field(description="Shots in the storyboard.")
    completed: int = Field(description="Shots whose still and video are stored.")
    failed: int = Field(description="Shots that failed.")
    generated: int = Field(description="Distinct shots generated (identical shots count once).")
    shots: list[ShotResult] = Field(description="One result per shot, in order.")

    @classmethod
    def of(cls, results: Sequence[ShotResult], generated: int) -> StoryboardSummary:
        done = sum(1 for r in results if r.ok)
        return cls(total=len(results), completed=done, failed=len(results) - done,
                   generated=generated, shots=list(results))

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def describe(self, limit: int = 10) -> str:
        """One paragraph: the counts, then each failed shot and its reason."""
        text = f"{self.completed} of {self.total} shots completed"
        if not self.failed:
            return text + "."
        failures = [r for r in self.shots if not r.ok]
        shown = "; ".join(f"row {r.row} {r.name}: {r.error}" for r in failures[:limit])
        more = f"; and {len(failures) - limit} more" if len(failures) > limit else ""
        return f"{text}, {self.failed} failed: {shown}{more}"

    def markdown(self) -> str:
        """The summary as a markdown table, linking every stored output."""
        title = f"# Storyboard: {self.completed} of {self.total} shots completed"
        if self.failed:
            title += f", {self.failed} failed"
        lines = [title, "", "| # | shot | status | still | video | reason |",
                 "| --- | --- | --- | --- | --- | --- |"]
        for r in self.shots:
            reason = (r.error or "").replace("|", "\\|").replace("\n", " ")
            if r.same_as:
                reason = (reason + " " if reason else "") + f"(identical to {r.same_as})"
            lines.append(
                f"| {r.row} | {r.name} | {r.status} | {_link(r.still)} | {_link(r.video)} "
                f"| {reason} |"
            )
        return "\n".join(lines)


def _link(output: StoredOutput | None) -> str:
    if output is None:
        return ""
    target = output.location if "://" in output.location else f"file://{output.location}"
    return f"[{output.key}]({target})"


@dataclass
class ShotPlan:
    """One checked shot, with the credentials and keys it will run with."""

    row: int
    name: str
    shot: Shot
    image_credentials: RunwayProviderCredentials
    video_credentials: RunwayProviderCredentials
    still_request: ImageRequest
    still_key: str
    chain_key: str


class _Credentials:
    """Credentials blocks by name, each loaded once."""

    def __init__(self) -> None:
        self._loaded: dict[str, RunwayProviderCredentials] = {}

    async def get(self, value: RunwayProviderCredentials | str) -> RunwayProviderCredentials:
        if isinstance(value, RunwayProviderCredentials):
            return value
        if value not in self._loaded:
            try:
                self._loaded[value] = await load_credentials(value)
            except InvalidRequest:
                raise
            except ValueError as e:  # Block.aload: no such block document
                raise InvalidRequest(
                    "credentials", f"{value!r} is not a saved block ({e})",
                    allowed="a saved credentials block, 'block-type/name'",
                ) from None
        return self._loaded[value]


async def plan_storyboard(
    shots: Sequence[Shot],
    *,
    credentials: RunwayProviderCredentials | str | None = None,
    image_credentials: RunwayProviderCredentials | str | None = None,
    video_credentials: RunwayProviderCredentials | str | None = None,
    source: str | None = None,
) -> list[ShotPlan]:
    """Check every shot against its provider, before anything is submitted.

    Raises:
        InvalidShot: naming the row and field of the first invalid shot.
        InvalidRequest: a flow-level credentials parameter is not usable.
    """
    blocks = _Credentials()
    defaults: dict[str, RunwayProviderCredentials | None] = {}
    for param, value in (("credentials", credentials), ("image_credentials", image_credentials),
                         ("video_credentials", video_credentials)):
        try:
            defaults[param] = None if value is None else await blocks.get(value)
        except InvalidRequest as e:
            raise InvalidRequest(param, message_of(e), allowed=e.allowed) from None

    plans: list[ShotPlan] = []
    for row, shot in enumerate(shots, start=1):
        name = shot.name or f"shot-{row:03d}"

        async def pick(step: str, shot: Shot = shot, row: int = row, name: str = name) -> tuple[
            RunwayProviderCredentials, str
        ]:
            own = f"{step}_credentials"
            for field, value in ((own, getattr(shot, own)), ("credentials", shot.credentials)):
                if value:
                    try:
                        return await blocks.get(value), field
                    except InvalidRequest as e:
                        raise InvalidShot(row, field, message_of(e), source=source, shot=name,
                                          allowed=e.allowed) from None
            for field in (own, "credentials"):
                if defaults[field] is not None:
                    return defaults[field], field  # type: ignore[return-value]
            raise InvalidShot(
                row, "credentials", f"no credentials for the {step}", source=source, shot=name,
                allowed="the flow's credentials, or the shot's credentials / "
                        f"{own} ('block-type/name')",
            )

        image_creds, image_field = await pick("image")
        video_creds, _ = await pick("video")
        still_request = shot.still_request()
        try:
            still = image_creds.provider().prepare(still_request, image_creds.resolved_base_url())
        except InvalidRequest as e:
            field = image_field if e.field == "model" else shot.shot_field("still", e.field)
            raise InvalidShot(row, field, message_of(e), source=source, shot=name,
                              allowed=e.allowed, provider=e.provider, model=e.model) from None
        try:
            video = video_creds.provider().prepare(
                shot.video_request(PLACEHOLDER_IMAGE), video_creds.resolved_base_url()
            )
        except InvalidRequest as e:
            field = shot.shot_field("video", e.field)
            raise InvalidShot(row, field, message_of(e), source=source, shot=name,
                              allowed=e.allowed, provider=e.provider, model=e.model) from None
        still_key = f"{still.fingerprint}|{still.base_url}"
        plans.append(ShotPlan(
            row=row, name=name, shot=shot, image_credentials=image_creds,
            video_credentials=video_creds, still_request=still_request, still_key=still_key,
            chain_key=f"{still_key}|{video.fingerprint}|{video.base_url}",
        ))
    return plans


async def _existing_limits(names: set[str]) -> dict[str, bool]:
    """Which of these Prefect global concurrency limits exist (checked once per run)."""
    found: dict[str, bool] = {}
    async with get_client() as client:
        for name in sorted(names):
            try:
                limit = await client.read_global_concurrency_limit_by_name(name)
                found[name] = bool(getattr(limit, "active", True))
            except ObjectNotFound:
                found[name] = False
    return found


@flow(name="storyboard", on_cancellation=[cancel_remote_jobs])
async def storyboard(
    # Mappings are accepted as they are and checked by load_shots, whose errors name the
    # row and field (1-based), where Prefect's parameter validation would not.
    shots: list[Shot | dict[str, Any]] | str,
    credentials: RunwayProviderCredentials | str | None = None,
    image_credentials: RunwayProviderCredentials | str | None = None,
    video_credentials: RunwayProviderCredentials | str | None = None,
    storage: Any = None,
    key_template: str = DEFAULT_KEY_TEMPLATE,
    concurrency: int = DEFAULT_CONCURRENCY,
    provider_limit: str | None = DEFAULT_PROVIDER_LIMIT,
    timeout: float | None = None,
    force: bool = False,
    preview: str | None = "gif",
) -> StoryboardSummary:
    """Generate a storyboard: for every shot a gen4_image still, then that still animated.

    Every shot is checked against its provider before anything is submitted; identical shots
    are generated once; the chains run concurrently; one failed shot does not stop the
    others. The run ends Completed when every shot succeeded, else Failed with the summary.

    Args:
        shots: The shots (``Shot`` objects or mappings of their fields), or the path or
            ``s3://bucket/key`` of a JSON, CSV or YAML shots file (see
            :mod:`prefect_runway.shots`).
        credentials: Credentials for both steps of every shot that names none itself: a block
            or a saved block's name (``"segmind-credentials/nightly"``).
        image_credentials: Credentials for the stills (default ``credentials``).
        video_credentials: Credentials for the videos (default ``credentials``).
        storage: Directory, ``s3://bucket/prefix`` or filesystem block for the outputs
            (default ``./runway-outputs``; on a worker, give an absolute directory or S3).
        key_template: Storage key template; ``{name}`` is the shot's name.
        concurrency: How many shots run at once in this flow run.
        provider_limit: Name of the Prefect global concurrency limit each job holds a slot
            of while it runs, ``{provider}`` replaced by the provider's name; used where it
            exists, so that every worker shares it. Empty to use none.
        timeout: Wait deadline per job, in seconds (default: the block's).
        force: Submit new jobs even where the same requests are cached.
        preview: Each video's preview stored beside it: ``"gif"``, ``"png"`` (contact
            sheet) or None (none: saves the CPU time of decoding every video).

    Returns:
        The per-shot summary. When any shot failed, the run ends Failed: calling the flow
        raises :class:`~prefect_runway.errors.StoryboardFailed`, whose ``summary`` is this.

    Raises:
        InvalidShot: a shot is invalid (names the row and field); nothing was submitted.
        StoryboardFailed: some shots failed (the others were stored).

    Example:
        ```python
        from prefect import flow
        from prefect_runway import SegmindCredentials, storyboard

        @flow
        async def nightly():
            credentials = await SegmindCredentials.load("BLOCK_NAME")
            return await storyboard(
                shots="s3://my-bucket/storyboards/tonight.yaml",
                credentials=credentials,
                storage="s3://my-bucket/outputs",
                concurrency=4,
            )
        ```
    """
    logger = get_run_logger()
    if concurrency < 1:
        raise InvalidRequest("concurrency", f"{concurrency} is too small", allowed="1 or more")
    if isinstance(storage, str) and not storage.strip():
        raise InvalidRequest("storage", "is empty", allowed="a directory, s3://bucket/prefix or a block")
    source = shots if isinstance(shots, str) else None
    shot_list = await load_shots(shots)
    plans = await plan_storyboard(
        shot_list, credentials=credentials, image_credentials=image_credentials,
        video_credentials=video_credentials, source=source,
    )
    groups: dict[str, list[ShotPlan]] = {}
    for plan in plans:
        groups.setdefault(plan.chain_key, []).append(plan)
    logger.info(
        "Storyboard of %d shot(s), %d distinct; all checked; running %d at a time",
        len(plans), len(groups), concurrency,
    )

    providers = {p.image_credentials.provider_name for p in plans}
    providers |= {p.video_credentials.provider_name for p in plans}
    limit_of = {p: provider_limit.format(provider=p) for p in providers} if provider_limit else {}
    existing = await _existing_limits(set(limit_of.values())) if limit_of else {}
    for provider, name in sorted(limit_of.items()):
        if existing.get(name):
            logger.info("Each %s job holds a slot of global concurrency limit %r", provider, name)
        else:
            logger.info("No active global concurrency limit %r: %s jobs are bounded by this "
                        "run's concurrency only", name, provider)

    @contextlib.asynccontextmanager
    async def provider_slot(provider: str) -> AsyncIterator[None]:
        name = limit_of.get(provider)
        if name and existing.get(name):
            async with global_concurrency(name, occupy=1):
                yield
        else:
            yield

    semaphore = asyncio.Semaphore(concurrency)
    stills: dict[str, asyncio.Task[Any]] = {}
    # Progress artifact (prefect_runway.artifacts.BatchProgress), advanced as shots finish.
    progress = BatchProgress(len(plans), key="storyboard-progress", description="storyboard")
    await progress.start()

    async def make_still(plan: ShotPlan) -> tuple[Any, StoredOutput]:
        async with provider_slot(plan.image_credentials.provider_name):
            result, stored = await run_generation(
                plan.still_request, plan.image_credentials, storage=storage,
                key_template=key_template, name=plan.name, timeout=timeout, force=force,
            )
        return result, stored[0]

    async def run_chain(group: list[ShotPlan]) -> list[ShotResult]:
        plan = group[0]
        still: StoredOutput | None = None
        video: StoredOutput | None = None
        error: str | None = None
        async with semaphore:
            try:
                if plan.still_key not in stills:
                    stills[plan.still_key] = asyncio.ensure_future(make_still(plan))
                still_result, still = await stills[plan.still_key]
                image = await still_reference(
                    still, still_result, plan.image_credentials, plan.video_credentials, storage,
                )
                video_request = plan.shot.video_request(image, image_sha256=still.sha256)
                async with provider_slot(plan.video_credentials.provider_name):
                    _, stored = await run_generation(
                        video_request, plan.video_credentials, storage=storage,
                        key_template=key_template, name=plan.name, timeout=timeout, force=force,
                        preview=preview,
                    )
                video = stored[0]
            except Exception as exc:  # one shot's failure is reported, not raised
                error = f"{type(exc).__name__}: {exc}"
                logger.warning("Shot %s (row %d) failed: %s", plan.name, plan.row, error)
        results = [
            ShotResult(
                row=p.row, name=p.name, status="failed" if error else "completed",
                still=still, video=video, error=error,
                same_as=None if p is plan else plan.name,
            )
            for p in group
        ]
        try:
            await progress.advance(len(group), failed=error is not None)
        except Exception as exc:  # progress is for people; never fail a shot over it
            logger.debug("Could not update the progress artifact: %s", exc)
        return results

    chained = await asyncio.gather(*(run_chain(group) for group in groups.values()))
    results = sorted((r for group in chained for r in group), key=lambda r: r.row)
    summary = StoryboardSummary.of(results, generated=len(groups))
    await publish_summary(summary)
    if summary.ok:
        logger.info("Storyboard done: %s", summary.describe())
        return summary
    message = f"Storyboard failed: {summary.describe()}"
    logger.error("%s", message)
    return Failed(message=message, data=StoryboardFailed(message, summary))  # type: ignore[return-value]


async def publish_summary(summary: StoryboardSummary) -> None:
    """The summary as a markdown artifact, keyed so the UI shows its history across runs."""
    from prefect.artifacts import acreate_markdown_artifact

    await acreate_markdown_artifact(
        markdown=summary.markdown(),
        key=SUMMARY_ARTIFACT_KEY,
        description=summary.describe(limit=3),
    )


__all__ = [
    "DEFAULT_CONCURRENCY", "ShotPlan", "ShotResult", "StoryboardSummary", "plan_storyboard",
    "storyboard",
]
