"""The ``prefect-runway`` command: demo, emulator, serve, blocks create and ledger.

A mistake on the command line (a bad value, a missing file, a busy port, an unknown block) is
one line on stderr naming the field and what is allowed, with exit status 2, before anything
starts: no emulator, no Prefect server, no request.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shlex
import sys
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

R = TypeVar("R")

KEY_ENV = {"segmind": "SEGMIND_API_KEY", "aimlapi": "AIMLAPI_API_KEY", "runway": "RUNWAYML_API_SECRET"}
PROVIDERS = tuple(KEY_ENV)
# A public reference image (from Segmind's own gen4-image example); the emulator does not
# fetch reference images, the real APIs do.
DEMO_REFERENCE = {
    "uri": "https://segmind-inference-inputs.s3.amazonaws.com/c226e2cf-49ea-4b8d-a630-9847c0efbbce-Beach-walk.png",
    "tag": "model",
}


DESCRIPTION = (
    "Runway's generative models as Prefect pipeline steps, on Segmind, AI/ML API or Runway's "
    "own API. Start with `prefect-runway demo`: the image-to-video pipeline, on the built-in "
    "emulator when no API key is set."
)
#: Seconds Prefect's temporary server may take to start (its default, 20 s, is short on a
#: loaded 2-core machine).
EPHEMERAL_STARTUP_TIMEOUT = "90"


class UsageError(Exception):
    """A mistake on the command line: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (the usage is one ``--help`` away)."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _quiet_prefect_env() -> None:
    # The demo and the tests never phone home, and give the temporary server time to start.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY", "false")
    os.environ.setdefault(
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", EPHEMERAL_STARTUP_TIMEOUT
    )


def _writable_directory(path: Path, field: str) -> Path:
    """Create ``path`` if needed and prove it writable with a temporary file."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".prefect-runway-probe-"):
            pass
    except OSError as exc:
        raise UsageError(
            f"{field}: {str(path)!r} is not a writable directory ({exc.strerror or exc}); "
            "allowed: a directory you can write to"
        ) from None
    return path


def _demo_plan(args: argparse.Namespace) -> tuple[str, str]:
    """The demo's two providers, with both requests checked against them (pure, no I/O)."""
    from prefect_runway.errors import InvalidRequest
    from prefect_runway.models import ImageRequest, VideoRequest
    from prefect_runway.names import check_name

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
        credentials, _ = _credentials(provider, None)
        try:
            credentials.provider().prepare(request, credentials.resolved_base_url())
        except InvalidRequest as exc:
            raise UsageError(f"the {role}'s {exc}") from None
    return image_provider, video_provider


def _credentials(provider: str, emulator_url: str | None):
    from pydantic import SecretStr

    from prefect_runway.blocks import AimlapiCredentials, RunwayCredentials, SegmindCredentials

    cls = {"segmind": SegmindCredentials, "aimlapi": AimlapiCredentials, "runway": RunwayCredentials}[provider]
    key = os.environ.get(KEY_ENV[provider])
    if key:
        return cls(api_key=SecretStr(key)), False
    if emulator_url is None:  # only checking requests: the public API's rules
        return cls(api_key=SecretStr("emulator-key")), True
    return (
        cls(api_key=SecretStr("emulator-key"), base_url=emulator_url, poll_interval_seconds=0.5,
            max_poll_interval_seconds=2.0),
        True,
    )


def demo(args: argparse.Namespace) -> int:
    # Everything the user typed is checked before anything starts.
    image_provider, video_provider = _demo_plan(args)
    storage = args.storage or str(_writable_directory(Path(args.output).resolve(), "--output"))
    _quiet_prefect_env()
    from prefect_runway.emulator import Emulator, EmulatorConfig
    from prefect_runway.flows import image_to_video

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
        result = _watched(lambda: image_to_video(
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


def _watched(run: Callable[[], Coroutine[Any, Any, R]], title: str | None = None) -> R:
    """Run a flow in this process with its jobs on show: a live table on a terminal, plain
    lines in a pipe or CI log (:mod:`prefect_runway.live`)."""
    from prefect_runway.live import LiveDisplay

    with _server_settings(), LiveDisplay(title=title):
        return asyncio.run(run())


def _server_settings() -> Any:
    """Prefect's settings with time for the temporary server to start: Prefect reads its
    environment when imported (before ``_quiet_prefect_env`` runs), so it is set here too."""
    from prefect.settings import (
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        get_current_settings,
        temporary_settings,
    )

    current = get_current_settings().server.ephemeral.startup_timeout_seconds
    return temporary_settings({PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: max(
        current, int(EPHEMERAL_STARTUP_TIMEOUT))})


def storyboard_run(args: argparse.Namespace) -> int:
    """``prefect-runway storyboard SHOTS``: run a storyboard in this process, jobs on show."""
    if "://" not in args.shots and not Path(args.shots).is_file():
        raise UsageError(f"shots: {args.shots!r} is not a file; allowed: a JSON, CSV or YAML "
                         "shots file, or s3://bucket/key")
    budget = args.budget
    if budget is not None:
        from prefect_runway.costs import Budget

        Budget.parse(budget)  # a bad budget is one line, before anything starts
    if not args.emulator and not (
            args.credentials or (args.image_credentials and args.video_credentials)):
        raise UsageError("--credentials: none given; allowed: a saved credentials block "
                         "'block-type/name' (see `prefect-runway blocks create`), or --emulator")
    from prefect_runway.plan import plan_storyboard
    from prefect_runway.shots import load_shots

    shots = asyncio.run(load_shots(args.shots))  # an invalid shot: one line, nothing started
    if args.emulator:  # every shot checked against the provider's rules (pure: no request)
        asyncio.run(plan_storyboard(shots, credentials=_credentials(args.provider, None)[0],
                                    source=args.shots))
    storage = args.storage if "://" in args.storage else str(
        _writable_directory(Path(args.storage).resolve(), "--storage"))
    credentials: Any = args.credentials
    emulator = None
    if args.emulator:
        from prefect_runway.emulator import Emulator, EmulatorConfig

        emulator = Emulator(EmulatorConfig(latency=args.latency, video_fps=args.fps))
        emulator.__enter__()
        credentials, _ = _credentials(args.provider, emulator.url)
        print(f"storyboard: {args.provider} via the built-in emulator at {emulator.url}")
    _quiet_prefect_env()
    from prefect_runway.errors import StoryboardFailed
    from prefect_runway.flows import storyboard

    try:
        summary = _watched(lambda: storyboard(
            shots=args.shots, credentials=credentials, image_credentials=args.image_credentials,
            video_credentials=args.video_credentials, storage=storage,
            concurrency=args.concurrency, budget=budget,
        ), title="storyboard")
    except StoryboardFailed as failed:  # the doubts' commands, then the one line
        for doubt in getattr(failed.summary, "doubts", ()):
            print(f"In doubt: {doubt.name or 'a shot'}'s {doubt.model} submit (fingerprint "
                  f"{doubt.reference}); check the {doubt.provider} dashboard, then: "
                  + (f"{doubt.adopt_command}  (or clear it: " if doubt.adopt_command else "(")
                  + f"{doubt.clear_command})")
        raise
    finally:
        if emulator is not None:
            emulator.__exit__(None, None, None)
    print(summary.describe())  # type: ignore[union-attr]  # not a dry run: a summary
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
    from prefect_runway.shots import load_shots

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
    _quiet_prefect_env()
    asyncio.run(_check_serve(args))
    from prefect import serve as prefect_serve

    prefect_serve(*serve_deployments(args), limit=args.limit)
    return 0


def plan(args: argparse.Namespace) -> int:
    """Check and price a storyboard without submitting anything; print the table."""
    _quiet_prefect_env()
    with _server_settings():
        return asyncio.run(_plan(args))


async def _plan(args: argparse.Namespace) -> int:
    from prefect_runway.costs import Budget, cached_steps, check_balances, plan_costs
    from prefect_runway.fallback import ShotRouter
    from prefect_runway.plan import plan_storyboard
    from prefect_runway.shots import load_shots
    from prefect_runway.spend import DailyBudgets, utc_day
    from prefect_runway.storage import resolve_storage

    budget = Budget.parse(args.budget) if args.budget is not None else None
    if "://" not in args.shots and not Path(args.shots).is_file():
        raise UsageError(f"{args.shots}: no such shots file")
    shots = await load_shots(args.shots)
    router = ShotRouter(source=args.shots)
    plans = await plan_storyboard(  # a shot's own fallbacks checked, and used, as the flow does
        shots, credentials=args.credentials, image_credentials=args.image_credentials,
        video_credentials=args.video_credentials, source=args.shots, router=router.plan_on,
    )
    from prefect_runway.tasks.generation import submission_cache_key, submit_generation

    cost_plan = plan_costs(
        plans, cached=await cached_steps(plans, submission_cache_key, submit_generation),
        routes=[(router.routes[p.row].still, router.routes[p.row].video) for p in plans],
    )
    from prefect_runway.live import print_cost_plan

    print_cost_plan(cost_plan)
    if budget is not None:
        within = budget.check(cost_plan)
        print(f"within the budget of {budget.describe()} ({within:g})")
    credentials = [p.image_credentials for p in plans] + [p.video_credentials for p in plans]
    daily = DailyBudgets.of({id(c): c for c in credentials}.values(), resolve_storage(args.storage))
    if daily:  # each block's daily budget, with what was spent today beside --storage
        spent = await daily.check(cost_plan, plans)
        for folder, entry in sorted(daily.entries.items()):
            print(f"{entry.label}: {spent[folder]:g} spent today ({utc_day()} UTC), "
                  f"within {entry.describe()}")
    if args.balance:
        balances = await check_balances(cost_plan, credentials)
        for provider, balance in sorted(balances.items()):
            print(f"{provider} balance: {balance.credits:g} {balance.unit} (enough)")
    # What the run may spend at worst: beside the table, which scripts read from stdout.
    print("\n".join(cost_plan.worst_case()), file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from prefect_runway._version import __version__

    parser = _Parser(prog="prefect-runway", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"prefect-runway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

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
    d.add_argument("--latency", type=_emulator_option("latency"), default=2.0,
                   help="emulator job latency, seconds")
    d.add_argument("--fps", type=_emulator_option("video_fps"), default=24,
                   help="emulator video frame rate (1-60)")
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
    s.add_argument("--concurrency", type=_positive(int), default=4,
                   help="shots at once (default %(default)s)")
    s.add_argument("--limit", type=_positive(int), default=None,
                   help="flow runs at once in this process")
    s.set_defaults(func=serve)

    p = sub.add_parser("plan", help="check and price a storyboard: requests to pay per provider "
                       "and model, estimated cost and total; submits nothing")
    p.add_argument("shots", help="shots file (JSON, CSV, YAML; local or s3://)")
    p.add_argument("--credentials", help="saved credentials block for both steps, 'block-type/name'")
    p.add_argument("--image-credentials", help="saved credentials block for the stills")
    p.add_argument("--video-credentials", help="saved credentials block for the videos")
    p.add_argument("--budget", help="refuse a plan over this: a number in the provider's unit "
                   "or a currency, e.g. 'USD 5.00' (exit 1)")
    p.add_argument("--balance", action="store_true",
                   help="also read each provider's balance and refuse a plan it cannot pay")
    p.add_argument("--storage", default="runway-outputs",
                   help="the runs' storage: a block's daily_budget is checked against the spend "
                   "recorded there today (UTC) (default ./runway-outputs)")
    p.set_defaults(func=plan)

    sb = sub.add_parser("storyboard", help="run a storyboard in this process, its jobs shown "
                        "live: a still, then a video, per shot")
    sb.add_argument("shots", help="shots file (JSON, CSV, YAML; local or s3://)")
    sb.add_argument("--credentials", help="saved credentials block for both steps, 'block-type/name'")
    sb.add_argument("--image-credentials", help="saved credentials block for the stills")
    sb.add_argument("--video-credentials", help="saved credentials block for the videos")
    sb.add_argument("--emulator", action="store_true",
                    help="run every shot on the built-in emulator (no key, no cost)")
    sb.add_argument("--provider", choices=PROVIDERS, default="segmind",
                    help="with --emulator: the provider it plays (default segmind)")
    sb.add_argument("--storage", default="runway-outputs",
                    help="output directory or s3://bucket/prefix (default %(default)s)")
    sb.add_argument("--concurrency", type=_positive(int), default=4,
                    help="shots at once (default %(default)s)")
    sb.add_argument("--budget", help="refuse a plan over this: a number in the provider's unit "
                    "or a currency, e.g. 'USD 5.00'")
    sb.add_argument("--latency", type=_emulator_option("latency"), default=2.0,
                    help="with --emulator: job latency, seconds")
    sb.add_argument("--fps", type=_emulator_option("video_fps"), default=24,
                    help="with --emulator: video frame rate (1-60)")
    sb.set_defaults(func=storyboard_run)

    b = sub.add_parser("blocks", help="manage the credentials blocks")
    bsub = b.add_subparsers(dest="blocks_command", required=True, parser_class=_Parser)
    bc = bsub.add_parser(
        "create", help="save a credentials block for each provider whose key is in the environment "
        "(SEGMIND_API_KEY, AIMLAPI_API_KEY, RUNWAYML_API_SECRET)",
    )
    bc.add_argument("--name", default=DEFAULT_BLOCK_NAME, help="block name (default %(default)s)")
    bc.add_argument("--provider", action="append", choices=PROVIDERS,
                    help="only this provider (repeatable; its key must be set)")
    bc.add_argument("--base-url", help="API base URL (e.g. the emulator's); default: the public API")
    bc.add_argument("--max-requests-per-second", type=_positive(float),
                    help="the block's request-rate cap")
    bc.add_argument("--global-rate-limit", help="a Prefect global concurrency limit (with slot "
                    "decay) every request takes a slot of, shared by all workers")
    bc.add_argument("--overwrite", action="store_true", help="replace blocks of the same name")
    bc.set_defaults(func=blocks_create)

    led = sub.add_parser("ledger", help="the submission ledger: what was paid for, what is in doubt")
    lsub = led.add_subparsers(dest="ledger_command", required=True, parser_class=_Parser)
    storage_help = ("the storage the runs wrote to: a directory or s3://bucket/prefix "
                    "(default %(default)s, the flows' default)")
    ll = lsub.add_parser("ls", help="list recorded submissions (jobs, doubts, cleared)")
    ll.add_argument("--doubts", action="store_true", help="only submissions whose outcome is unknown")
    ll.add_argument("--storage", default="runway-outputs", help=storage_help)
    ll.set_defaults(func=ledger_ls)
    lr = lsub.add_parser("resolve", help="settle a doubt after checking the provider's "
                         "dashboard: adopt the job it shows (--job), or clear it")
    lr.add_argument("fingerprint", help="the fingerprint (or its first characters) from `ledger ls`")
    lr.add_argument("--job", help="the job the provider's dashboard shows for this submission: "
                    "it is checked with one status read, then the next run continues with it "
                    "and pays nothing; without --job the doubt is cleared and the next run "
                    "submits again (a new, billed job)")
    lr.add_argument("--credentials", help="with --job: the saved credentials block the "
                    "submission was sent with, 'block-type/name' (default: "
                    f"<provider>-credentials/{DEFAULT_BLOCK_NAME}, e.g. "
                    f"segmind-credentials/{DEFAULT_BLOCK_NAME})")
    lr.add_argument("--storage", default="runway-outputs", help=storage_help)
    lr.set_defaults(func=ledger_resolve)
    return parser


def _ledger(args: argparse.Namespace) -> Any:
    """The ledger of ``--storage``; a local storage that does not exist is a mistake (a
    typo would otherwise read as an empty ledger)."""
    from prefect_runway.ledger import ledger_of
    from prefect_runway.storage import LocalStorage, resolve_storage

    storage = resolve_storage(args.storage)
    if isinstance(storage, LocalStorage) and not storage.root.is_dir():
        raise UsageError(
            f"--storage: {args.storage!r} is not a directory ({storage.root} does not exist); "
            "allowed: the directory or s3://bucket/prefix the runs wrote to"
        )
    return ledger_of(storage)


def ledger_ls(args: argparse.Namespace) -> int:
    """``prefect-runway ledger ls``: the submissions recorded with a storage (or its doubts)."""
    from prefect_runway.errors import StorageError
    from prefect_runway.ledger import LedgerError, format_ledger

    ledger = _ledger(args)
    try:
        records = asyncio.run(ledger.list(doubts_only=args.doubts))
    except (LedgerError, StorageError) as exc:
        raise UsageError(f"--storage: {exc}") from None
    if args.doubts and not records:
        print("No submissions in doubt.")
        return 0
    print(format_ledger(records))
    if any(getattr(r, "state", "intent") == "intent" for r in records):  # doubts, unreadable
        storage = shlex.quote(ledger.backend.storage)
        print(f"\nSettle a doubt once the provider's dashboard was checked: adopt the job it "
              f"shows with `prefect-runway ledger resolve FINGERPRINT --job JOB_ID --storage "
              f"{storage}` (the next run continues with it and pays nothing), or clear it with "
              f"`prefect-runway ledger resolve FINGERPRINT --storage {storage}` (the next run "
              "submits again).")
    return 0


def ledger_resolve(args: argparse.Namespace) -> int:
    """``prefect-runway ledger resolve FINGERPRINT [--job JOB_ID]``: settle a doubt once the
    provider's dashboard was checked: adopt the job it shows (the next run continues with
    it), or clear it (the next run submits again)."""
    from prefect_runway.errors import StorageError
    from prefect_runway.ledger import LedgerAmbiguous, LedgerError

    if args.credentials and not args.job:
        raise UsageError("--credentials: only read with --job (to check the job); allowed: "
                         "--job JOB_ID --credentials block-type/name, or neither")
    ledger = _ledger(args)
    try:
        if args.job is not None:
            return _adopt(args, ledger)
        cleared = asyncio.run(ledger.resolve(args.fingerprint))
    except LedgerAmbiguous as exc:
        raise UsageError(f"fingerprint: {exc}; allowed: {', '.join(m[:16] for m in exc.matches)}") from None
    except (LedgerError, StorageError) as exc:
        raise UsageError(f"fingerprint: {exc}") from None
    for record in cleared:
        print(f"Resolved {record.fingerprint[:16]} ({record.provider} {record.model}, sent "
              f"{record.created_at:%Y-%m-%d %H:%M:%SZ}): the next run submits it again")
    return 0


def _adopt(args: argparse.Namespace, ledger: Any) -> int:
    """``ledger resolve FP --job JOB_ID``: the job checked with one status read through the
    saved credentials block the record's provider needs, then recorded as the submission's."""
    from prefect_runway.ledger import LedgerRecord
    from prefect_runway.plan import load_credentials

    if not args.job.strip():
        raise UsageError("--job: is empty; allowed: the job id the provider's dashboard shows")

    async def adopt() -> Any:
        records = [r for r in await ledger.doubts(args.fingerprint) if isinstance(r, LedgerRecord)]
        name = args.credentials or (
            f"{records[0].provider}-credentials/{DEFAULT_BLOCK_NAME}" if records else "")
        credentials = await load_credentials(name, "--credentials") if records else None
        return await ledger.adopt(args.fingerprint, args.job, credentials)

    _quiet_prefect_env()  # the block is read through the Prefect API
    with _server_settings():
        job, status = asyncio.run(adopt())
    print(f"Adopted {job.provider} job {job.job_id} for {job.fingerprint[:16]} ({job.model}, "
          f"sent {job.created_at:%Y-%m-%d %H:%M:%SZ}); {job.provider} says it is "
          f"{status.raw_status or status.state.value}. The next run continues with it and pays "
          "nothing.")
    return 0


def _positive(kind: type) -> Any:
    """An argparse type: a finite number above 0 (``nan`` and ``inf`` are refused)."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not 0 < value < math.inf:
            raise argparse.ArgumentTypeError(f"{text!r}: allowed: a number above 0")
        return value

    return parse


def _emulator_option(field: str) -> Any:
    """An argparse type: a value of the emulator's ``field`` (:class:`EmulatorConfig`), within
    its bounds, which the message names."""
    def parse(text: str) -> Any:
        from pydantic import ValidationError

        from prefect_runway.emulator.config import EmulatorConfig

        info = EmulatorConfig.model_fields[field]
        value = _positive(float if info.annotation is float else int)(text)
        try:
            EmulatorConfig(**{field: value})
        except ValidationError:
            def bound(*names: str) -> Any:
                return next((getattr(m, n) for m in info.metadata for n in names
                             if hasattr(m, n)), None)

            low, high = bound("ge", "gt") or 0, bound("le", "lt")
            raise argparse.ArgumentTypeError(
                f"{text!r} is out of range; allowed: {low}-{high}" if high is not None
                else f"{text!r}: allowed: a number above {low}") from None
        return value

    return parse


def _fail(command: str, message: str, status: int) -> int:
    print(f"prefect-runway {command}: error: {message}", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["emulator"]:  # its own parser, with its own --help
        from prefect_runway.emulator.server import main as emulator_main

        return emulator_main(argv[1:])
    args = build_parser().parse_args(argv)
    from prefect_runway.errors import InvalidRequest, RunwayError

    try:
        return args.func(args)
    except (UsageError, InvalidRequest) as exc:
        return _fail(args.command, str(exc), 2)
    except RunwayError as exc:  # the run failed: say why in one line, no traceback
        return _fail(args.command, f"{type(exc).__name__}: {exc}", 1)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
