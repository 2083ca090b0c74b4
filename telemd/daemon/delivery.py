"""Delivery: drain the spool to the collector, oldest first; journal every fate.

One task. It sleeps on an event that intake sets after each commit, or until
the next thing it must do (a backoff ends, a rate-limit window frees, the
next expiry sweep): an idle daemon wakes for nothing. Up to `max_in_flight`
requests run at once. A record leaves the spool only with its fate written
in the journal, in the same transaction: delivered (2xx), rejected (a 4xx
about the record: the server will never take it), dropped (over a rate
limit under `rate_limit_strategy = drop`), expired (older than
`record_expiry`) or kept-local (`record_server_delivery_enabled = false`).

A 4xx about the request rather than the record is a configuration error:
the records stay spooled, delivery backs off, and the error shows in the
log and `telemctl status`. Which 4xx is which is `refusals.py`'s to say.

Connection errors, timeouts, 5xx, 408 and 429 pause all delivery for an
exponential backoff with full jitter (`retry_initial` doubling up to
`retry_max`), or longer when the server sends Retry-After. The pause is
global because such failures are the server's or the network's, not the
record's: retrying record after record would be a hot loop against a dead
server.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from telemd.config import Settings
from telemd.daemon.ratelimit import RateLimiter
from telemd.daemon.refusals import Refusals
from telemd.daemon.spool import Spool, fate_entry
from telemd.daemon.transport import (
    Outgoing,
    Reply,
    Request,
    Transport,
    TransportError,
    batch_verdicts,
    build_request,
    error_message,
    request_size,
    verdict,
)
from telemd.journal import Entry

log = logging.getLogger("telemd.delivery")

# Records read from the spool at once, ahead of the requests that post them.
_READ_AHEAD = 500
# Settled records are removed in batches of up to this many, or this late.
SETTLE_BATCH = 256
SETTLE_DELAY = 0.05


@dataclass
class Counters:
    """What `telemctl status` shows of delivery."""

    by_fate: dict[str, int] = field(default_factory=dict)  # since the daemon started
    failures: int = 0  # consecutive transient failures
    last_error: str = ""
    last_error_at: float = 0.0
    last_delivery_at: float = 0.0
    paused_until: float = 0.0  # wall-clock time

    def count(self, fate: str, number: int = 1) -> None:
        self.by_fate[fate] = self.by_fate.get(fate, 0) + number


class Delivery:
    def __init__(
        self,
        settings: Settings,
        spool: Spool,
        *,
        transport: Transport | None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.spool = spool
        self.transport = transport
        self.clock = clock
        self.monotonic = monotonic
        self.rng = rng or random.Random()
        self.counters = Counters()
        self.limiter = _rate_limiter(settings, monotonic)
        self._wake = asyncio.Event()
        self._stopping = False
        self._in_flight: set[int] = set()  # seqs taken from the spool, not yet settled
        self._cursor = 0  # highest seq read since the spool was last read from the start
        self._ahead: deque[Outgoing] = deque()  # read from the spool, not yet taken
        self._requests: set[asyncio.Task[None]] = set()
        self._closing: set[asyncio.Task[None]] = set()  # old transports, closed after reload
        self._paused_until = 0.0  # monotonic
        self._next_expiry = 0.0  # monotonic
        self._warned_no_server = False
        self.refusals: Refusals[Outgoing] = Refusals(settings.retry_max)
        # Rate-limit budget of requests in flight: spent once they are answered.
        self._reserved = (0, 0)
        self.on_settled: Callable[[], None] = lambda: None
        self._settling: list[tuple[Outgoing, Entry]] = []  # fates waiting to be written
        self._settle_timer: asyncio.TimerHandle | None = None

    def notify(self) -> None:
        """Intake committed records: look at the spool again, unless nothing
        could be sent now anyway (intake calls this for every record)."""
        if self._wake.is_set() or self._cannot_send_more():
            return
        self._wake.set()

    def _cannot_send_more(self) -> bool:
        """True while new records would wait whatever: every request slot is
        busy (a finished request wakes delivery), a pause is on (its timer
        wakes delivery), or no server is configured and that was logged."""
        if not self.settings.record_server_delivery_enabled or self._stopping:
            return False
        return (
            len(self._requests) >= self.settings.max_in_flight
            or self.monotonic() < self._paused_until
            or (self.transport is None and self._warned_no_server)
        )

    def reconfigure(self, settings: Settings, transport: Transport | None) -> None:
        """SIGHUP: post with the new server, format, TLS and limits from now on.

        Requests in flight finish on the old connection pool, which is closed
        after them; what the old settings held back is looked at again.
        """
        old = self.transport
        if old is not None and old is not transport:
            pending = set(self._requests)
            closing = asyncio.create_task(_close_after(old, pending))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        if _limits(settings) != _limits(self.settings):
            self.limiter = _rate_limiter(settings, self.monotonic)
        self.settings = settings
        self.transport = transport
        self._warned_no_server = False
        self.refusals.hold_for = settings.retry_max
        self.refusals.reset()
        self.flush()

    @property
    def in_flight(self) -> int:
        """Records taken from the spool and not yet settled."""
        return len(self._in_flight)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            self._wake.clear()
            delay = self._dispatch()
            # A timer that sets the event, rather than asyncio.wait_for, which
            # would wrap every wait in a new task: this loop turns per request.
            timer = None if delay is None else loop.call_later(delay, self._wake.set)
            await self._wake.wait()
            if timer is not None:
                timer.cancel()

    async def stop(self, grace: float) -> None:
        """Take no new work; give requests in flight `grace` seconds, then cancel them."""
        self._stopping = True
        self._wake.set()
        if self._requests:
            _, pending = await asyncio.wait(self._requests, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                log.warning(
                    "%d requests cancelled at shutdown; their records stay spooled", len(pending)
                )
                await asyncio.wait(pending)
        self._flush_settled()
        await self.spool.wait_idle()
        if self._closing:
            await asyncio.wait(self._closing)
        if self.transport is not None:
            await self.transport.aclose()

    # Deciding what to do now -------------------------------------------------

    def _dispatch(self) -> float | None:
        """Start what can start now; return the seconds until there is more to do."""
        now = self.monotonic()
        if now >= self._next_expiry:
            self._expire(now)
        waits = [self._next_expiry - now]
        if self._stopping or self.spool.depth == 0:
            return _soonest(waits) if self.spool.depth else None
        if not self.settings.record_server_delivery_enabled:
            self._keep_local()
            return _soonest(waits)
        if self.transport is None:
            if not self._warned_no_server:
                log.warning("no server configured: %d records wait in the spool", self.spool.depth)
                self._warned_no_server = True
            return _soonest(waits)
        if now < self._paused_until:
            return _soonest([*waits, self._paused_until - now])
        while len(self._requests) < self.settings.max_in_flight:
            records = self._take(*self._batch_bounds())
            if not records:
                if self.refusals.holding and not self._requests:
                    # Nothing else to compare the held record with, now or soon.
                    rejected, left = self.refusals.expire(now)
                    self._reject(rejected)
                    if left is not None:
                        waits.append(left)
                break
            request = build_request(self.settings.post_format, records)
            while len(records) > 1 and len(request.content) > self.settings.batch_max_bytes:
                # JSON escaping made the batch larger than estimated: halve it.
                self._untake(records[len(records) // 2 :])
                records = records[: len(records) // 2]
                request = build_request(self.settings.post_format, records)
            size = request_size(request)
            if not self.limiter.allows(len(records), size, self._reserved):
                if self.settings.rate_limit_strategy == "drop":
                    self._settle([(r, "dropped", None, "over the rate limit") for r in records])
                    continue
                self._untake(records)
                if self._requests:
                    return _soonest(waits)  # an answer wakes delivery and settles the budget
                free_at = self.limiter.free_at(len(records), size)
                log.info("rate limit reached: records wait %.0f s in the spool", free_at - now)
                return _soonest([*waits, free_at - now])
            self._reserved = (self._reserved[0] + len(records), self._reserved[1] + size)
            task = asyncio.create_task(self._post(request, size))
            self._requests.add(task)
            task.add_done_callback(self._request_done)
        return _soonest(waits)

    def _batch_bounds(self) -> tuple[int, int]:
        """How many records, and bytes, the next request may carry: one record,
        or an ndjson batch no larger than what the rate limits have left."""
        settings = self.settings
        if settings.post_format != "ndjson":
            return 1, settings.batch_max_bytes
        records, size = settings.batch_max_records, settings.batch_max_bytes
        left = self.limiter.left()
        if left is not None:
            left = (left[0] - self._reserved[0], left[1] - self._reserved[1])
            # A batch must not spend a window's whole budget at once; at least
            # one record goes, so that a full window is waited out, not skipped.
            records = max(1, min(records, left[0]))
            size = max(1, min(size, left[1]))
        return records, size

    def _take(self, limit: int, max_bytes: int) -> list[Outgoing]:
        """The next records to post, oldest first, within `limit` and `max_bytes`."""
        taken: list[Outgoing] = []
        size = 0
        while len(taken) < limit:
            if not self._ahead and not self._read_ahead():
                break
            record = self._ahead[0]
            line = record.size + 200  # the JSON keys around a record's values
            if taken and size + line > max_bytes:
                break
            self._ahead.popleft()
            self._in_flight.add(record.seq)
            taken.append(record)
            size += line
        return taken

    def _read_ahead(self) -> bool:
        # One query for many records: a query per record would cost more
        # than building its request.
        tried = self.refusals.tried
        candidates = self.spool.fetch(self._cursor, _READ_AHEAD)
        while candidates:
            self._cursor = candidates[-1].seq
            self._ahead.extend(
                r for r in candidates if r.seq not in self._in_flight and r.seq not in tried
            )
            if self._ahead or not tried:
                break
            candidates = self.spool.fetch(self._cursor, _READ_AHEAD)
        if not self._ahead and tried:
            # Every waiting record has been tried since the configuration
            # error began: start another round.
            tried.clear()
            self._cursor = 0
            return self._read_ahead()
        return bool(self._ahead)

    def _untake(self, records: list[Outgoing]) -> None:
        for record in records:
            self._in_flight.discard(record.seq)
        # Forget what was read ahead: after a failure or a rate limit the
        # spool is read again in order.
        self._ahead.clear()
        self._cursor = max(self._in_flight, default=0)

    def _release_cursor(self) -> None:
        # With nothing in flight or read ahead, read from the start again, so
        # that records put back after a failure or a rate limit go first.
        if not self._in_flight and not self._ahead:
            self._cursor = 0

    # Posting -----------------------------------------------------------------

    async def _post(self, request: Request, size: int) -> None:
        assert self.transport is not None
        transport = self.transport
        try:
            reply = await transport.post(request)
        except TransportError as exc:
            self._transient(list(request.records), str(exc), None)
            return
        finally:
            self._reserved = (self._reserved[0] - len(request.records), self._reserved[1] - size)
        if transport is not self.transport:
            # Posted before a reload: a refusal from the former server says nothing
            # of the records under the present one, nor a success of its answers.
            answered = self._handle_former(request, reply)
        else:
            answered = self._handle(request, reply)
        if answered:
            # Only what the server answered for counts against the rate
            # limits: failed attempts would otherwise eat the budget.
            self.limiter.spend(answered, size)

    def _request_done(self, task: asyncio.Task[None]) -> None:
        # Woken only once the task has left _requests, so the slot is free.
        self._requests.discard(task)
        self._wake.set()

    def _handle_former(self, request: Request, reply: Reply) -> int:
        """Settle what the server of the former configuration stored; put back the rest.

        Its refusals are not held against the records (nor its successes used to
        judge refusals): the present server may take them.
        """
        records = list(request.records)
        stored: list[Outgoing] = []
        if verdict(reply.status, batch=len(records) > 1) == "delivered":
            if self.settings.post_format != "ndjson":
                stored = records
            else:
                verdicts = batch_verdicts(reply, records)
                stored = [r for r in records if verdicts[r.record_id][0] == "delivered"]
        if stored:
            self._settle([(r, "delivered", reply.status, "") for r in stored])
        settled = {r.seq for r in stored}
        rest = [r for r in records if r.seq not in settled]
        if rest:
            log.warning(
                "the former server answered %d (%s) after the reload; %d records go to the "
                "present one",
                reply.status,
                error_message(reply),
                len(rest),
            )
            self._untake(rest)
        return len(stored)

    def _handle(self, request: Request, reply: Reply) -> int:
        """Settle or put back the request's records; return how many were answered."""
        records = list(request.records)
        outcome = verdict(reply.status, batch=len(records) > 1)
        if outcome == "delivered":
            self._reject(self.refusals.delivered())
            if self.settings.post_format != "ndjson":
                self.counters.failures = 0
                self._settle([(r, "delivered", reply.status, "") for r in records])
                return len(records)
            verdicts = batch_verdicts(reply, records)
            retry = [r for r in records if verdicts[r.record_id][0] == "retry"]
            self._settle(
                [
                    (r, verdicts[r.record_id][0], reply.status, verdicts[r.record_id][1])
                    for r in records
                    if verdicts[r.record_id][0] != "retry"
                ]
            )
            if retry:
                self._transient(retry, "the collector did not store every record of a batch", None)
            else:
                self.counters.failures = 0
            return len(records) - len(retry)
        if outcome == "retry":
            self._transient(records, error_message(reply), reply.retry_after)
            return 0
        message = error_message(reply)
        known = self.refusals.config_error == (reply.status, message)
        if outcome == "misconfigured":
            answer = (reply.status, message)
            self._misconfigured(self.refusals.request_refused(records, answer), message, known)
            return 0
        [record] = records
        rejected, misconfigured = self.refusals.record_refused(
            record, (reply.status, message), self.monotonic()
        )
        self._reject(rejected)
        if misconfigured:
            self._misconfigured(misconfigured, message, known)
            return 0
        return 1

    def _misconfigured(self, records: list[Outgoing], message: str, known: bool) -> None:
        """A 4xx about the request: keep the records and wait for a fixed configuration."""
        if not known:
            log.error(
                "the collector refuses every request (%s): check server, tidheader and "
                "post_format; records stay spooled",
                message,
            )
        self._transient(records, f"configuration error: {message}", None)

    def _reject(self, rejected: list[tuple[Outgoing, tuple[int, str]]]) -> None:
        for _, (_, message) in rejected:
            log.warning("collector rejected a record: %s", message)
        if rejected:
            self._settle([(r, "rejected", status, message) for r, (status, message) in rejected])

    def _transient(self, records: list[Outgoing], message: str, retry_after: float | None) -> None:
        counters = self.counters
        counters.failures += 1
        counters.last_error = message
        counters.last_error_at = self.clock()
        cap = min(
            self.settings.retry_max, self.settings.retry_initial * 2 ** (counters.failures - 1)
        )
        delay = self.rng.uniform(0, cap)
        if retry_after is not None:
            delay = max(delay, retry_after)
        self._paused_until = max(self._paused_until, self.monotonic() + delay)
        counters.paused_until = self.clock() + delay
        log.warning("delivery failed (%s); retrying in %.1f s", message, delay)
        self.spool.note_failure([r.seq for r in records], message)
        self._untake(records)

    # Settling records --------------------------------------------------------

    def _settle(self, outcomes: list[tuple[Outgoing, str, int | None, str]]) -> None:
        """Journal these fates and remove the records; they stay in flight until then.

        Removals are gathered for up to SETTLE_DELAY and written in one
        transaction: a record's removal need not be durable at once (if it is
        lost, the record is sent again and the collector drops the repeated
        record id), and one commit per delivered record would cost two fsyncs
        each.
        """
        now = self.clock()
        self._settling.extend(
            (record, fate_entry(record, fate, now, status, message))
            for record, fate, status, message in outcomes
        )
        if len(self._settling) >= SETTLE_BATCH or self._stopping:
            self._flush_settled()
        elif self._settle_timer is None:
            loop = asyncio.get_running_loop()
            self._settle_timer = loop.call_later(SETTLE_DELAY, self._flush_settled)

    def _flush_settled(self) -> None:
        if self._settle_timer is not None:
            self._settle_timer.cancel()
            self._settle_timer = None
        fates, self._settling = self._settling, []
        if not fates:
            return

        def done(error: str | None) -> None:
            for record, _ in fates:
                self._in_flight.discard(record.seq)
            self._release_cursor()
            if error is not None:
                log.error("cannot remove %d settled records: %s", len(fates), error)
                return
            for _, entry in fates:
                self.counters.count(entry.fate)
                if entry.fate == "delivered":
                    self.counters.last_delivery_at = entry.time
            if log.isEnabledFor(logging.DEBUG):
                log.debug("settled: %s", ", ".join(f"{e.record_id} {e.fate}" for _, e in fates))
            self.on_settled()
            self._wake.set()

        self.spool.remove(
            fates,
            journal_max=self.settings.journal_max_entries,
            retention_count=self._retention(),
            done=done,
        )

    def _retention(self) -> int | None:
        return self.settings.retention_count if self.settings.record_retention_enabled else None

    def _keep_local(self) -> None:
        records = self._take(_READ_AHEAD, self.settings.batch_max_bytes)
        if records:
            self._settle([(r, "kept-local", None, "") for r in records])

    def _expire(self, now: float) -> None:
        expiry = self.settings.record_expiry
        # Sweep about a hundred times per expiry period, at least once a minute.
        self._next_expiry = now + min(60.0, expiry / 100)
        if self.spool.depth:
            self._drop(self.clock() - expiry, "expired", "older than record_expiry")

    def purge(self) -> asyncio.Future[int]:
        """Drop every spooled record not in a request right now; journaled as dropped."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._drop(float("inf"), "dropped", "purged by telemctl", future)
        return future

    def flush(self) -> None:
        """Deliver now: forget the backoff."""
        self._paused_until = 0.0
        self.counters.paused_until = 0.0
        self._wake.set()

    def _drop(
        self, cutoff: float, fate: str, message: str, future: asyncio.Future[int] | None = None
    ) -> None:
        def done(removed: list[Outgoing]) -> None:
            if removed:
                self.counters.count(fate, len(removed))
                gone = {record.seq for record in removed}
                self._ahead = deque(r for r in self._ahead if r.seq not in gone)
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("settled: %s", ", ".join(f"{r.record_id} {fate}" for r in removed))
            if future is not None and not future.done():
                future.set_result(len(removed))

        self.spool.drop_older(
            cutoff,
            self.clock(),
            fate=fate,
            message=message,
            exclude=frozenset(self._in_flight),
            journal_max=self.settings.journal_max_entries,
            retention_count=self._retention(),
            done=done,
        )


def _limits(settings: Settings) -> tuple[object, ...]:
    return (
        settings.rate_limit_enabled,
        settings.record_burst_limit,
        settings.record_window_length,
        settings.byte_burst_limit,
        settings.byte_window_length,
    )


def _rate_limiter(settings: Settings, clock: Callable[[], float]) -> RateLimiter:
    return RateLimiter(
        enabled=settings.rate_limit_enabled,
        record_limit=_limit(settings.record_burst_limit),
        record_window=settings.record_window_length,
        byte_limit=_limit(settings.byte_burst_limit),
        byte_window=settings.byte_window_length,
        clock=clock,
    )


async def _close_after(transport: Transport, requests: set[asyncio.Task[None]]) -> None:
    if requests:
        await asyncio.wait(requests)
    await transport.aclose()


def _limit(value: int) -> int | None:
    return None if value < 0 else value


def _soonest(waits: list[float]) -> float:
    return max(0.0, min(waits))
