"""A local stand-in for the Segmind, AI/ML API and Runway APIs that makes real media.

The emulator is a real HTTP server on 127.0.0.1 that speaks each provider's documented
protocol closely enough for the providers' official SDKs to work against it: it validates
requests the way the docs say, queues jobs, expires them, fails the ones asked to fail,
makes real PNG stills and H.264 MP4 videos (the first frame is the input image), serves
them with Range support, injects faults on demand, and counts everything it was asked.

Layout (moto-style: state apart from HTTP):

    config.py    EmulatorConfig - every knob
    clock.py     SystemClock / ManualClock - phases and expiry come from a clock
    backend.py   jobs, scheduling, media store, signed URLs, stats (no HTTP)
    media.py     make_still (Pillow), make_video (PyAV)
    inputs.py    reading input images (data URIs, loopback URLs) and URL rules
    segmind.py, aimlapi.py, runway.py   each protocol's routes and validation tables
    faults.py    FaultPlan and the middleware that injects faults
    app.py       the ASGI app: protocols + /_emulator/* routes
    server.py    Emulator (background thread), run_forever / main (foreground, CLI)

Money and catalogue (see backend.py, runway.py, segmind.py, aimlapi.py): every API key has
a balance per provider (`credits` / `balances`), each accepted job is charged per
`prefect_runway.pricing` (`price_overrides`), failures other than input safety are
refunded; `GET /_emulator/charges` lists the charges. Prompt markers `[unsafe-input]`,
`[unsafe-output]` (`[unsafe-output:N]`), `[internal]` fail jobs with each provider's codes;
`model_concurrency` and `daily_limits` throttle and refuse (429). A fault plan's
`providers` switch makes one provider `unavailable`, `submits_unavailable` or `empty`.

Example:
    ```python
    from prefect_runway.emulator import Emulator, EmulatorConfig

    with Emulator(EmulatorConfig(latency=0.5)) as emu:
        print(emu.url)      # Segmind: f"{emu.url}/v1"; AIMLAPI and Runway: emu.url
    ```
"""

from .backend import Backend, Phase, key_id, request_fingerprint
from .clock import Clock, ManualClock, SystemClock
from .config import EmulatorConfig
from .faults import FaultPlan, ScriptedFault
from .server import Emulator, main, run_forever

__all__ = [
    "Backend",
    "Clock",
    "Emulator",
    "EmulatorConfig",
    "FaultPlan",
    "ManualClock",
    "Phase",
    "ScriptedFault",
    "SystemClock",
    "main",
    "key_id",
    "request_fingerprint",
    "run_forever",
]
