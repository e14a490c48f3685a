"""Planning: every request validated and prepared once, every setting checked before paying."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from prefect_runway.blocks.credentials import ProviderCredentials
from prefect_runway.blocks.requests import load_credentials, prepare, upload_images
from prefect_runway.errors import InvalidRequest, InvalidShot, StorageError
from prefect_runway.flows.shots import message_of
from prefect_runway.models import (
    PLACEHOLDER_IMAGE,
    PLACEHOLDER_VIDEO,
    FinishRequest,
    Request,
    Shot,
    TextToVideoRequest,
    VideoRequest,
    check_name,
)
from prefect_runway.providers.base import PreparedRequest
from prefect_runway.storage import OutputStorage, output_key
from prefect_runway.storage.previews import check_preview
from prefect_runway.tasks.limits import max_task_runs

__all__ = ["ChainPlan", "Finish", "ShotPlan", "check_run", "check_storage", "plan_chain",
           "plan_finish", "plan_storyboard"]


#: ``(video URI, its sha256, its length in seconds) -> FinishRequest``: a finishing step.
Finish = Callable[[str, "str | None", "float | None"], FinishRequest]


#: Where a chain's video starts: its own still, nothing (text-to-video), or the previous
#: shot's last frame (a storyboard's continuity).
Mode = Literal["still", "text", "continued"]


@dataclass
class ChainPlan:
    """A still, then that still animated: the still prepared, the video step checked. Or a
    chain with no still: a video from its prompt alone (``text_request``), or from the last
    frame of the chain keyed ``after``.

    Attributes:
        still: The still's prepared request (None: the chain has no still).
        image_credentials: Where the still goes (no still: the video's).
        video_credentials: Where the video goes.
        video_check: The video step prepared with a placeholder image (checked, never sent);
            text-to-video: the video's request, as it is sent.
        video_request: Builds the video request from the still's URL and sha256.
        still_request: The still's request (what a fallback provider is priced on).
        text_request: The video's whole request, made from its prompt alone.
        after: The ``chain_key`` of the chain whose last frame this video starts on.
        finish_check: The finishing step (if any) prepared with a placeholder video.
        finish_credentials: Where the finishing step goes.
        finish_request: Builds the finishing step's request from the video's URI, sha256
            and length (see :func:`plan_finish`).
    """

    still: PreparedRequest | None
    image_credentials: ProviderCredentials
    video_credentials: ProviderCredentials
    video_check: PreparedRequest
    video_request: Callable[[str, str | None], VideoRequest | TextToVideoRequest]
    still_request: Request | None = None
    text_request: TextToVideoRequest | None = None
    after: str | None = None
    finish_check: PreparedRequest | None = None
    finish_credentials: ProviderCredentials | None = None
    finish_request: Finish | None = None

    @property
    def mode(self) -> Mode:
        """Where the video starts (:data:`Mode`)."""
        if self.still is not None:
            return "still"
        return "text" if self.text_request is not None else "continued"

    @property
    def still_key(self) -> str:
        """What identifies the still's job: its fingerprint at its API ("" with no still)."""
        return f"{self.still.fingerprint}|{self.still.base_url}" if self.still else ""

    @property
    def chain_key(self) -> str:
        """What identifies the whole chain (identical chains are generated once; a continued
        chain is identified with the chain it continues)."""
        video = f"{self.video_check.fingerprint}|{self.video_check.base_url}"
        return f"{self.after}>{video}" if self.after is not None else f"{self.still_key}|{video}"

    def known_steps(self) -> list[tuple[str, ProviderCredentials, PreparedRequest]]:
        """``(key, credentials, prepared request)`` of the steps whose request is whole
        before anything runs: the still, or a text-to-video chain's video."""
        if self.still is not None:
            return [(self.still_key, self.image_credentials, self.still)]
        if self.text_request is not None:
            return [(self.chain_key, self.video_credentials, self.video_check)]
        return []

    def video(self, image: str, image_sha256: str | None = None) -> PreparedRequest:
        """The video step, prepared once the still's URL (or data URI) is known."""
        return prepare(self.video_request(image, image_sha256), self.video_credentials)

    async def video_request_uploading(
        self, image: str, image_sha256: str | None = None, *, upload: bool = False
    ) -> VideoRequest:
        """The video step's request, its still uploaded where needed (see :func:`upload_images`)."""
        request = await upload_images(
            self.video_request(image, image_sha256), self.video_credentials, upload=upload,
        )
        assert isinstance(request, VideoRequest)
        return request


def plan_video(
    video_request: Callable[[str, str | None], VideoRequest] | TextToVideoRequest,
    credentials: ProviderCredentials,
    *,
    after: str | None = None,
    on_invalid: Callable[[str, InvalidRequest], Exception] | None = None,
) -> ChainPlan:
    """Plan a chain with no still: a video from its prompt alone (``video_request`` a
    :class:`TextToVideoRequest`), or from the last frame of the chain keyed ``after``
    (``video_request``: ``(image, image_sha256) -> VideoRequest``).

    Raises:
        InvalidRequest: the video step is invalid (or ``on_invalid("video", error)``).
    """
    text = video_request if isinstance(video_request, TextToVideoRequest) else None
    build: Callable[[str, str | None], VideoRequest | TextToVideoRequest]
    if isinstance(video_request, TextToVideoRequest):
        build = lambda image, sha256: video_request  # noqa: E731 - its image is never used
    else:
        build = video_request
    try:
        check = prepare(build(PLACEHOLDER_IMAGE, None), credentials)
    except InvalidRequest as e:
        if on_invalid is None:
            raise
        raise on_invalid("video", e) from None
    return ChainPlan(still=None, image_credentials=credentials, video_credentials=credentials,
                     video_check=check, video_request=build, text_request=text,
                     after=None if text is not None else after)


def plan_chain(
    still_request: Request,
    video_request: Callable[[str, str | None], VideoRequest],
    image_credentials: ProviderCredentials,
    video_credentials: ProviderCredentials,
    *,
    on_invalid: Callable[[str, InvalidRequest], Exception] | None = None,
) -> ChainPlan:
    """Plan a chain: prepare the still, check the video step, before spending anything.

    Args:
        still_request: The still's request.
        video_request: ``(image, image_sha256) -> VideoRequest`` for the video step.
        image_credentials: The still's provider.
        video_credentials: The video's provider.
        on_invalid: ``(step, error) -> exception to raise`` (``step`` is ``"still"`` or
            ``"video"``), to name the field as the caller knows it; default: the error.

    Raises:
        InvalidRequest: either step is invalid.
    """
    steps: dict[str, PreparedRequest] = {}
    for step, credentials, build in (
        ("still", image_credentials, lambda: still_request),
        ("video", video_credentials, lambda: video_request(PLACEHOLDER_IMAGE, None)),
    ):
        try:
            steps[step] = prepare(build(), credentials)
        except InvalidRequest as e:
            if on_invalid is None:
                raise
            raise on_invalid(step, e) from None
    return ChainPlan(
        still=steps["still"], image_credentials=image_credentials,
        video_credentials=video_credentials, video_check=steps["video"],
        video_request=video_request, still_request=still_request,
    )


def plan_finish(plan: ChainPlan, finish: Finish, credentials: ProviderCredentials,
                key_template: str | None, field: str = "finish") -> None:
    """Add a finishing step to a planned chain: checked (the model, its options, the
    provider) with a placeholder video of the video step's length, before anything is sent.

    Raises:
        InvalidRequest: naming ``field`` and the bad part (``finish.options.resolution``);
            or a key template that would store the finished video over the video itself.
    """
    duration = plan.video_check.summary.get("duration")
    try:
        check = prepare(finish(PLACEHOLDER_VIDEO, None, duration), credentials)
    except InvalidRequest as e:
        raise InvalidRequest(f"{field}.{e.field}", message_of(e), allowed=e.allowed,
                             provider=e.provider, model=e.model) from None
    keys = {output_key(key_template, kind=step.kind, model=step.model, provider=step.provider,
                       fingerprint=step.fingerprint, seed=None, name="n", job_id=job,
                       media_type="video/mp4") for step, job in ((plan.video_check, "video-job"),
                                                                (check, "finish-job"))}
    if len(keys) < 2:
        raise InvalidRequest("key_template", "would store the finished video over the video",
                             allowed="a template with {model} or {fingerprint}")
    plan.finish_check, plan.finish_request, plan.finish_credentials = check, finish, credentials


async def check_run(
    store: OutputStorage,
    steps: Sequence[tuple[PreparedRequest, str | None]],
    *,
    key_template: str | None = None,
    preview: str | None = None,
) -> None:
    """Check every setting a run needs, before its first submit.

    * ``preview`` is a preview format (or None);
    * each step's name is one that is safe wherever it shows
      (:func:`prefect_runway.models.check_name`; storage and artifact keys are its slug);
    * ``key_template`` renders, for every step (a prepared request and its ``{name}``), with the run's real
      values (kind, model, provider, fingerprint, seed, today's date) into a key inside the
      storage root;
    * the storage's staging directory is writable;
    * ``PREFECT_RUNWAY_MAX_TASK_RUNS``, if set, is a number of task runs
      (:func:`prefect_runway.tasks.limits.max_task_runs`).

    Raises:
        InvalidRequest: naming the setting at fault; nothing was sent.
        StorageError: the storage (or the ledger beside it) cannot be written or reached.
    """
    check_preview(preview)
    max_task_runs()
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    for request, name in steps:
        check_name(name)
        media = "image/png" if request.kind == "image" else "video/mp4"
        key = output_key(
            key_template, kind=request.kind, model=request.model, provider=request.provider,
            fingerprint=request.fingerprint, seed=request.summary.get("seed"), name=name,
            media_type=media, job_id="job", flow_run="run", date=today,
        )
        store.location(key)  # a local storage refuses a key that leaves its root
    await check_storage(store)


def _probe_directory(directory: Path, what: str) -> None:
    """Create ``directory`` if needed and write (then remove) a temporary file in it."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise StorageError(
            f"storage: {what} {str(directory)!r} cannot be written ({type(exc).__name__}: "
            f"{exc.strerror or exc}); allowed: a writable directory, s3://bucket/prefix or a "
            f"filesystem block", location=str(directory),
        ) from None


def _probe_bucket(store: Any) -> None:
    """A cheap LIST of the storage's prefix: the bucket exists, is reachable, and the
    credentials may read it."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    where = f"s3://{store.bucket_name}/{store.prefix}"
    try:
        store.client().list_objects_v2(Bucket=store.bucket_name, Prefix=store.prefix, MaxKeys=1)
    except NoCredentialsError:
        raise StorageError(
            f"storage: no AWS credentials to reach {where}; allowed: AWS_ACCESS_KEY_ID/"
            f"AWS_SECRET_ACCESS_KEY, a profile, or an AwsCredentials block", location=where,
        ) from None
    except ClientError as exc:
        code = (exc.response.get("Error") or {}).get("Code") or "error"
        raise StorageError(
            f"storage: S3 refused {where} ({code}); allowed: an existing bucket these "
            f"credentials may read and write", location=where,
        ) from None
    except (BotoCoreError, OSError) as exc:
        raise StorageError(
            f"storage: {where} cannot be reached ({type(exc).__name__})", location=where,
        ) from None


async def check_storage(store: OutputStorage) -> None:
    """Check that a run's outputs and its submission ledger can be written, before paying.

    A local directory (and its ledger folder) is created if needed and probed with a
    temporary file; an S3 bucket is listed once (reachable, credentials accepted); a
    filesystem block's staging directory is probed.

    Raises:
        StorageError: naming the storage at fault; nothing was sent.
    """
    from prefect_runway.storage.s3 import S3Storage
    from prefect_runway.tasks.ledger import ledger_of

    try:
        staging = store.staging_dir()
    except OSError as exc:
        raise StorageError(
            f"storage: {store!r} cannot be written ({type(exc).__name__}: "
            f"{exc.strerror or exc})", location=repr(store),
        ) from None
    await asyncio.to_thread(_probe_directory, staging, "the directory")
    if isinstance(store, S3Storage):
        await asyncio.to_thread(_probe_bucket, store)
    backend = ledger_of(store).backend
    directory = getattr(backend, "directory", None)
    if directory is not None:
        await asyncio.to_thread(_probe_directory, Path(directory), "the ledger directory")


@dataclass
class ShotPlan:
    """One checked shot: its chain (still prepared, video checked) and where it runs."""

    row: int
    name: str
    shot: Shot
    chain: ChainPlan

    @property
    def image_credentials(self) -> ProviderCredentials:
        return self.chain.image_credentials

    @property
    def video_credentials(self) -> ProviderCredentials:
        return self.chain.video_credentials

    @property
    def still_key(self) -> str:
        return self.chain.still_key

    @property
    def chain_key(self) -> str:
        return self.chain.chain_key


class _Credentials:
    """Credentials blocks by name, each loaded once."""

    def __init__(self) -> None:
        self._loaded: dict[str, ProviderCredentials] = {}

    async def get(self, value: ProviderCredentials | str) -> ProviderCredentials:
        if isinstance(value, ProviderCredentials):
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
    credentials: ProviderCredentials | str | None = None,
    image_credentials: ProviderCredentials | str | None = None,
    video_credentials: ProviderCredentials | str | None = None,
    source: str | None = None,
    router: Callable[..., Awaitable[tuple[ProviderCredentials, ProviderCredentials]]] | None = None,
    continuity: bool = False,
    key_template: str | None = None,
) -> list[ShotPlan]:
    """Check every shot against its provider, before anything is submitted.

    Args:
        router: ``(row, name, shot, image_credentials, video_credentials, mode=...) ->
            (image, video credentials)``: where a shot's steps start, given its fallback
            routes (:meth:`prefect_runway.flows.routing.ShotRouter.plan_on`: a provider that
            does not serve the model hands the step to its fallback); the shot is planned there.
        continuity: Every shot after the first starts on the previous shot's last frame: it
            has no still step (its ``still_prompt`` is not used).
        key_template: The run's storage key template (see :func:`plan_finish`).

    Raises:
        InvalidShot: naming the row and field of the first invalid shot.
        InvalidRequest: a flow-level credentials parameter is not usable.
    """
    blocks = _Credentials()
    defaults: dict[str, ProviderCredentials | None] = {}
    for param, value in (("credentials", credentials), ("image_credentials", image_credentials),
                         ("video_credentials", video_credentials)):
        try:
            defaults[param] = None if value is None else await blocks.get(value)
        except InvalidRequest as e:
            raise InvalidRequest(param, message_of(e), allowed=e.allowed) from None
    plans: list[ShotPlan] = []
    for row, shot in enumerate(shots, start=1):
        mode: Mode = ("continued" if continuity and row > 1
                      else "still" if shot.still_prompt is not None else "text")
        after = plans[-1].chain_key if mode == "continued" else None
        plans.append(await _plan_shot(row, shot, mode, after, blocks, defaults, source, router,
                                    key_template))
    return plans


async def _plan_shot(
    row: int, shot: Shot, mode: Mode, after: str | None, blocks: _Credentials,
    defaults: dict[str, ProviderCredentials | None], source: str | None, router: Any,
    key_template: str | None,
) -> ShotPlan:
    """One shot planned as ``mode`` says (``after``: the chain a continued shot starts on)."""
    name = shot.name or f"shot-{row:03d}"

    async def pick(step: str) -> tuple[ProviderCredentials, str]:
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

    def invalid(step: str, e: InvalidRequest, image_field: str = "") -> InvalidShot:
        # the still's model is its credentials' choice: named by the field that chose them
        if step == "still":
            field = image_field if e.field == "model" else shot.shot_field("still", e.field)
        elif step == "finish":  # finish.model -> finish_model, finish.options.x -> ...
            field = e.field.replace("finish.", "finish_", 1)
        else:
            field = shot.shot_field("video", e.field)
        return InvalidShot(row, field, message_of(e), source=source, shot=name,
                           allowed=e.allowed, provider=e.provider, model=e.model)

    image_creds, image_field = await pick("image") if mode == "still" else (None, "")
    video_creds, _ = await pick("video")
    image_creds = image_creds or video_creds  # a shot with no still: the video's
    try:  # a shot with no still names its fields as a shot does (still_prompt, video_model)
        text = shot.text_request() if mode == "text" else None
    except InvalidRequest as e:
        raise InvalidShot(row, e.field, message_of(e), source=source, shot=name,
                          allowed=e.allowed, provider=e.provider, model=e.model) from None
    if router is not None:
        image_creds, video_creds = await router(row, name, shot, image_creds, video_creds,
                                                mode=mode)
    if mode == "still":
        chain = plan_chain(shot.still_request(), shot.video_request, image_creds, video_creds,
                           on_invalid=lambda step, e: invalid(step, e, image_field))
    else:
        chain = plan_video(text or shot.video_request, video_creds, after=after,
                           on_invalid=invalid)
    if shot.finish_model is not None:  # its finishing step, on the video's credentials
        _plan_shot_finish(chain, shot, video_creds, key_template, invalid)
    return ShotPlan(row=row, name=name, shot=shot, chain=chain)


def _plan_shot_finish(chain: ChainPlan, shot: Shot, credentials: ProviderCredentials,
                      key_template: str | None,
                      invalid: Callable[[str, InvalidRequest], Exception]) -> None:
    """A shot's finishing step planned (:func:`plan_finish`), its error naming the shot's
    field (``finish_options.resolution``)."""
    try:
        plan_finish(chain, shot.finish_request, credentials, key_template)
    except InvalidRequest as e:
        raise invalid("finish", e) from None
