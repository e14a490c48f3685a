"""``benchmarks.scale`` at a tiny size: the floor, a storyboard, and Prefect's empty flow and
ours as flow runs on one process worker, counted through the proxy.

The PostgreSQL server is left out (``python -m benchmarks.scale --n 2`` runs it): here the
counting proxy stands in front of this session's Prefect test server. What is checked is that
the clients complete, the proxy saw their Prefect API requests and events, and each flow run's
time was split (its states and its process's timing hook), never how fast.
"""

from __future__ import annotations

import pytest

from benchmarks import _common, scale

pytestmark = pytest.mark.timeout(420)


def test_scale_smoke_every_client_counted_by_the_proxy(prefect_harness, monkeypatch):
    from prefect.settings import PREFECT_API_URL

    # Workers talk to the proxy's URL, not straight to the harness's.
    monkeypatch.delitem(_common.WORKER_ENV, "PREFECT_API_URL", raising=False)
    outcome = scale.run(2, latency=0.3, fps=2, warmup=1, workers=1, worker_limit=2, timeout=240,
                        clients=["floor", "storyboard", "empty", "separate"], log_to_api=True,
                        query_seconds=1.0, server_url=PREFECT_API_URL.value())
    floor, story, empty, ours = outcome["results"]
    assert (floor["client"], floor["ok"]) == ("floor", 2)
    assert (story["client"], story["ok"]) == ("storyboard", 2)
    counts = story["counts"]
    assert counts["http"].get("state transitions", 0) + counts["events"].get("state transitions", 0) > 0
    assert counts["events_total"] > 0 and counts["requests"] > 0
    assert story["refused"] == [] and scale._refusals(counts) == 0
    rows = scale.rows(outcome["results"], workers=1)
    assert len(rows) == 4 and all(len(r) == len(scale.COLUMNS) for r in rows)
    assert rows[1][5] == 0 and rows[1][9] > 0  # refused, messages per generation

    # Prefect's empty flow and ours, each run twice by the worker, each run's time split.
    assert (empty["client"], empty["ok"], ours["client"], ours["ok"]) == ("empty", 2, "separate", 2)
    for run in (empty, ours):
        split = run["split"]
        assert split["timed"] == 2, run["history"]
        assert split["median"]["imports: prefect"] > 0 and split["median"]["interpreters start"] > 0
        assert split["median"]["Pending -> exit"] >= split["median"]["flow body less block loads"]
        assert run["counts"]["http"].get("state transitions", 0) >= 2 * 2
    assert empty["split"]["median"]["imports: ours"] == 0 == empty["split"]["median"]["block loads"]
    assert ours["split"]["median"]["imports: ours"] > 0 and ours["split"]["median"]["block loads"] > 0
    split_rows = scale.split_rows(outcome["results"])
    assert [r[0] for r in split_rows] == ["empty", "separate"]
    assert all(len(r) == len(scale.SPLIT_COLUMNS) for r in split_rows)
    assert split_rows[0][3] == 1.0 and split_rows[1][3] > 0  # x empty
