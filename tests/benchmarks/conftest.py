"""The benchmarks live in ``benchmarks/`` at the repository root, beside ``tests/``."""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
