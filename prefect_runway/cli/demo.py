"""``prefect-runway demo``: the image-to-video pipeline, on the built-in emulator unless a key is set."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from prefect_runway.cli.common import (
    KEY_ENV,
    PROVIDERS,
    add_emulator_options,
    demo_credentials,
    quiet_prefect_env,
    watched,
    writable_directory,
)
from prefect_runway.errors import UsageError

__all__ = ["DEMO_REFERENCE", "add_parser", "demo"]


# A public reference image (from Segmind's own gen4-image example); the emulator does not
# fetch reference images, the real APIs do.
DEMO_REFERENCE = {
    "uri": "https://segmind-inference-inputs.s3.amazonaws.com/c226e2cf-49ea-4b8d-a630-9847c0efbbce-Beach-walk.png",
    "tag": "model",
}



def _demo_plan(args: argparse.Namespace) -> tuple[str, str]:
    """The demo's two providers, with both requests checked against them (pure, no I/O)."""
    from prefect_runway.errors import InvalidRequest
    from prefect_runway.models import ImageRequest, VideoRequest, check_name

    check_name(args.name, "--name")
    image_provider = args.image_provider or ("segmind" if args.provider == "aimlapi" else args.provider)
    video_provider = args.video_provider or args.provider
    if image_provider == "aimlapi":
        raise UsageError(
            "--image-provider: AIMLAPI does not offer gen4_image; allowed: segmind, runway"
        )
    try:
        still = ImageRequest(prompt=args.still_prompt, reference_images=[DEMO_REFERENCE],
                             seed=args.seed)
    except InvalidRequest as exc:
        raise UsageError(f"the still's {exc}") from None
    try:
        video = VideoRequest(image="https://example.invalid/still.png", prompt=args.motion_prompt,
                             model=args.video_model, duration=args.duration, seed=args.seed)
    except InvalidRequest as exc:
        raise UsageError(f"the video's {exc}") from None
    for role, provider, request in (("still", image_provider, still),
                                    ("video", video_provider, video)):
        credentials, _ = demo_credentials(provider, None)
        try:
            credentials.provider().prepare(request, credentials.resolved_base_url())
        except InvalidRequest as exc:
            raise UsageError(f"the {role}'s {exc}") from None
    return image_provider, video_provider


def demo(args: argparse.Namespace) -> int:
    # Everything the user typed is checked before anything starts.
    image_provider, video_provider = _demo_plan(args)
    storage = args.storage or str(writable_directory(Path(args.output).resolve(), "--output"))
    quiet_prefect_env()
    from prefect_runway.emulator import Emulator, EmulatorConfig
    from prefect_runway.flows import image_to_video

    needs_emulator = any(not os.environ.get(KEY_ENV[p]) for p in (image_provider, video_provider))
    emulator = Emulator(EmulatorConfig(latency=args.latency, video_fps=args.fps)) if needs_emulator else None
    if emulator is not None:
        emulator.__enter__()
    try:
        url = emulator.url if emulator else None
        image_creds, emu_i = demo_credentials(image_provider, url)
        video_creds, emu_v = demo_credentials(video_provider, url)
        for role, provider, emulated in (("still", image_provider, emu_i), ("video", video_provider, emu_v)):
            where = f"the built-in emulator at {url}" if emulated else f"the real {provider} API"
            print(f"{role}: {provider} via {where}")
        result = watched(lambda: image_to_video(
                still_prompt=args.still_prompt,
                motion_prompt=args.motion_prompt,
                image_credentials=image_creds,
                video_credentials=video_creds,
                reference_images=[DEMO_REFERENCE],
                video_model=args.video_model,
                duration=args.duration,
                seed=args.seed,
                storage=storage,
                name=args.name,
                key_template="{kind}-{provider}-{fingerprint}.{ext}",
            ), title="image-to-video")
    finally:
        if emulator is not None:
            emulator.__exit__(None, None, None)
    assert result.video is not None  # no review here: the chain always has its video
    print()
    print(f"still: {result.still.location}  ({result.still.size} bytes, sha256 {result.still.sha256[:16]})")
    print(f"video: {result.video.location}  ({result.video.size} bytes, sha256 {result.video.sha256[:16]})")
    print(f"sidecars: {result.still.sidecar}, {result.video.sidecar}")
    if result.video.preview_key:
        print(f"preview: {result.video.preview_key} (beside the video)")
    return 0


def add_parser(sub: Any) -> None:
    """``prefect-runway demo``."""
    d = sub.add_parser("demo", help="run the image-to-video pipeline (emulator unless a key is set)")
    d.add_argument("--provider", choices=PROVIDERS, default="segmind",
                   help="provider for both steps (default segmind)")
    d.add_argument("--image-provider", choices=("segmind", "runway"), help="provider of the still")
    d.add_argument("--video-provider", choices=PROVIDERS, help="provider of the video")
    d.add_argument("--video-model", choices=("gen4_turbo", "gen3a_turbo"), default="gen4_turbo")
    d.add_argument("--still-prompt", default="a lighthouse on a cliff at dusk, @model on the path")
    d.add_argument("--motion-prompt", default="slow dolly in as waves roll against the cliff")
    d.add_argument("--duration", type=int, default=5,
                   help="video seconds (5 or 10; Runway's gen4_turbo: 2-10)")
    d.add_argument("--seed", type=int, default=4242)
    d.add_argument("--name", default="lighthouse",
                   help="the shot's name: in task run names and artifact keys (default %(default)s)")
    d.add_argument("--output", default="runway-outputs", help="local output directory")
    d.add_argument("--storage", help="storage instead of --output, e.g. s3://bucket/prefix "
                   "(endpoint, region and keys from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID...)")
    add_emulator_options(d, "emulator")
    d.set_defaults(func=demo)
