"""The ``prefect-runway`` command: demo, emulator, serve, plan, storyboard, blocks, ledger and
models."""

from __future__ import annotations

import argparse
import sys

from prefect_runway.cli import blocks, demo, ledger, models, serve, storyboard
from prefect_runway.cli.common import Parser, fail
from prefect_runway.errors import UsageError

__all__ = ["build_parser", "main"]

DESCRIPTION = (
    "Runway's generative models as Prefect pipeline steps, on Segmind, AI/ML API or Runway's "
    "own API. Start with `prefect-runway demo`: the image-to-video pipeline, on the built-in "
    "emulator when no API key is set."
)


def emulator(args: argparse.Namespace) -> int:
    """``prefect-runway emulator``: the provider emulator (its own parser and help)."""
    from prefect_runway.emulator.server import main as emulator_main

    return emulator_main(args.emulator_args)


def build_parser() -> argparse.ArgumentParser:
    """The command's parser: each command's arguments are its module's ``add_parser``."""
    from prefect_runway._version import __version__

    parser = Parser(prog="prefect-runway", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"prefect-runway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    demo.add_parser(sub)
    e = sub.add_parser(
        "emulator", add_help=False,
        help="run the provider emulator on 127.0.0.1 (see `prefect-runway emulator --help`)",
    )
    e.add_argument("emulator_args", nargs=argparse.REMAINDER)
    e.set_defaults(func=emulator)
    serve.add_parser(sub)
    storyboard.add_parsers(sub)
    blocks.add_parser(sub)
    ledger.add_parser(sub)
    models.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command; its exit status (2: a usage mistake, 1: the run failed)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["emulator"]:  # its own parser, with its own --help
        from prefect_runway.emulator.server import main as emulator_main

        return emulator_main(argv[1:])
    args = build_parser().parse_args(argv)
    from prefect_runway.errors import InvalidRequest, RunwayError

    try:
        return args.func(args)
    except (UsageError, InvalidRequest) as exc:
        return fail(args.command, str(exc), 2)
    except RunwayError as exc:  # the run failed: say why in one line, no traceback
        return fail(args.command, f"{type(exc).__name__}: {exc}", 1)
    except KeyboardInterrupt:
        return 130
