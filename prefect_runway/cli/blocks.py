"""``prefect-runway blocks create``: a credentials block per provider whose key is in the environment."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from prefect_runway.cli.common import (
    DEFAULT_BLOCK_NAME,
    KEY_ENV,
    PROVIDERS,
    Parser,
    positive,
    quiet_prefect_env,
)

__all__ = ["add_parser", "blocks_create"]


def blocks_create(args: argparse.Namespace) -> int:
    """Save a credentials block per provider whose API key is in the environment."""
    quiet_prefect_env()
    from pydantic import SecretStr

    from prefect_runway.blocks import AimlapiCredentials, RunwayCredentials, SegmindCredentials
    from prefect_runway.blocks.credentials import ProviderCredentials

    classes: dict[str, type[ProviderCredentials]] = {
        "segmind": SegmindCredentials, "aimlapi": AimlapiCredentials, "runway": RunwayCredentials,
    }
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


def add_parser(sub: Any) -> None:
    """``prefect-runway blocks create``."""
    b = sub.add_parser("blocks", help="manage the credentials blocks")
    bsub = b.add_subparsers(dest="blocks_command", required=True, parser_class=Parser)
    bc = bsub.add_parser(
        "create", help="save a credentials block for each provider whose key is in the environment "
        "(SEGMIND_API_KEY, AIMLAPI_API_KEY, RUNWAYML_API_SECRET)",
    )
    bc.add_argument("--name", default=DEFAULT_BLOCK_NAME, help="block name (default %(default)s)")
    bc.add_argument("--provider", action="append", choices=PROVIDERS,
                    help="only this provider (repeatable; its key must be set)")
    bc.add_argument("--base-url", help="API base URL (e.g. the emulator's); default: the public API")
    bc.add_argument("--max-requests-per-second", type=positive(float),
                    help="the block's request-rate cap")
    bc.add_argument("--global-rate-limit", help="a Prefect global concurrency limit (with slot "
                    "decay) every request takes a slot of, shared by all workers")
    bc.add_argument("--overwrite", action="store_true", help="replace blocks of the same name")
    bc.set_defaults(func=blocks_create)
