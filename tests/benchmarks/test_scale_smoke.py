"""``benchmarks.scale`` at a tiny size: the floor and a storyboard counted through the proxy.

The PostgreSQL server and the three process workers are left out (starting them takes over a
minute on a 2-core machine; ``python -m benchmarks.scale --n 2`` runs them in about 70 s):
here the counting proxy stands in front of this session's Prefect test server. What is
checked is that the clients complete and the proxy saw the storyboard's Prefect API
requests and events, never how fast.
"""

from __future__ import annotations

import pytest

from benchmarks import _common, scale

pytestmark = pytest.mark.timeout(180)


def test_scale_smoke_floor_and_storyboard_counted_by_the_proxy(prefect_harness, monkeypatch):
    from prefect.settings import PREFECT_API_URL

    # Workers talk to the proxy's URL, not straight to the harness's.
    monkeypatch.delitem(_common.WORKER_ENV, "PREFECT_API_URL", raising=False)
    outcome = scale.run(2, latency=0.3, fps=2, warmup=1, workers=0, worker_limit=1, timeout=150,
                        clients=["floor", "storyboard"], log_to_api=True, query_seconds=1.0,
                        server_url=PREFECT_API_URL.value())
    floor, story = outcome["results"]
    assert (floor["client"], floor["ok"]) == ("floor", 2)
    assert (story["client"], story["ok"]) == ("storyboard", 2)
    counts = story["counts"]
    assert counts["http"].get("state transitions", 0) + counts["events"].get("state transitions", 0) > 0
    assert counts["events_total"] > 0 and counts["requests"] > 0
    assert story["refused"] == [] and scale._refusals(counts) == 0
    rows = scale.rows(outcome["results"], workers=0)
    assert len(rows) == 2 and all(len(r) == len(scale.COLUMNS) for r in rows)
    assert rows[1][5] == 0 and rows[1][9] > 0  # refused, messages per generation
