"""Each benchmark end to end at tiny sizes: the machinery works, the clients complete.

These check what was done (jobs completed, files stored, numbers present), never how fast:
timings belong to ``python -m benchmarks.NAME`` runs on a quiet machine, not to a test.
Workers that run flows use this session's Prefect test server, so no worker starts its own.
"""

from __future__ import annotations

import math

import pytest

from benchmarks import (
    _common,
    batch_overhead,
    downloads,
    orchestrator,
    polling,
    polling_sim,
    rate_limited,
)

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module", autouse=True)
def shared_prefect_server(prefect_harness):
    from prefect.settings import PREFECT_API_URL

    _common.WORKER_ENV["PREFECT_API_URL"] = PREFECT_API_URL.value()
    yield
    _common.WORKER_ENV.pop("PREFECT_API_URL", None)


def test_polling_smoke():
    outcome = polling.run(jobs=2, low=0.5, high=1.0, clients=["segmind-sdk", "ours-segmind"],
                          priors=False)
    sdk = outcome["results"]["segmind-sdk"]["batches"][0]
    cold, warm = outcome["results"]["ours-segmind"]["batches"]
    for summary in (sdk, cold, warm):
        assert (summary["ok"], summary["failed"]) == (2, 0)
        assert summary["status_per_job"] >= 1 and not math.isnan(summary["mean_delay"])
    assert len(polling.verdict(outcome["results"])) == 2
    assert len(outcome["rows"]) == 3


def test_rate_limited_smoke():
    outcome = rate_limited.run(jobs=6, rate=5.0, low=0.3, high=0.6, clients=["ours-segmind"],
                               timeout=120, priors=False)
    summary = outcome["results"]["ours-segmind"]["summary"]
    assert (summary["completed"], summary["failed"]) == (6, 0)
    assert rate_limited.verdict(outcome["results"], 6) == [
        "ours, Segmind protocol (10 req/s default): 6 of 6 completed, 0 failed (met)"
    ]


def test_batch_overhead_smoke():
    outcome = batch_overhead.run([3], latency=0.5, fps=2, warmup=1, timeout=180,
                                 clients=["floor", "storyboard"], flows_max=0, big_fps=None)
    rows = {r["client"]: r for r in outcome["results"]}
    assert rows["floor"]["ok"] == rows["storyboard"]["ok"] == 3
    assert rows["floor"]["stored_mb"] == rows["storyboard"]["stored_mb"] > 0
    assert rows["storyboard"]["ratio"] > 0


def test_downloads_smoke():
    outcome = downloads.run(4 * downloads.MiB, repeat=1, targets=["raw", "local", "s3"], timeout=180)
    results = outcome["results"]
    assert set(results) == {"raw", "local", "s3"}
    for result in results.values():
        assert result["size"] == 4 * downloads.MiB and result["mib_per_s"] > 0
    assert len(downloads.verdict(results)) == 2


def test_downloads_smoke_the_bare_pipe_to_s3_is_measured_beside_ours():
    outcome = downloads.run(4 * downloads.MiB, repeat=1, targets=["s3", "s3-upload", "s3-pipe"],
                            timeout=180)
    results = outcome["results"]
    assert results["s3-pipe"]["floor"] == results["s3"]["floor"] == "s3-upload"
    for result in results.values():
        assert result["client_cpu_seconds"] > 0 and result["moto_cpu_seconds"] > 0
    pipe = [line for line in downloads.verdict(results) if line.startswith("s3-pipe:")]
    assert len(pipe) == 1 and "ours" in pipe[0]


def test_a_benchmark_command_prints_its_table_and_writes_json(tmp_path, monkeypatch, capsys):
    import json

    monkeypatch.setattr(_common, "RESULTS", tmp_path)
    assert downloads.main(["--mib", "2", "--repeat", "1", "--targets", "raw", "local",
                           "--capped", "0", "--name", "smoke"]) == 0
    printed = capsys.readouterr().out
    written = json.loads((tmp_path / "smoke.json").read_text())
    assert written["command"] == ("python -m benchmarks.downloads --mib 2 --repeat 1 --targets raw "
                                  "local --capped 0 --name smoke")
    assert written["table"] in printed and "ours -> local disk" in written["table"]
    assert written["verdict"] and written["verdict"][0] in printed
    assert written["machine"]["cores"] >= 1 and "load_average_after" in written["machine"]


def test_polling_sim_smoke():
    outcome = polling_sim.run(trials=1, jobs=10, low=20.0, high=40.0)
    assert len(outcome["rows"]) == 1 + 2 * len(polling_sim.VARIANTS)
    shipped = outcome["results"]["shipped (poll_cost 0.03)|warm"]
    assert 0 <= shipped["mean_delay"] <= shipped["p95_delay"]
    assert 1 <= shipped["polls_per_job"] < outcome["sdk"]["polls_per_job"]


def test_orchestrator_smoke():
    """One configuration (a storyboard of 2 shots with a global rate limit), counted, with
    its allocations traced."""
    with _common.EmulatorProcess(latency=0.3, stock_media=True, video_fps=2) as emulator:
        result = orchestrator.run_one("storyboard", 2, True, emulator.url, timeout=200, trace=5)
    assert "error" not in result, result.get("error")
    assert result["ok"] == 2 and result["requests"] > 0 and result["events"] > 0
    assert result["by_kind"]["concurrency"] >= 1 and result["per_generation"] > 0
    assert len(orchestrator.row(result)) == len(orchestrator.COLUMNS)
    memory = result["memory"]
    assert memory["traced_growth_kb_per_chain"] > 0
    assert 1 <= len(memory["sites"]) <= 5 and all(":" in s["site"] for s in memory["sites"])
    assert {p["package"] for p in memory["packages"]} & {"prefect", "pydantic", "httpx"}


def test_imports_smoke():
    """One fresh interpreter per import: every row timed, and a flow run's imports leave
    boto3, prefect-aws, PyAV and Pillow out."""
    from benchmarks import imports

    rows = {row[0]: row for row in imports.measure(1)}
    assert list(rows) == list(imports.STATEMENTS)
    assert all(row[1] >= 0 and row[3] > 0 for row in rows.values())
    assert rows["prefect_runway.flows, .tasks (a flow run)"][5] == "none"
    assert rows["prefect (the floor)"][4] == 1.0
    assert all(row[6] >= 0 for row in rows.values()) and rows["prefect (the floor)"][6] > 0  # CPU s
