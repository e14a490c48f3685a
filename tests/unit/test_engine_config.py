"""The engine's explicit config: the user agent from the one version, timeouts and limits
reaching the httpx client, and the httpx log filter installed when a client is made."""

from __future__ import annotations

import subprocess
import sys

import httpx
from pydantic import SecretStr

import prefect_runway
from prefect_runway.engine import ConnectionLimits, EngineConfig, GenerationClient, Timeouts
from prefect_runway.engine.config import USER_AGENT
from prefect_runway.providers.segmind import SegmindProvider


def test_user_agent_names_the_package_version():
    assert USER_AGENT == f"prefect-runway/{prefect_runway.__version__}"


async def test_config_reaches_the_http_client():
    config = EngineConfig(timeouts=Timeouts(total=7.0, connect=2.0),
                          limits=ConnectionLimits(max_connections=3, max_keepalive=1))
    async with GenerationClient(SegmindProvider(), SecretStr("k"), config=config) as client:
        assert client.http.timeout == httpx.Timeout(7.0, connect=2.0)
        assert client.http.headers["user-agent"] == USER_AGENT
        pool = client.http._transport._pool  # httpx keeps the limits on its pool
        assert pool._max_connections == 3 and pool._max_keepalive_connections == 1


def test_the_log_filter_is_installed_by_a_client_not_by_an_import():
    code = (
        "import logging\n"
        "from pydantic import SecretStr\n"
        "from prefect_runway.engine import GenerationClient\n"
        "from prefect_runway.providers.segmind import SegmindProvider\n"
        "log = logging.getLogger('httpx')\n"
        "before = len(log.filters)\n"
        "GenerationClient(SegmindProvider(), SecretStr('k'))\n"
        "GenerationClient(SegmindProvider(), SecretStr('k'))\n"
        "print(before, len(log.filters))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=60)
    assert out.stdout.split() == ["0", "1"]
