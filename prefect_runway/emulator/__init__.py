"""A local stand-in for the Segmind, AI/ML API and Runway APIs that makes real media."""

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
