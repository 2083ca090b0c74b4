"""What intake writes to the journal: refused frames and normalised records.

A frame refused is journaled with the fate `refused`, its reason (code and
field), its classification where the frame let it be read and the sender's
uid; repeats per uid and reason are counted into one entry a window
(`daemon/refused.py`), so a flood grows neither the journal nor the log. A
record taken once a value was normalised (`telemd.frame`) is journaled
`normalised` with what was changed; the entry is queued to the spool writer
before the record, so it commits with it or first. Entries go through the
writer's transactions (`Spool.run`); this module never touches a file.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence

from telemd import journal
from telemd.daemon.refused import Refusal, RefusalTally
from telemd.daemon.spool import HostKey, Spool
from telemd.errors import ErrorCode, TelemetryError
from telemd.frame import DecodedFrame
from telemd.record import HEADER_NAMES

log = logging.getLogger("telemd.intake")

# The fields a refusal may name; anything else counts as the frame's fault.
_FIELDS = frozenset((*HEADER_NAMES, "payload"))


def reason(exc: TelemetryError) -> str:
    """The refusal's cause in a bounded set: its code and the field at fault."""
    if exc.code not in (ErrorCode.INVALID, ErrorCode.TOO_LARGE):
        return exc.code
    field = getattr(exc, "field", None) or exc.message.split(" ", 1)[0].rstrip(":")
    return f"{exc.code} {field if field in _FIELDS else 'frame'}"


class IntakeJournal:
    def __init__(
        self,
        spool: Spool,
        host_key: Callable[[], HostKey],
        journal_max: Callable[[], int],
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.spool = spool
        self._host_key = host_key
        self._journal_max = journal_max
        self._wall_clock = wall_clock
        self.refusals = RefusalTally(clock=self.loop.time)
        self._timer: asyncio.TimerHandle | None = None
        self.normalised = 0

    def refused(self, uid: int, pid: int, exc: TelemetryError) -> None:
        """Journal a refused frame, or hold it for its window's summary."""
        classification = exc.classification or ""
        refusal = self.refusals.add(uid, reason(exc), classification, exc.message)
        if refusal is not None:
            log.info(
                "refused a frame from pid %d uid %d%s: %s %s",
                pid,
                uid,
                f" ({classification})" if classification else "",
                exc.code,
                exc.message,
            )
            self._write_refusals([refusal])
        elif self._timer is None:
            self._schedule()

    def normalised_record(self, uid: int, record_id: str, decoded: DecodedFrame) -> None:
        record = decoded.record
        self.normalised += 1
        entry = journal.Entry(
            time=self._wall_clock(),
            fate="normalised",
            record_id=record_id,
            classification=record.classification,
            severity=record.severity,
            event_id=record.event_id,
            boot_id=self._host_key()[1].boot_id,
            creation_timestamp=record.creation_timestamp,
            http_status=None,
            attempts=0,
            message="; ".join(decoded.notes or ()),
            sender_uid=uid,
        )
        self._write([entry])

    def close(self) -> None:
        """Journal every summary still held (the daemon is stopping)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        summaries = self.refusals.flush()
        _log_summaries(summaries)
        self._write_refusals(summaries)

    def _schedule(self) -> None:
        due = self.refusals.next_due()
        if due is not None:
            self._timer = self.loop.call_at(due, self._due)

    def _due(self) -> None:
        self._timer = None
        summaries = self.refusals.due()
        _log_summaries(summaries)
        self._write_refusals(summaries)
        self._schedule()

    def _write_refusals(self, refusals: list[Refusal]) -> None:
        if not refusals:
            return
        now = self._wall_clock()
        boot_id = self._host_key()[1].boot_id
        self._write(
            [
                journal.Entry(
                    time=now,
                    fate="refused",
                    record_id="",
                    classification=refusal.classification,
                    severity=0,
                    event_id="",
                    boot_id=boot_id,
                    creation_timestamp=0,
                    http_status=None,
                    attempts=0,
                    message=(
                        f"{refusal.reason}: {refusal.message}"
                        if refusal.count == 1
                        else f"{refusal.reason}: {refusal.count} refused in a minute, the last: "
                        f"{refusal.message}"
                    ),
                    sender_uid=refusal.uid,
                    count=refusal.count,
                )
                for refusal in refusals
            ]
        )

    def _write(self, entries: list[journal.Entry]) -> None:
        journal_max = self._journal_max()

        def job(db: sqlite3.Connection) -> None:
            journal.append(db, entries, max_entries=journal_max)

        def done(error: str | None, _: object) -> None:
            if error is not None:
                log.warning("cannot journal %d intake entries: %s", len(entries), error)

        self.spool.run(job, done)


def _log_summaries(summaries: Sequence[Refusal]) -> None:
    """One line per uid and reason for the refusals held back in a window."""
    for summary in summaries:
        log.info(
            "refused %d more frames from uid %s in a minute: %s",
            summary.count,
            "several" if summary.uid is None else summary.uid,
            summary.reason,
        )
