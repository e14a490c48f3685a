"""``prefect-runway serve``: a scheduled storyboard and an on-demand image_to_video, served from this
process."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from prefect_runway.cli.common import DEFAULT_BLOCK_NAME, positive, quiet_prefect_env
from prefect_runway.errors import UsageError

__all__ = ["add_parser", "serve", "serve_deployments"]


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


async def _check_serve(args: argparse.Namespace) -> None:
    """The shots file parses and the credentials block exists, before anything is served."""
    from prefect.blocks.core import Block

    from prefect_runway.blocks.credentials import ProviderCredentials
    from prefect_runway.flows.shots import load_shots

    if args.shots and "://" not in args.shots:
        await load_shots(str(Path(args.shots).expanduser()))
    if "/" not in args.credentials:
        raise UsageError(
            f"--credentials: {args.credentials!r} is not a block name; allowed: 'block-type/name', "
            f"e.g. segmind-credentials/{DEFAULT_BLOCK_NAME} (see `prefect-runway blocks create`)"
        )
    try:
        block = await Block.aload(args.credentials)
    except ValueError:
        raise UsageError(
            f"--credentials: no saved block {args.credentials!r}; allowed: a saved credentials "
            "block (create one with `prefect-runway blocks create`)"
        ) from None
    if not isinstance(block, ProviderCredentials):
        raise UsageError(
            f"--credentials: {args.credentials!r} is a {type(block).__name__}; allowed: "
            "segmind-credentials/NAME, aimlapi-credentials/NAME, runway-credentials/NAME"
        )


def serve(args: argparse.Namespace) -> int:
    """Serve the storyboard and image_to_video deployments from this process."""
    quiet_prefect_env()
    asyncio.run(_check_serve(args))
    from prefect import serve as prefect_serve

    prefect_serve(*serve_deployments(args), limit=args.limit)
    return 0


def add_parser(sub: Any) -> None:
    """``prefect-runway serve``."""
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
    s.add_argument("--concurrency", type=positive(int), default=4,
                   help="shots at once (default %(default)s)")
    s.add_argument("--limit", type=positive(int), default=None,
                   help="flow runs at once in this process")
    s.set_defaults(func=serve)
