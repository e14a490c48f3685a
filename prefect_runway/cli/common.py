"""What the commands share: the parser's one-line errors, the environment Prefect is started
in, a run's jobs on show, and the command line's value types."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from prefect_runway.errors import UsageError

__all__ = [
    "DEFAULT_BLOCK_NAME", "KEY_ENV", "PROVIDERS", "Parser", "add_credentials_options",
    "add_emulator_options", "demo_credentials",
    "emulator_option", "fail", "positive", "quiet_prefect_env", "server_settings", "watched",
    "writable_directory",
]

R = TypeVar("R")

KEY_ENV = {"segmind": "SEGMIND_API_KEY", "aimlapi": "AIMLAPI_API_KEY", "runway": "RUNWAYML_API_SECRET"}
PROVIDERS = tuple(KEY_ENV)
DEFAULT_BLOCK_NAME = "default"
#: Seconds Prefect's temporary server may take to start (its default, 20 s, is short on a
#: loaded 2-core machine).
EPHEMERAL_STARTUP_TIMEOUT = "90"


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (the usage is one ``--help`` away)."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def quiet_prefect_env() -> None:
    """Never phone home; give Prefect's temporary server time to start."""
    # The demo and the tests never phone home, and give the temporary server time to start.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY", "false")
    os.environ.setdefault(
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", EPHEMERAL_STARTUP_TIMEOUT
    )


def writable_directory(path: Path, field: str) -> Path:
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


def demo_credentials(provider: str, emulator_url: str | None) -> tuple[Any, bool]:
    """The credentials block for ``provider``: its key from the environment, else the
    emulator's at ``emulator_url`` (None: only to check requests against the public API's
    rules); and whether it is the emulator."""
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


def watched(run: Callable[[], Coroutine[Any, Any, R]], title: str | None = None) -> R:
    """Run a flow in this process with its jobs on show: a live table on a terminal, plain
    lines in a pipe or CI log (:mod:`prefect_runway.cli.live`)."""
    from prefect_runway.cli.live import LiveDisplay

    with server_settings(), LiveDisplay(title=title):
        return asyncio.run(run())


def server_settings() -> Any:
    """Prefect's settings with time for the temporary server to start: Prefect reads its
    environment when imported (before ``quiet_prefect_env`` runs), so it is set here too."""
    from prefect.settings import (
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        get_current_settings,
        temporary_settings,
    )

    current = get_current_settings().server.ephemeral.startup_timeout_seconds
    return temporary_settings({PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: max(
        current, int(EPHEMERAL_STARTUP_TIMEOUT))})


def positive(kind: type) -> Any:
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


def emulator_option(field: str) -> Any:
    """An argparse type: a value of the emulator's ``field`` (:class:`EmulatorConfig`), within
    its bounds, which the message names."""
    def parse(text: str) -> Any:
        from pydantic import ValidationError

        from prefect_runway.emulator.config import EmulatorConfig

        info = EmulatorConfig.model_fields[field]
        value = positive(float if info.annotation is float else int)(text)
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


def add_credentials_options(parser: argparse.ArgumentParser) -> None:
    """``--credentials`` for both steps, ``--image-credentials`` and ``--video-credentials``."""
    parser.add_argument("--credentials",
                        help="saved credentials block for both steps, 'block-type/name'")
    parser.add_argument("--image-credentials", help="saved credentials block for the stills")
    parser.add_argument("--video-credentials", help="saved credentials block for the videos")


def add_emulator_options(parser: argparse.ArgumentParser, when: str) -> None:
    """``--latency`` and ``--fps`` of the built-in emulator, each checked against its bounds;
    ``when`` begins their help (``"emulator"``, ``"with --emulator:"``)."""
    parser.add_argument("--latency", type=emulator_option("latency"), default=2.0,
                        help=f"{when} job latency, seconds")
    parser.add_argument("--fps", type=emulator_option("video_fps"), default=24,
                        help=f"{when} video frame rate (1-60)")


def fail(command: str, message: str, status: int) -> int:
    """Say what went wrong in one line on stderr; return the exit status."""
    print(f"prefect-runway {command}: error: {message}", file=sys.stderr)
    return status
