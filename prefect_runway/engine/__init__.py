"""The one HTTP engine: config, transport, the retry loop, downloads, and the client facade.

Imports nothing from Prefect; a provider's translation (:mod:`prefect_runway.providers`)
says what to send, this package sends it.
"""

from prefect_runway.engine.client import GenerationClient
from prefect_runway.engine.config import ConnectionLimits, EngineConfig, RetryPolicy, Timeouts
from prefect_runway.engine.download import DownloadedFile
from prefect_runway.engine.polling import PollSchedule

__all__ = [
    "ConnectionLimits", "DownloadedFile", "EngineConfig", "GenerationClient", "PollSchedule",
    "RetryPolicy", "Timeouts",
]
