"""Session-wide test setup: Prefect never phones home and keeps its state in a temp dir."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

# The benchmarks (``benchmarks/`` beside ``tests/``) are imported by their smoke tests and by
# integration tests that measure memory; ahead of ``tests/`` so ``benchmarks`` is never
# ``tests/benchmarks``, whichever test file is run alone.
ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# Before anything imports prefect: an isolated PREFECT_HOME (results, cache records) and no
# analytics. The Prefect test server itself is the `prefect_harness` fixture, started once.
_home = tempfile.mkdtemp(prefix="prefect-runway-tests-")
os.environ["PREFECT_HOME"] = _home
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")

pytest_plugins = ["prefect_runway.testing.fixtures"]
