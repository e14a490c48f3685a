"""The ``prefect-runway`` command: ``demo``, ``emulator``, ``serve`` and ``blocks create``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

KEY_ENV = {"segmind": "SEGMIND_API_KEY", "aimlapi": "AIMLAPI_API_KEY", "runway": "RUNWAYML_API_SECRET"}
PROVIDERS = tuple(KEY_ENV)
# A public reference image (from Segmind's own gen4-image example); the emulator does not
# fetch reference images, the real APIs do.
DEMO_REFERENCE = {
    "uri": "https://segmind-inference-inputs.s3.amazonaws.com/c226e2cf-49ea-4b8d-a630-9847c0efbbce-Beach-walk.png",
    "tag": "model",
}


def _quiet_prefect_env() -> None:
    # The demo and the tests never phone home.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY", "false")


def _credentials(provider: str, emulator_url: str | None):
    from pydantic import SecretStr

    from prefect_runway.blocks import AimlapiCredentials, RunwayCredentials, SegmindCredentials

    cls = {"segmind": SegmindCredentials, "aimlapi": AimlapiCredentials, "runway": RunwayCredentials}[provider]
    key = os.environ.get(KEY_ENV[provider])
    if key:
        return cls(api_key=SecretStr(key)), False
    return (
        cls(api_key=SecretStr("emulator-key"), base_url=emulator_url, poll_interval_seconds=0.5,
            max_poll_interval_seconds=2.0),
        True,
    )


def demo(args: argparse.Namespace) -> int:
    _quiet_prefect_env()
    from prefect_runway.emulator import Emulator, EmulatorConfig
    from prefect_runway.flows import image_to_video

    image_provider = args.image_provider or ("segmind" if args.provider == "aimlapi" else args.provider)
    video_provider = args.video_provider or args.provider
    if image_provider == "aimlapi":
        print("AIMLAPI does not offer gen4_image; use --image-provider segmind|runway", file=sys.stderr)
        return 2
    needs_emulator = any(not os.environ.get(KEY_ENV[p]) for p in (image_provider, video_provider))
    emulator = Emulator(EmulatorConfig(latency=args.latency, video_fps=args.fps)) if needs_emulator else None
    if emulator is not None:
        emulator.__enter__()
    try:
        url = emulator.url if emulator else None
        image_creds, emu_i = _credentials(image_provider, url)
        video_creds, emu_v = _credentials(video_provider, url)
        for role, provider, emulated in (("still", image_provider, emu_i), ("video", video_provider, emu_v)):
            where = f"the built-in emulator at {url}" if emulated else f"the real {provider} API"
            print(f"{role}: {provider} via {where}")
        storage = args.storage or str(Path(args.output).resolve())
        result = asyncio.run(
            image_to_video(
                still_prompt=args.still_prompt,
                motion_prompt=args.motion_prompt,
                image_credentials=image_creds,
                video_credentials=video_creds,
                reference_images=[DEMO_REFERENCE],
                video_model=args.video_model,
                duration=args.duration,
                seed=args.seed,
                storage=storage,
                key_template="{kind}-{provider}-{fingerprint}.{ext}",
            )
        )
    finally:
        if emulator is not None:
            emulator.__exit__(None, None, None)
    print()
    print(f"still: {result.still.location}  ({result.still.size} bytes, sha256 {result.still.sha256[:16]})")
    print(f"video: {result.video.location}  ({result.video.size} bytes, sha256 {result.video.sha256[:16]})")
    print(f"sidecars: {result.still.sidecar}, {result.video.sidecar}")
    if result.video.preview_key:
        print(f"preview: {result.video.preview_key} (beside the video)")
    return 0


def emulator(args: argparse.Namespace) -> int:
    from prefect_runway.emulator.server import main as emulator_main

    return emulator_main(args.emulator_args)


DEFAULT_BLOCK_NAME = "default"


def blocks_create(args: argparse.Namespace) -> int:
    """Save a credentials block per provider whose API key is in the environment."""
    _quiet_prefect_env()
    from pydantic import SecretStr

    from prefect_runway.blocks import AimlapiCredentials, RunwayCredentials, SegmindCredentials

    classes = {"segmind": SegmindCredentials, "aimlapi": AimlapiCredentials, "runway": RunwayCredentials}
    providers = args.provider or [p for p in PROVIDERS if os.environ.get(KEY_ENV[p])]
    if not providers:
        print(
            "No API key in the environment: set one or more of "
            + ", ".join(KEY_ENV[p] for p in PROVIDERS), file=sys.stderr,
        )
        return 1
    missing = [KEY_ENV[p] for p in providers if not os.environ.get(KEY_ENV[p])]
    if missing:
        print(f"Not set in the environment: {', '.join(missing)}", file=sys.stderr)
        return 1
    for provider in providers:
        cls = classes[provider]
        fields: dict[str, object] = {"api_key": SecretStr(os.environ[KEY_ENV[provider]])}
        if args.base_url:
            fields["base_url"] = args.base_url
        if args.max_requests_per_second:
            fields["max_requests_per_second"] = args.max_requests_per_second
        if args.global_rate_limit:
            fields["global_rate_limit"] = args.global_rate_limit
        block = cls(**fields)
        slug = f"{cls.get_block_type_slug()}/{args.name}"
        try:
            block.save(args.name, overwrite=args.overwrite)
        except ValueError as e:
            if "already in use" not in str(e):
                raise
            print(f"{slug} already exists; pass --overwrite to replace it", file=sys.stderr)
            return 1
        print(f"Saved {slug} (API key from {KEY_ENV[provider]})")
    return 0


def serve_deployments(args: argparse.Namespace) -> list:
    """The deployments ``prefect-runway serve`` serves: a scheduled storyboard, image_to_video."""
    from prefect.schedules import Cron
    from prefect.types.entrypoint import EntrypointType

    from prefect_runway.flows import image_to_video, storyboard

    def absolute(value: str) -> str:
        return value if "://" in value else str(Path(value).expanduser().resolve())

    common: dict[str, object] = {"credentials": args.credentials, "storage": absolute(args.storage)}
    nightly_params = {**common, "concurrency": args.concurrency}
    if args.shots:
        nightly_params["shots"] = absolute(args.shots)
    schedules = [] if args.no_schedule or not args.shots else [Cron(args.cron, timezone=args.timezone)]
    return [
        storyboard.to_deployment(
            name="nightly-storyboard",
            schedules=schedules,
            parameters=nightly_params,
            description="The storyboard in the shots file, every night: a still, then a video, per shot.",
            tags=["prefect-runway"],
            entrypoint_type=EntrypointType.MODULE_PATH,
        ),
        image_to_video.to_deployment(
            name="image-to-video",
            parameters=common,
            description="One still, then that still animated, on demand.",
            tags=["prefect-runway"],
            entrypoint_type=EntrypointType.MODULE_PATH,
        ),
    ]


def serve(args: argparse.Namespace) -> int:
    """Serve the storyboard and image_to_video deployments from this process."""
    _quiet_prefect_env()
    from prefect import serve as prefect_serve

    prefect_serve(*serve_deployments(args), limit=args.limit)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prefect-runway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="run the image-to-video pipeline (emulator unless a key is set)")
    d.add_argument("--provider", choices=PROVIDERS, default="segmind",
                   help="provider for both steps (default segmind)")
    d.add_argument("--image-provider", choices=("segmind", "runway"), help="provider of the still")
    d.add_argument("--video-provider", choices=PROVIDERS, help="provider of the video")
    d.add_argument("--video-model", choices=("gen4_turbo", "gen3a_turbo"), default="gen4_turbo")
    d.add_argument("--still-prompt", default="a lighthouse on a cliff at dusk, @model on the path")
    d.add_argument("--motion-prompt", default="slow dolly in as waves roll against the cliff")
    d.add_argument("--duration", type=int, choices=(5, 10), default=5)
    d.add_argument("--seed", type=int, default=4242)
    d.add_argument("--output", default="runway-outputs", help="local output directory")
    d.add_argument("--storage", help="storage instead of --output, e.g. s3://bucket/prefix "
                   "(endpoint, region and keys from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID...)")
    d.add_argument("--latency", type=float, default=2.0, help="emulator job latency, seconds")
    d.add_argument("--fps", type=int, default=24, help="emulator video frame rate")
    d.set_defaults(func=demo)

    e = sub.add_parser(
        "emulator", add_help=False,
        help="run the provider emulator on 127.0.0.1 (see `prefect-runway emulator --help`)",
    )
    e.add_argument("emulator_args", nargs=argparse.REMAINDER)
    e.set_defaults(func=emulator)

    s = sub.add_parser("serve", help="serve a scheduled storyboard and an on-demand image_to_video "
                       "from this process (the quick path; no work pool)")
    s.add_argument("--shots", help="shots file (JSON, CSV, YAML; local or s3://) for the nightly "
                   "storyboard; without it the storyboard is served unscheduled")
    s.add_argument("--credentials", default=f"segmind-credentials/{DEFAULT_BLOCK_NAME}",
                   help="saved credentials block, 'block-type/name' (default %(default)s)")
    s.add_argument("--storage", default="runway-outputs",
                   help="output directory or s3://bucket/prefix (default %(default)s)")
    s.add_argument("--cron", default="0 2 * * *", help="storyboard schedule (default %(default)r)")
    s.add_argument("--timezone", default="UTC", help="schedule time zone (default %(default)s)")
    s.add_argument("--no-schedule", action="store_true", help="serve the storyboard unscheduled")
    s.add_argument("--concurrency", type=int, default=4, help="shots at once (default %(default)s)")
    s.add_argument("--limit", type=int, default=None, help="flow runs at once in this process")
    s.set_defaults(func=serve)

    b = sub.add_parser("blocks", help="manage the credentials blocks")
    bsub = b.add_subparsers(dest="blocks_command", required=True)
    bc = bsub.add_parser(
        "create", help="save a credentials block for each provider whose key is in the environment "
        "(SEGMIND_API_KEY, AIMLAPI_API_KEY, RUNWAYML_API_SECRET)",
    )
    bc.add_argument("--name", default=DEFAULT_BLOCK_NAME, help="block name (default %(default)s)")
    bc.add_argument("--provider", action="append", choices=PROVIDERS,
                    help="only this provider (repeatable; its key must be set)")
    bc.add_argument("--base-url", help="API base URL (e.g. the emulator's); default: the public API")
    bc.add_argument("--max-requests-per-second", type=float, help="the block's request-rate cap")
    bc.add_argument("--global-rate-limit", help="a Prefect global concurrency limit (with slot "
                    "decay) every request takes a slot of, shared by all workers")
    bc.add_argument("--overwrite", action="store_true", help="replace blocks of the same name")
    bc.set_defaults(func=blocks_create)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["emulator"]:  # its own parser, with its own --help
        from prefect_runway.emulator.server import main as emulator_main

        return emulator_main(argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
