"""Daily budgets on credentials blocks: the field, the per-day records, the checks."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import SecretStr, ValidationError

from prefect_runway.blocks import RunwayCredentials, SegmindCredentials
from prefect_runway.errors import InvalidRequest, NotStarted
from prefect_runway.models import Generation, GenerationResult, JobState
from prefect_runway.money.budget import Budget, BudgetGuard
from prefect_runway.money.costs import Cost
from prefect_runway.money.daily import (
    SPEND_FOLDER,
    DailyBudgets,
    block_identity,
    record_spend,
    utc_day,
)


def _creds(**extra):
    return RunwayCredentials(api_key=SecretStr("k"), base_url="http://127.0.0.1:9", **extra)


def _result(job_id: str) -> GenerationResult:
    g = Generation(provider="runway", model="gen4_turbo", kind="video", job_id=job_id,
                   fingerprint="f" * 64, base_url="http://127.0.0.1:9")
    return GenerationResult(generation=g, state=JobState.SUCCEEDED, outputs=["http://x/y.mp4"])


def test_the_block_field_takes_a_budget_and_names_itself_when_it_is_not():
    assert _creds(daily_budget=300).daily_budget == 300
    assert _creds(daily_budget="USD 5").daily_budget == "USD 5"
    assert _creds().daily_budget is None
    for bad in ("lots", -1, "EUR 5"):
        with pytest.raises(ValidationError, match="daily_budget"):
            _creds(daily_budget=bad)
    with pytest.raises(InvalidRequest) as info:
        Budget.parse("lots", field="daily_budget")
    assert info.value.field == "daily_budget"


def test_the_day_is_the_utc_calendar_day():
    late = datetime(2026, 12, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert utc_day(late) == "2026-12-02"
    assert len(utc_day()) == 10


def test_a_block_is_known_by_its_saved_name_else_provider_and_origin():
    creds = _creds(daily_budget=10)
    folder, label = block_identity(creds)
    assert label == "runway at http://127.0.0.1:9" and folder.startswith("runway_at_http_127.0.0.1_9-")
    creds._block_document_name = "nightly"
    assert block_identity(creds)[1] == "runway-credentials/nightly"
    assert block_identity(SegmindCredentials(api_key=SecretStr("k")))[1] == (
        "segmind at https://api.segmind.com")


def test_records_are_per_day_and_block_counted_once_and_summed(tmp_path):
    creds = _creds(daily_budget=100)
    daily = DailyBudgets.of([creds, _creds(), creds], tmp_path)
    assert list(daily.entries) == [block_identity(creds)[0]]
    entry = daily.entry(creds)

    async def run():
        assert await entry.spent() == 0
        assert await record_spend(creds, tmp_path, _result("a"), Cost(25, "credits", False, "x"))
        # The same job again (a re-run reusing it): not counted twice.
        assert not await record_spend(creds, tmp_path, _result("a"), Cost(25, "credits", False, "x"))
        assert await record_spend(creds, tmp_path, _result("b"), Cost(30, "credits", True, "x"))
        # No daily budget on the block: nothing recorded.
        assert not await record_spend(_creds(), tmp_path, _result("c"), Cost(5, "credits", False, "x"))
        assert await entry.spent() == 55
        assert await entry.spent("2000-01-01") == 0
        # A job submitted yesterday (reused today) counts for the day it was paid.
        old = _result("d")
        old.generation.submitted_at = datetime.now(timezone.utc) - timedelta(days=1)
        assert await record_spend(creds, tmp_path, old, Cost(7, "credits", False, "x"))
        assert await entry.spent() == 55
        assert await entry.spent(utc_day(old.generation.submitted_at)) == 7
        # The guard: 55 + 40 fits 100, then 10 more does not (in flight counts).
        guard = BudgetGuard(None, daily)
        first = await guard.admit("runway", Cost(40, "credits", True, "t"), creds, "its video")
        with pytest.raises(NotStarted, match="its still would pass the daily budget of 100"):
            await guard.admit("runway", Cost(10, "credits", True, "t"), creds, "its still")
        await guard.settle("runway", first, None)
        assert entry.in_flight == 0
        await guard.admit("runway", Cost(10, "credits", True, "t"), creds, "its still")

    asyncio.run(run())
    folder = tmp_path / SPEND_FOLDER / utc_day() / block_identity(creds)[0]
    records = sorted(json.loads(p.read_text())["job_id"] for p in folder.glob("*.json"))
    assert records == ["a", "b"]
    assert (tmp_path / "prefect-runway-ledger").exists() is False  # beside it, not inside


def test_an_unreadable_record_is_never_taken_as_zero(tmp_path):
    from prefect_runway.errors import StorageError

    creds = _creds(daily_budget=100)
    entry = DailyBudgets.of([creds], tmp_path).entry(creds)
    folder = tmp_path / SPEND_FOLDER / utc_day() / block_identity(creds)[0]
    folder.mkdir(parents=True)
    (folder / "runway-broken.json").write_text("{not json")
    with pytest.raises(StorageError, match="cannot be read"):
        asyncio.run(entry.spent())


def test_reservations_are_shared_by_every_run_and_each_number_taken_once(tmp_path):
    # Six runs, each its own event loop in its own thread, reserve at once in one block's
    # daily budget of 100: ten reservations of 10 fit, numbered 1 to 10, whoever made them.
    from concurrent.futures import ThreadPoolExecutor

    creds = _creds(daily_budget=100)
    runs = [DailyBudgets.of([creds], tmp_path).entry(creds) for _ in range(6)]

    def run(entry):
        async def reserve_five():
            return [await entry.reserve(Cost(10, "credits", True, "t"), "a video")
                    for _ in range(5)]
        return asyncio.run(reserve_five())

    with ThreadPoolExecutor(len(runs)) as pool:
        made = list(pool.map(run, runs))
    held = {h.seq: (entry, h) for entry, holds in zip(runs, made, strict=True)
            for h in holds if h is not None}
    assert sorted(held) == list(range(1, 11))
    assert sum(entry.in_flight for entry in runs) == 100
    assert asyncio.run(runs[0].committed()) == (0, 100)

    async def settle():
        # Job "a" ended charged 12, its spend recorded: counted once, by its record.
        assert await record_spend(creds, tmp_path, _result("a"), Cost(12, "credits", False, "p"))
        entry, hold = held[1]
        await entry.release(hold, Cost(12, "credits", False, "p"), "a")
        # A job that failed, its charge unknown: its estimate counts (no record is written).
        entry, hold = held[2]
        await entry.release(hold, Cost(10, "credits", True, "estimate"))
        # A submit the provider refused: nothing.
        entry, hold = held[3]
        await entry.release(hold, None)
        assert await runs[0].committed() == (22, 70)
        assert await runs[0].spent() == 12  # the records alone

    asyncio.run(settle())


def test_a_reservation_nobody_released_counts_until_it_expires(tmp_path):
    creds = _creds(daily_budget=30)
    crashed = DailyBudgets.of([creds], tmp_path).entry(creds)
    crashed.hold_seconds = 0.0  # as if its process died long ago
    other = DailyBudgets.of([creds], tmp_path).entry(creds)

    async def run():
        assert await crashed.reserve(Cost(25, "credits", True, "t")) is not None
        assert await other.committed() == (0, 0)  # expired: no longer held
        assert await other.reserve(Cost(25, "credits", True, "t")) is not None
        assert await other.reserve(Cost(10, "credits", True, "t")) is None  # 25 + 10 > 30

    asyncio.run(run())
