"""Continuity between a storyboard's shots: a shot starts on the previous shot's last frame,
decoded from the stored video with PyAV, stored beside it as a PNG, and handed on as a still is."""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prefect_runway.blocks.credentials import ProviderCredentials
from prefect_runway.errors import InvalidRequest
from prefect_runway.flows.chain import HANDOFF_URL_SECONDS, Chain
from prefect_runway.flows.fallback import Route
from prefect_runway.flows.plan import ShotPlan
from prefect_runway.models import StoredOutput, bytes_to_data_uri
from prefect_runway.storage import OutputStorage

__all__ = ["FRAME_SUFFIX", "MAX_TAIL_FRAMES", "MAX_VIDEO_BYTES", "TAIL_SECONDS", "Frame",
           "check_handoff", "continue_from", "last_frame_png"]

#: The most bytes of a stored video read back to take its last frame.
MAX_VIDEO_BYTES = 1 << 30
#: How far before the end the decoder seeks (to the keyframe at or before it).
TAIL_SECONDS = 1.0
#: The most frames decoded from there: a video with more frames after its last keyframe is
#: refused rather than decoded whole.
MAX_TAIL_FRAMES = 3000
#: The last frame is stored beside its video, at the video's key + this.
FRAME_SUFFIX = ".last-frame.png"


@dataclass(frozen=True)
class Frame:
    """A video's last frame, as PNG bytes stored at ``key`` beside the video."""

    data: bytes
    key: str
    sha256: str
    video: StoredOutput


def last_frame_png(data: bytes) -> bytes:
    """The last frame of the video ``data`` as PNG bytes: the same bytes for the same video.

    Seeks to the keyframe at or before :data:`TAIL_SECONDS` from the end and decodes forward
    from there, at most :data:`MAX_TAIL_FRAMES` frames; the PNG is RGB, written with fixed
    settings and no metadata.

    Raises:
        ValueError: not a video PyAV reads, no decodable frame, or too many frames to decode.
    """
    import av  # PyAV only where a frame is taken: a flow run without continuity never loads it

    try:
        return _last_frame_png(data)
    except av.error.FFmpegError as exc:
        raise ValueError(f"not a video PyAV decodes ({type(exc).__name__})") from None


def _last_frame_png(data: bytes) -> bytes:
    import av

    with av.open(io.BytesIO(data), mode="r") as container:
        if not container.streams.video:
            raise ValueError("the video has no video stream")
        stream = container.streams.video[0]
        if stream.duration and stream.time_base:
            end = stream.duration + (stream.start_time or 0)
            container.seek(max(0, end - int(TAIL_SECONDS / stream.time_base)), stream=stream,
                           backward=True, any_frame=False)
        last = None
        for count, frame in enumerate(container.decode(stream), start=1):
            if count > MAX_TAIL_FRAMES:
                raise ValueError(f"more than {MAX_TAIL_FRAMES} frames after the video's last "
                                 "keyframe")
            last = frame
        if last is None:
            raise ValueError("no frame of the video could be decoded")
        image = last.to_image().convert("RGB")
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False, compress_level=6)
    return out.getvalue()


async def last_frame(store: OutputStorage, video: StoredOutput) -> Frame:
    """The stored ``video``'s last frame, stored beside it (:data:`FRAME_SUFFIX`).

    Raises:
        InvalidRequest: naming ``run.continuity``: the video is larger than
            :data:`MAX_VIDEO_BYTES`, gone from storage, changed since it was stored, or has no
            decodable last frame.
    """
    if video.size > MAX_VIDEO_BYTES:
        raise InvalidRequest("run.continuity", f"the stored video {video.key!r} is "
                             f"{video.size} bytes", allowed=f"at most {MAX_VIDEO_BYTES}")
    data = await store.read_bytes(video.key)
    if data is None:
        raise InvalidRequest("run.continuity", f"the stored video {video.key!r} is gone",
                             allowed="the video as it was stored")
    try:  # hashed and decoded off the event loop
        png = await asyncio.to_thread(_checked_last_frame, data, video.sha256)
    except ValueError as exc:
        raise InvalidRequest("run.continuity", f"the last frame of {video.key!r} cannot be "
                             f"taken: {exc}", allowed="the MP4 as it was stored") from None
    key = video.key + FRAME_SUFFIX
    await store.write_bytes(key, png)
    return Frame(png, key, hashlib.sha256(png).hexdigest(), video)


def _checked_last_frame(data: bytes, sha256: str) -> bytes:
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError("it changed since it was stored (its sha256 differs from its sidecar's)")
    return last_frame_png(data)


async def frame_reference(store: OutputStorage, frame: Frame, credentials: ProviderCredentials,
                          *, upload: bool = False) -> str:
    """How the video provider receives the frame, as a still is handed on: a presigned URL
    of the stored frame (S3; valid :data:`HANDOFF_URL_SECONDS`), else a data URI where the
    provider takes one (the video step uploads one too long for it, or every one with
    ``upload``).

    Raises:
        InvalidRequest: the provider needs an https URL and the storage makes none.
    """
    takes_data = credentials.provider().accepts_data_uri
    if not (upload and takes_data):
        presigned = await store.presigned_url(frame.key, HANDOFF_URL_SECONDS)
        if presigned:
            return presigned
    if takes_data:
        return bytes_to_data_uri(frame.data, "image/png")
    raise _needs_url(credentials)


def _needs_url(credentials: ProviderCredentials) -> InvalidRequest:
    return InvalidRequest(
        "run.continuity", f"{credentials.provider_name} takes a first frame by https URL only",
        allowed="store outputs in S3 (storage='s3://bucket/prefix') so a presigned URL of "
                "the frame can be passed on, or a video provider that takes data URIs",
    )


async def check_handoff(plans: Sequence[ShotPlan], routes: dict[int, Any],
                        store: OutputStorage) -> None:
    """Before anything is sent: every provider a continued shot's video may go to can
    receive its first frame from ``store``.

    Raises:
        InvalidRequest: naming ``run.continuity``.
    """
    presigns = await store.presigned_url(".continuity-check", 60) is not None
    for plan in plans:
        if plan.chain.mode != "continued" or presigns:
            continue
        for credentials in routes[plan.row].video.providers:
            if not credentials.provider().accepts_data_uri:
                raise _needs_url(credentials)


async def continue_from(chain: Chain, plan: ShotPlan, route: Route,
                        previous: StoredOutput | None) -> StoredOutput:
    """Make ``plan``'s video from the last frame of ``previous`` (the shot before it's
    video), and record that lineage in its sidecar (``first_frame``).

    Raises:
        InvalidRequest: naming ``run.continuity``: the shot before made no video (nothing
            is sent), or its last frame cannot be read back.
    """
    if previous is None:
        raise InvalidRequest("run.continuity", "not started: the shot before it made no "
                             "video to start on", allowed="a storyboard whose shots all succeed")
    frame = await last_frame(chain.store, previous)

    async def handed(credentials: ProviderCredentials) -> str:
        return await frame_reference(chain.store, frame, credentials,
                                     upload=chain.options.upload)

    video = await chain.animate(plan.chain, plan.name, route, handed, frame.sha256)
    lineage = {"video": previous.key, "video_sha256": previous.sha256, "frame": frame.key,
               "frame_sha256": frame.sha256}
    if video.first_frame != lineage:
        video = await chain.store.annotated(video, first_frame=lineage)
    return video
