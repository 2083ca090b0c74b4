"""Whether a collector's 4xx is a record's fault or the configuration's.

Pure: no I/O, no clock of its own (callers pass `now`). Delivery asks it
what to do with each 4xx answer and tells it about each success.

A 4xx about the request (401, 403, 404, 405, 407, 411, 415, 421, 426, or
any 4xx to a batch) is a configuration error outright. A 4xx to one record
may be either: telemetrics-backend answers a wrong telemetry id with
`400 Telemetry ID mismatch` to every record. So such a record is held, not
rejected, until another record's answer tells: the same status and message
for a different record is a configuration error, anything else rejects the
held record, and so does nothing to compare with for `hold_for` seconds.

While a configuration error lasts, records already answered with it are
passed over until every waiting record has had a turn (`tried`), so two
records refused alike for their own fault cannot hold back the rest; and an
answer once taken for a configuration error, then followed by a delivered
record, rejects at once from then on.
"""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

Answer = tuple[int, str]  # (HTTP status, the collector's message)
# Answers learned to be about records, kept at most.
MAX_LEARNED = 64


class HasSeq(Protocol):
    @property
    def seq(self) -> int: ...


R = TypeVar("R", bound=HasSeq)


class Refusals(Generic[R]):
    def __init__(self, hold_for: float) -> None:
        self.hold_for = hold_for
        self.config_error: Answer | None = None  # until a record is delivered
        self.tried: set[int] = set()  # seqs answered with config_error in this round
        self._held: tuple[R, Answer] | None = None
        self._held_until = 0.0
        self._last_rejected: tuple[int, Answer] | None = None  # (seq, answer)
        self._record_answers: set[Answer] = set()

    @property
    def holding(self) -> bool:
        return self._held is not None

    def reset(self) -> None:
        """The configuration changed: forget what the old one taught.

        A held record stays held: it is still in flight for delivery.
        """
        self.config_error = self._last_rejected = None
        self.tried.clear()
        self._record_answers.clear()

    def delivered(self) -> list[tuple[R, Answer]]:
        """A record was delivered: what is held was its own fault; return it to reject."""
        rejected = self._release()
        if self.config_error is not None and len(self._record_answers) < MAX_LEARNED:
            self._record_answers.add(self.config_error)
        self.config_error = self._last_rejected = None
        self.tried.clear()
        return rejected

    def request_refused(self, records: list[R], answer: Answer) -> list[R]:
        """A configuration error for these records; return every record to put back."""
        self.config_error = answer
        if self._held is not None:
            records = [*records, self._held[0]]
            self._held = None
        self.tried.update(record.seq for record in records)
        return records

    def record_refused(
        self, record: R, answer: Answer, now: float
    ) -> tuple[list[tuple[R, Answer]], list[R]]:
        """A 4xx to one record: (records to reject, records to put back as misconfigured).

        Both are empty when the record is held for comparison.
        """
        if answer in self._record_answers:
            return [(record, answer)], []
        if answer == self.config_error:
            return [], self.request_refused([record], answer)
        held = (self._held[0].seq, self._held[1]) if self._held is not None else None
        for earlier in (held, self._last_rejected):
            if earlier is not None and earlier[0] != record.seq and earlier[1] == answer:
                return [], self.request_refused([record], answer)
        rejected = self._release()
        self._held = (record, answer)
        self._held_until = now + self.hold_for
        return rejected, []

    def expire(self, now: float) -> tuple[list[tuple[R, Answer]], float | None]:
        """Nothing else to send: (the held record to reject if its time is up, seconds left)."""
        if self._held is None:
            return [], None
        if now < self._held_until:
            return [], self._held_until - now
        return self._release(), None

    def _release(self) -> list[tuple[R, Answer]]:
        if self._held is None:
            return []
        record, answer = self._held
        self._held = None
        self._last_rejected = (record.seq, answer)
        return [(record, answer)]
