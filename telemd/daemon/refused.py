"""Which refused frames the journal gets an entry for, so a flood cannot grow it.

Pure arithmetic, no I/O: intake asks, then writes what it is told to. Per
sender uid and reason (an error code and the field at fault), the first
refusal in a window is journaled at once with its own message; the next
ones in that window are counted, and when the window ends one entry stands
for them all (`count`). A flood of bad frames from one uid thus costs at
most two journal entries a window per reason, and none is refused unseen.

At most `max_keys` uid and reason pairs are tracked; past that, refusals of
new pairs are counted together under the uid None ("several uids").
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_WINDOW = 60.0
DEFAULT_MAX_KEYS = 256

Key = tuple[int | None, str]


@dataclass(frozen=True, slots=True)
class Refusal:
    """One journal entry: `count` refusals of `reason` from `uid`."""

    uid: int | None
    reason: str
    classification: str
    message: str
    count: int


@dataclass(slots=True)
class _Window:
    ends: float
    held: int = 0  # refusals since the entry that opened the window
    classification: str = ""
    message: str = ""


class RefusalTally:
    def __init__(
        self,
        window: float = DEFAULT_WINDOW,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self.max_keys = max_keys
        self.clock = clock
        self._windows: dict[Key, _Window] = {}

    def add(self, uid: int, reason: str, classification: str, message: str) -> Refusal | None:
        """The entry to journal now for this refusal, or None when it is held
        for the summary its window will end with (see `due`)."""
        now = self.clock()
        key: Key = (uid, reason)
        window = self._windows.get(key)
        if window is None and len(self._windows) >= self.max_keys:
            self._sweep(now)
        if window is None and len(self._windows) >= self.max_keys:
            key = (None, reason)
            window = self._windows.get(key)
        if window is None or (now >= window.ends and not window.held):
            self._windows[key] = _Window(now + self.window)
            return Refusal(key[0], reason, classification, message, 1)
        window.held += 1
        window.classification = classification
        window.message = message
        return None

    def due(self) -> list[Refusal]:
        """Summaries of the windows that have ended; windows with nothing held close."""
        now = self.clock()
        ended = [key for key, window in self._windows.items() if now >= window.ends]
        return [summary for key in ended if (summary := self._close(key)) is not None]

    def flush(self) -> list[Refusal]:
        """Every summary still held, whether its window has ended or not (shutdown)."""
        return [summary for key in list(self._windows) if (summary := self._close(key)) is not None]

    def next_due(self) -> float | None:
        """When the earliest window holding refusals ends (the clock's time), if any."""
        ends = [window.ends for window in self._windows.values() if window.held]
        return min(ends) if ends else None

    def _sweep(self, now: float) -> None:
        """Forget ended windows that hold nothing (those that do wait for `due`)."""
        for key in [k for k, w in self._windows.items() if now >= w.ends and not w.held]:
            del self._windows[key]

    def _close(self, key: Key) -> Refusal | None:
        window = self._windows.pop(key)
        if not window.held:
            return None
        return Refusal(key[0], key[1], window.classification, window.message, window.held)
