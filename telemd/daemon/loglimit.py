"""Log lines rate-limited per cause: the first occurrence, then a count.

A client that sends bad frames as fast as it can, or a full disk that
refuses every record, would otherwise write a line each time and drown the
journal (33,963 lines in 5 s from one client). Per cause, the first line
is logged; repeats within `interval` seconds are counted, and when the
interval ends one summary line gives the count. A cause that stays quiet
for a whole interval starts afresh.

The cause is `extra={"cause": ...}` when the call site names one; warnings
and errors without one are grouped by logger, message template and the
template's string arguments. Other lines pass untouched. This module never
drops a line without counting it, and never holds more than `max_causes`
causes: past that, lines pass unlimited rather than unseen.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

DEFAULT_INTERVAL = 60.0
DEFAULT_MAX_CAUSES = 256


@dataclass(slots=True)
class _Window:
    ends: float
    suppressed: int = 0
    latest: logging.LogRecord | None = None


@dataclass(frozen=True, slots=True)
class Summary:
    """`count` lines like `latest` were held back in the interval that ended."""

    latest: logging.LogRecord
    count: int


class RepeatLimiter:
    """The arithmetic: which lines pass, which are counted, which summaries are due."""

    def __init__(
        self,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        max_causes: int = DEFAULT_MAX_CAUSES,
    ) -> None:
        self.interval = interval
        self.clock = clock
        self.max_causes = max_causes
        self._windows: dict[Hashable, _Window] = {}

    def admit(self, cause: Hashable, record: logging.LogRecord) -> tuple[bool, Summary | None]:
        """Whether `record` is logged, and a summary that is due before it."""
        now = self.clock()
        window = self._windows.get(cause)
        if window is not None and now >= window.ends:
            due = self._close(cause, window, now)
            if due is not None:
                # The cause is still busy: this line opens the next interval's count.
                self._windows[cause].suppressed = 1
                self._windows[cause].latest = record
                return False, due
            window = None
        if window is None:
            if len(self._windows) >= self.max_causes and not self._forget_quiet(now):
                return True, None
            self._windows[cause] = _Window(now + self.interval)
            return True, None
        window.suppressed += 1
        window.latest = record
        return False, None

    def due(self) -> list[Summary]:
        """Summaries of every interval that has ended with lines held back."""
        now = self.clock()
        summaries = []
        for cause, window in list(self._windows.items()):
            if now >= window.ends:
                summary = self._close(cause, window, now)
                if summary is not None:
                    summaries.append(summary)
        return summaries

    def next_due(self) -> float | None:
        """Seconds until the next interval with lines held back ends."""
        ends = [w.ends for w in self._windows.values() if w.suppressed]
        return max(min(ends) - self.clock(), 0.0) if ends else None

    def _close(self, cause: Hashable, window: _Window, now: float) -> Summary | None:
        if not window.suppressed or window.latest is None:
            del self._windows[cause]
            return None
        self._windows[cause] = _Window(now + self.interval)
        return Summary(window.latest, window.suppressed)

    def _forget_quiet(self, now: float) -> bool:
        quiet = [c for c, w in self._windows.items() if not w.suppressed and now >= w.ends]
        for cause in quiet:
            del self._windows[cause]
        return bool(quiet)


def cause_of(record: logging.LogRecord) -> Hashable | None:
    """What groups `record` with its repeats; None for a line that is never limited."""
    cause = getattr(record, "cause", None)
    if cause is not None:
        return (record.name, cause)
    if record.levelno < logging.WARNING or not isinstance(record.msg, str):
        return None
    args = record.args if isinstance(record.args, tuple) else ()
    return (record.name, record.msg, tuple(a for a in args if isinstance(a, str)))


class RepeatFilter(logging.Filter):
    """A handler filter that applies a RepeatLimiter and writes its summaries.

    Threads log too (the spool writer), so the limiter is behind a lock.
    `on_pending(seconds)` is called when a count starts, so that the owner of
    an event loop can call `flush()` when the interval ends.
    """

    def __init__(self, handler: logging.Handler, limiter: RepeatLimiter | None = None) -> None:
        super().__init__()
        self.handler = handler
        self.limiter = limiter or RepeatLimiter()
        self.on_pending: Callable[[float], None] | None = None
        self._lock = threading.Lock()
        self._flush_pending = False

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "repeat_summary", False):
            return True
        cause = cause_of(record)
        if cause is None:
            return True
        with self._lock:
            passes, summary = self.limiter.admit(cause, record)
            wake = None if passes or self._flush_pending else self.limiter.next_due()
            if wake is not None:
                self._flush_pending = True
        if summary is not None:
            self._emit(summary)
        if wake is not None and self.on_pending is not None:
            self.on_pending(wake)
        return passes

    def flush(self) -> float | None:
        """Write the summaries that are due; seconds until the next, if any."""
        with self._lock:
            summaries = self.limiter.due()
            wake = self.limiter.next_due()
            self._flush_pending = wake is not None
        for summary in summaries:
            self._emit(summary)
        return wake

    def _emit(self, summary: Summary) -> None:
        latest = summary.latest
        record = logging.makeLogRecord(
            {
                "name": latest.name,
                "levelno": latest.levelno,
                "levelname": latest.levelname,
                "msg": "%d more like this in the last %g s, the latest: %s",
                "args": (summary.count, self.limiter.interval, latest.getMessage()),
                "repeat_summary": True,
            }
        )
        self.handler.handle(record)
