"""Running the emulator: in a background thread (tests, demos) or in the foreground (CLI)."""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import uvicorn
from pydantic import ValidationError

from .app import build_app
from .backend import Backend
from .clock import Clock
from .config import EmulatorConfig
from .faults import FaultPlan, FaultState

HOST = "127.0.0.1"


def _bind(port: int, host: str = HOST) -> socket.socket:
    if host not in (HOST, "localhost"):
        raise ValueError(f"the emulator binds 127.0.0.1 only, not {host!r}")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _uvicorn_config(app: Any, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=2,
    )


class Emulator:
    """The emulator server on 127.0.0.1, in a background thread.

    Args:
        config: Behaviour (latency, markers, limits, ...). Defaults to `EmulatorConfig()`.
        port: Port to bind on 127.0.0.1; 0 picks a free one (see `port` / `url`).
        clock: Time source for job phases and URL expiry (e.g. `ManualClock` in tests).
        log_level: uvicorn's log level.

    Example:
        ```python
        from prefect_runway.emulator import Emulator, EmulatorConfig

        with Emulator(EmulatorConfig(latency=0.5, video_fps=8)) as emu:
            segmind_base = f"{emu.url}/v1"     # SegmindClient(base_url=...)
            runway_base = emu.url              # RunwayML(base_url=...)
            print(emu.stats())
        ```
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        port: int = 0,
        clock: Clock | None = None,
        log_level: str = "warning",
        faults: FaultPlan | dict[str, Any] | None = None,
    ) -> None:
        self.backend = Backend(config or EmulatorConfig(), clock=clock)
        self.faults = FaultState(self.backend.clock, self.backend)
        if faults is not None:
            self.set_faults(faults)
        self.app = build_app(self.backend, self.faults)
        self._requested_port = port
        self._log_level = log_level
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> Emulator:
        """Start serving; returns once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("emulator already started")
        sock = _bind(self._requested_port)
        self.port = sock.getsockname()[1]
        server = uvicorn.Server(_uvicorn_config(self.app, self._log_level))
        self._server = server
        errors: list[BaseException] = []

        def run() -> None:
            try:
                server.run(sockets=[sock])
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                errors.append(exc)
            finally:
                sock.close()

        self._thread = threading.Thread(target=run, name=f"emulator-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if errors or not self._thread.is_alive():
                raise RuntimeError(f"emulator failed to start: {errors[:1]!r}")
            if time.monotonic() > deadline:
                raise TimeoutError("emulator did not start in time")
            time.sleep(0.005)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and release the port and the media workers (`start` may follow)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._server = None
        self._thread = None
        self.backend.close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> Emulator:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.stop)

    # -- inspection and control --------------------------------------------------------

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT` (no trailing slash)."""
        if self.port is None:
            raise RuntimeError("emulator not started")
        return f"http://{HOST}:{self.port}"

    @property
    def config(self) -> EmulatorConfig:
        return self.backend.config

    def stats(self) -> dict[str, Any]:
        """Per-provider counters (same as `GET /_emulator/stats`)."""
        return self.backend.stats()

    def charges(self) -> list[dict[str, Any]]:
        """Every accepted job's charge (as `GET /_emulator/charges`)."""
        return self.backend.charges()

    def reset(self) -> None:
        """Forget all jobs, media, counters and faults (configuration stays)."""
        self.backend.reset()
        self.faults.set(FaultPlan())

    def configure(self, **changes: Any) -> EmulatorConfig:
        """Change configuration fields at run time; returns the new configuration."""
        return self.backend.configure(**changes)

    def set_faults(self, plan: FaultPlan | dict[str, Any] | None = None, **fields: Any) -> None:
        """Replace the fault plan (a `FaultPlan`, its dict form, or keyword fields)."""
        if plan is None:
            plan = FaultPlan.model_validate(fields)
        elif isinstance(plan, dict):
            plan = FaultPlan.model_validate({**plan, **fields})
        self.faults.set(plan)

    def clear_faults(self) -> None:
        """Inject no more faults."""
        self.faults.set(FaultPlan())


def _print_flushed(line: str) -> None:
    print(line, flush=True)


def run_forever(
    config: EmulatorConfig | None = None,
    port: int = 8765,
    *,
    host: str = HOST,
    log_level: str = "info",
    announce: Callable[[str], object] | None = None,
    faults: FaultPlan | dict[str, Any] | None = None,
) -> None:
    """Serve the emulator on 127.0.0.1:`port` in the foreground until Ctrl-C / SIGTERM.

    Args:
        config: Behaviour; defaults to `EmulatorConfig()`.
        port: Port on 127.0.0.1 (0 picks a free one, which is announced).
        host: Must be "127.0.0.1" (or "localhost"): the emulator never binds elsewhere.
        log_level: uvicorn's log level.
        announce: Called with one line saying where the emulator listens (default: print
            it to stdout, flushed).
        faults: A fault plan in force from the start (see `faults.py`).
    """
    sock = _bind(port, host)
    backend = Backend(config or EmulatorConfig())
    fault_state = FaultState(backend.clock, backend)
    if faults is not None:
        fault_state.set(faults if isinstance(faults, FaultPlan) else FaultPlan.model_validate(faults))
    app = build_app(backend, fault_state)
    url = f"http://{HOST}:{sock.getsockname()[1]}"
    (announce or _print_flushed)(banner(url))
    server = uvicorn.Server(_uvicorn_config(app, log_level))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        backend.close()


def banner(url: str) -> str:
    """Where the emulator listens, and the exact ``base_url`` each credentials block takes."""
    return "\n".join([
        f"prefect-runway emulator on {url}",
        f"  SegmindCredentials(base_url={url!r})   (the segmind SDK: base_url={url + '/v1'!r})",
        f"  AimlapiCredentials(base_url={url!r})",
        f"  RunwayCredentials(base_url={url!r})    (the runwayml SDK: base_url={url!r})",
        f"  stats: {url}/_emulator/stats   faults: POST {url}/_emulator/faults",
    ])


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is out of range; allowed: 0-65535 (0: any free port)")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, not the whole usage
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The emulator's command-line options (reused by `prefect-runway emulator`)."""
    parser = _Parser(
        prog="prefect-runway emulator",
        description="Serve Segmind, AI/ML API and Runway protocols on 127.0.0.1 with real media.",
    )
    parser.add_argument("--port", type=_port, default=8765, help="port on 127.0.0.1 (0: any)")
    parser.add_argument("--latency", type=float, default=None, help="seconds per job")
    parser.add_argument("--latency-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                        default=None, help="draw each job's latency uniformly from LOW..HIGH")
    parser.add_argument("--fail-marker", default=None,
                        help='prompts containing this fail (default "[fail]")')
    parser.add_argument("--expiry", type=float, default=None,
                        help="Segmind result retention, seconds (default 3600)")
    parser.add_argument("--fps", type=int, default=None, help="video frame rate (default 24)")
    parser.add_argument("--api-key", action="append", default=None, dest="api_keys",
                        help="accept only this key (repeatable; default: any key)")
    parser.add_argument("--runway-concurrency", type=int, default=None,
                        help="Runway tasks per key before THROTTLED (default 2)")
    parser.add_argument("--credits", type=float, default=None,
                        help="starting balance of every key on every provider, in the "
                             "provider's unit (default: generous per-provider balances)")
    parser.add_argument("--seed", type=int, default=None, help="seed of random choices")
    parser.add_argument("--media-cache", action="store_true", default=None,
                        help="reuse media made for identical inputs")
    parser.add_argument("--faults", type=json.loads, default=None, metavar="JSON",
                        help='a fault plan from the start, e.g. \'{"random": {"429": 0.1, '
                             '"502": 0.05}, "seed": 1}\' (see faults.py; change it at run time '
                             'with POST /_emulator/faults)')
    parser.add_argument("--rate-limit", type=float, default=None, metavar="RPS",
                        help="requests per second per API key before 429 (with Retry-After)")
    parser.add_argument("--log-level", default="info")
    return parser


def faults_from_args(args: argparse.Namespace) -> FaultPlan | None:
    """The fault plan given by `--faults` and `--rate-limit`, or None."""
    plan = dict(args.faults or {})
    if args.rate_limit is not None:
        plan["rate_limit_per_key"] = args.rate_limit
    return FaultPlan.model_validate(plan) if plan else None


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    """An `EmulatorConfig` from parsed `build_parser()` arguments (unset ones: defaults)."""
    fields = {
        "latency": args.latency,
        "latency_range": tuple(args.latency_range) if args.latency_range else None,
        "fail_marker": args.fail_marker,
        "expiry": args.expiry,
        "video_fps": args.fps,
        "api_keys": frozenset(args.api_keys) if args.api_keys else None,
        "runway_concurrency": args.runway_concurrency,
        "credits": args.credits,
        "seed": args.seed,
        "media_cache": args.media_cache,
    }
    return EmulatorConfig(**{k: v for k, v in fields.items() if v is not None})


def main(argv: Sequence[str] | None = None) -> int:
    """`prefect-runway emulator [--port N] [--latency S] [--fail-marker M] ...`; blocks."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config, faults = config_from_args(args), faults_from_args(args)
    except ValidationError as exc:  # a bad --faults plan or option value: its first problem
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or exc.title
        parser.exit(2, f"{parser.prog}: error: {field}: {first['msg']}\n")
    try:
        run_forever(config, args.port, log_level=args.log_level, faults=faults)
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        parser.exit(2, f"{parser.prog}: error: --port: {args.port} is in use on {HOST}; "
                       "allowed: a free port, or 0 for any free port\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
