"""``prefect-runway plan`` (check and price a storyboard) and ``prefect-runway storyboard`` (run it)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from prefect_runway.cli.common import (
    KEY_ENV,
    PROVIDERS,
    add_credentials_options,
    add_emulator_options,
    demo_credentials,
    positive,
    quiet_prefect_env,
    server_settings,
    watched,
    writable_directory,
)
from prefect_runway.errors import UsageError

__all__ = ["add_parsers", "plan", "storyboard_run"]


def storyboard_run(args: argparse.Namespace) -> int:
    """``prefect-runway storyboard SHOTS``: run a storyboard in this process, jobs on show."""
    if "://" not in args.shots and not Path(args.shots).is_file():
        raise UsageError(f"shots: {args.shots!r} is not a file; allowed: a JSON, CSV or YAML "
                         "shots file, or s3://bucket/key")
    budget = args.budget
    if budget is not None:
        from prefect_runway.money.budget import Budget

        Budget.parse(budget)  # a bad budget is one line, before anything starts
    if not args.emulator and not (
            args.credentials or (args.image_credentials and args.video_credentials)):
        raise UsageError("--credentials: none given; allowed: a saved credentials block "
                         "'block-type/name' (see `prefect-runway blocks create`), or --emulator")
    from prefect_runway.flows.plan import plan_storyboard
    from prefect_runway.flows.shots import load_shots

    # an invalid shot: one line, nothing started
    shots = asyncio.run(load_shots(args.shots, continuity=args.continuity))
    if args.emulator:  # every shot checked against the provider's rules (pure: no request)
        asyncio.run(plan_storyboard(shots, credentials=demo_credentials(args.provider, None)[0],
                                    source=args.shots, continuity=args.continuity))
    storage = args.storage if "://" in args.storage else str(
        writable_directory(Path(args.storage).resolve(), "--storage"))
    credentials: Any = args.credentials
    emulator = None
    if args.emulator:
        from prefect_runway.emulator import Emulator, EmulatorConfig

        emulator = Emulator(EmulatorConfig(latency=args.latency, video_fps=args.fps))
        emulator.__enter__()
        credentials, _ = demo_credentials(args.provider, emulator.url)
        print(f"storyboard: {args.provider} via the built-in emulator at {emulator.url}")
    quiet_prefect_env()
    from prefect_runway.errors import StoryboardFailed
    from prefect_runway.flows import storyboard

    try:
        summary = watched(lambda: storyboard(
            shots=args.shots, credentials=credentials, image_credentials=args.image_credentials,
            video_credentials=args.video_credentials, storage=storage,
            concurrency=args.concurrency, budget=budget, continuity=args.continuity,
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


def plan(args: argparse.Namespace) -> int:
    """Check and price a storyboard without submitting anything; print the table."""
    quiet_prefect_env()
    with server_settings():
        try:
            return asyncio.run(_plan(args))
        finally:
            if args.credentials or args.image_credentials or args.video_credentials:
                _events_sent()


#: How long ``plan`` waits for the events it emitted to be sent, in seconds.
EVENTS_WAIT_SECONDS = 15.0


def _events_sent() -> None:
    """Wait (bounded) until the events loading a saved block emitted (``...loaded``) are sent,
    so that the temporary server does not stop under them (Prefect's worker then warns
    "Still processing items" as the command exits)."""
    import threading

    from prefect.events.worker import EventsWorker

    waiting = threading.Thread(target=EventsWorker.instance().wait_until_empty, daemon=True)
    waiting.start()
    waiting.join(EVENTS_WAIT_SECONDS)


async def _plan(args: argparse.Namespace) -> int:
    from prefect_runway.flows.plan import plan_storyboard
    from prefect_runway.flows.routing import ShotRouter
    from prefect_runway.flows.shots import load_shots
    from prefect_runway.money.balances import check_balances
    from prefect_runway.money.budget import Budget
    from prefect_runway.money.cost_plan import plan_costs
    from prefect_runway.money.daily import DailyBudgets, utc_day
    from prefect_runway.storage import resolve_storage
    from prefect_runway.tasks.generation import cached_steps

    budget = Budget.parse(args.budget) if args.budget is not None else None
    if "://" not in args.shots and not Path(args.shots).is_file():
        raise UsageError(f"{args.shots}: no such shots file")
    shots = await load_shots(args.shots, continuity=args.continuity)
    credentials: Any = args.credentials
    if not (args.credentials or args.image_credentials or args.video_credentials):
        # No saved block: priced at the provider's public prices, checked against its public
        # API's rules; no key is needed, as nothing is sent (--balance reads one from the
        # environment).
        credentials, keyless = demo_credentials(args.provider, None)
        if args.balance and keyless:
            raise UsageError(f"--balance: no {KEY_ENV[args.provider]} in the environment; "
                             "allowed: set it, or give --credentials 'block-type/name'")
        print(f"Priced at {args.provider}'s prices (no saved block; nothing is sent)",
              file=sys.stderr)
    router = ShotRouter(source=args.shots)
    plans = await plan_storyboard(  # a shot's own fallbacks checked, and used, as the flow does
        shots, credentials=credentials, image_credentials=args.image_credentials,
        video_credentials=args.video_credentials, source=args.shots, router=router.plan_on,
        continuity=args.continuity,
    )
    from prefect_runway.tasks.generation import submission_cache_key, submit_generation

    cost_plan = plan_costs(
        plans, cached=await cached_steps(plans, submission_cache_key, submit_generation),
        routes=[(router.routes[p.row].still, router.routes[p.row].video) for p in plans],
    )
    from prefect_runway.cli.live import print_cost_plan

    print_cost_plan(cost_plan)
    if budget is not None:
        within = budget.check(cost_plan)
        print(f"within the budget of {budget.describe()} ({within:g})")
    blocks = [p.image_credentials for p in plans] + [p.video_credentials for p in plans]
    daily = DailyBudgets.of({id(c): c for c in blocks}.values(), resolve_storage(args.storage))
    if daily:  # each block's daily budget, with what was spent today beside --storage
        spent = await daily.check(cost_plan, plans)
        for folder, entry in sorted(daily.entries.items()):
            print(f"{entry.label}: {spent[folder]:g} spent today ({utc_day()} UTC), "
                  f"within {entry.describe()}")
    if args.balance:
        balances = await check_balances(cost_plan, blocks)
        for provider, balance in sorted(balances.items()):
            print(f"{provider} balance: {balance.credits:g} {balance.unit} (enough)")
    # What the run may spend at worst: beside the table, which scripts read from stdout.
    print("\n".join(cost_plan.worst_case()), file=sys.stderr)
    return 0


def add_parsers(sub: Any) -> None:
    """``prefect-runway plan`` and ``prefect-runway storyboard``."""
    p = sub.add_parser("plan", help="check and price a storyboard: requests to pay per provider "
                       "and model, estimated cost and total; submits nothing")
    p.add_argument("shots", help="shots file (JSON, CSV, YAML; local or s3://)")
    add_credentials_options(p)
    p.add_argument("--provider", choices=PROVIDERS, default="segmind",
                   help="without --credentials: price and check at this provider's public "
                   "prices and rules; no saved block or key needed (default %(default)s)")
    p.add_argument("--budget", help="refuse a plan over this: a number in the provider's unit "
                   "or a currency, e.g. 'USD 5.00' (exit 1)")
    p.add_argument("--balance", action="store_true",
                   help="also read each provider's balance and refuse a plan it cannot pay")
    p.add_argument("--storage", default="runway-outputs",
                   help="the runs' storage: a block's daily_budget is checked against the spend "
                   "recorded there today (UTC) (default ./runway-outputs)")
    add_continuity_option(p)
    p.set_defaults(func=plan)

    sb = sub.add_parser("storyboard", help="run a storyboard in this process, its jobs shown "
                        "live: a still, then a video, per shot")
    sb.add_argument("shots", help="shots file (JSON, CSV, YAML; local or s3://)")
    add_credentials_options(sb)
    sb.add_argument("--emulator", action="store_true",
                    help="run every shot on the built-in emulator (no key, no cost)")
    sb.add_argument("--provider", choices=PROVIDERS, default="segmind",
                    help="with --emulator: the provider it plays (default segmind)")
    sb.add_argument("--storage", default="runway-outputs",
                    help="output directory or s3://bucket/prefix (default %(default)s)")
    sb.add_argument("--concurrency", type=positive(int), default=4,
                    help="shots at once (default %(default)s)")
    sb.add_argument("--budget", help="refuse a plan over this: a number in the provider's unit "
                    "or a currency, e.g. 'USD 5.00'")
    add_continuity_option(sb)
    add_emulator_options(sb, "with --emulator:")
    sb.set_defaults(func=storyboard_run)


def add_continuity_option(parser: Any) -> None:
    """``--continuity``: the storyboard's run.continuity."""
    parser.add_argument("--continuity", action="store_true",
                        help="each shot after the first starts on the previous shot's last "
                        "frame (no still of its own); the shots run one after another")
