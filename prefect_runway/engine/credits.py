"""What a submit was charged, from the balance the provider reports after it (Segmind)."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass

from pydantic import SecretStr

__all__ = ["BASELINE_MAX_AGE", "CreditBook", "SubmitTicket", "credit_book_for"]

#: Seconds a baseline balance stays usable.
BASELINE_MAX_AGE = 600.0


@dataclass
class SubmitTicket:
    """One submit's view of the account when it began."""

    baseline: float | None
    serial: int


class CreditBook:
    """One account's balance as this process saw it, to attribute charges to submits."""

    def __init__(self, max_age: float = BASELINE_MAX_AGE) -> None:
        self._lock = threading.Lock()
        self.max_age = max_age
        self._baseline: float | None = None
        self._baseline_at = 0.0
        self._serial = 0  # bumped by every submit that begins
        self._submitting = 0
        self._open: set[str] = set()
        self._pending: dict[str, float] = {}  # job id -> the header read after its submit

    @property
    def baseline(self) -> float | None:
        """The balance a submit beginning now would start from, if there is one."""
        if self._baseline is None or time.monotonic() - self._baseline_at > self.max_age:
            return None
        return self._baseline

    @baseline.setter
    def baseline(self, value: float | None) -> None:
        self._baseline, self._baseline_at = value, time.monotonic()

    def reading(self, balance: float | None) -> None:
        """A balance read (not from a submit): a baseline when nothing is in flight."""
        with self._lock:
            if balance is not None and not self._submitting and not self._open:
                self.baseline = balance

    def begin(self) -> SubmitTicket:
        """A submit is about to be sent."""
        with self._lock:
            self._serial += 1
            quiet = not self._submitting and not self._open
            self._submitting += 1
            return SubmitTicket(self.baseline if quiet else None, self._serial)

    def answered(self, ticket: SubmitTicket, job_id: str, remaining: float | None) -> float | None:
        """The submit's answer (the job ``job_id``, the balance after it, if reported).

        Returns:
            What the submit was charged, where provable; else None.
        """
        with self._lock:
            self._submitting = max(0, self._submitting - 1)
            alone = self._serial == ticket.serial  # no other submit began meanwhile
            charged = None
            if alone and ticket.baseline is not None and remaining is not None:
                difference = round(ticket.baseline - remaining, 6)
                if difference > 0:
                    charged = difference
            # The header is the next baseline once this job is seen to succeed, if nothing
            # else of the account was in flight.
            if alone and not self._submitting and not self._open and remaining is not None:
                self._pending[job_id] = remaining
            self.baseline = None
            self._open.add(job_id)
            return charged

    def failed(self, ticket: SubmitTicket) -> None:
        """The submit raised: a job may exist and have been charged; the baseline is lost."""
        with self._lock:
            self._submitting = max(0, self._submitting - 1)
            self.baseline = None

    def finished(self, job_id: str, succeeded: bool) -> None:
        """A job of this account was seen to end (a failed one may be refunded)."""
        with self._lock:
            if job_id not in self._open:
                return  # not submitted by this process (a cached or resumed job)
            self._open.discard(job_id)
            after = self._pending.pop(job_id, None)
            if not succeeded:
                self.baseline = None
            elif after is not None and not self._open and not self._submitting:
                self.baseline = after


_books: dict[tuple[str, str, str], CreditBook] = {}
_books_lock = threading.Lock()


def credit_book_for(provider: str, base_url: str, api_key: SecretStr) -> CreditBook:
    """The process-wide book of the account behind ``api_key`` at ``base_url``."""
    ident = hashlib.sha256(api_key.get_secret_value().encode()).hexdigest()
    key = (provider, base_url.rstrip("/"), ident)
    with _books_lock:
        book = _books.get(key)
        if book is None:
            book = _books[key] = CreditBook()
        return book
