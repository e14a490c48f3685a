"""When a Segmind submit's charge is provable from the balance around it (engine/credits.py)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from prefect_runway.engine.credits import CreditBook, credit_book_for
from prefect_runway.providers import get_provider


def test_a_lone_submit_after_a_balance_read_is_charged_the_difference():
    book = CreditBook()
    book.reading(10.0)
    ticket = book.begin()
    assert book.answered(ticket, "a", 9.93) == pytest.approx(0.07)
    # The next submit's baseline is that header, once the job was seen to succeed.
    assert book.answered(book.begin(), "b", 9.6) is None  # "a" still open: ambiguous
    book.finished("a", succeeded=True)
    book.finished("b", succeeded=True)
    assert book.answered(book.begin(), "c", 9.5) is None  # b's header was taken while a ran


def test_consecutive_headers_chain_when_each_job_ends_first():
    book = CreditBook()
    book.reading(1.0)
    assert book.answered(book.begin(), "still", 0.95) == pytest.approx(0.05)
    book.finished("still", succeeded=True)
    assert book.answered(book.begin(), "video", 0.7) == pytest.approx(0.25)


def test_overlapping_submits_failures_and_refunds_are_not_provable():
    book = CreditBook()
    book.reading(5.0)
    first, second = book.begin(), book.begin()  # two submits in flight at once
    assert book.answered(first, "a", 4.9) is None
    assert book.answered(second, "b", 4.8) is None

    book = CreditBook()
    book.reading(5.0)
    assert book.answered(book.begin(), "a", 4.9) == pytest.approx(0.1)
    book.finished("a", succeeded=False)  # may be refunded: no baseline
    assert book.answered(book.begin(), "b", 4.8) is None

    book = CreditBook()
    book.reading(5.0)
    book.failed(book.begin())  # a lost answer: a job may exist
    assert book.answered(book.begin(), "c", 4.8) is None

    book = CreditBook()
    book.reading(5.0)
    assert book.answered(book.begin(), "a", 5.0) is None  # no difference: not a charge
    book.finished("unknown", succeeded=False)  # a job this process did not submit: ignored


def test_an_old_baseline_is_not_used():
    book = CreditBook(max_age=0.0)
    book.reading(5.0)
    assert book.baseline is None
    assert book.answered(book.begin(), "a", 4.9) is None


def test_a_balance_read_while_a_job_runs_is_no_baseline():
    book = CreditBook()
    book.answered(book.begin(), "a", 3.0)
    book.reading(3.0)
    assert book.answered(book.begin(), "b", 2.9) is None


def test_books_are_per_account_and_segmind_reads_its_header():
    a = credit_book_for("segmind", "http://127.0.0.1:1/", SecretStr("k1"))
    assert credit_book_for("segmind", "http://127.0.0.1:1", SecretStr("k1")) is a
    assert credit_book_for("segmind", "http://127.0.0.1:1", SecretStr("k2")) is not a
    segmind = get_provider("segmind")
    assert segmind.remaining_credits({"x-remaining-credits": "99999.95"}) == 99999.95
    for bad in ({}, {"x-remaining-credits": "lots"}, {"x-remaining-credits": "-1"},
                {"x-remaining-credits": "nan"}):
        assert segmind.remaining_credits(bad) is None
    assert get_provider("runway").remaining_credits({"x-remaining-credits": "1"}) is None
