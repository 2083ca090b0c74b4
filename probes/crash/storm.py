"""Crash storms: many identical crashes become a few records that carry counts.

A crash is "the same" as another when its `storm_key` (executable, signal,
top frames) is. Within `crash_dedup_window` seconds of a key's first crash,
only its 1st, 2nd, 4th, 8th, ... crash is sent, each record counting the
crashes since the previous one: 50 crashes make 6 records (counts 1, 1, 2,
4, 8, 16), and the 18 left over are added to the key's first record of a
later window. The first crash is never held back.

`admit` is pure; `StormLedger` keeps the counts in a file under the state
directory, shared by every crashprobe process (the kernel starts one per
crash, at the same time in a storm) through an exclusive lock. Keys are
stored hashed: the file never holds a program path.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable

from telemd.atomic_file import replace_file

MAX_KEYS = 256
LEDGER_NAME = "crashprobe-storms.json"
_LOCK_NAME = "crashprobe-storms.lock"


class Entry:
    """One key's window: when it began, crashes seen and reported in it, and
    crashes of earlier windows no record has counted yet."""

    __slots__ = ("carried", "reported", "seen", "start")

    def __init__(self, start: float, seen: int = 0, reported: int = 0, carried: int = 0) -> None:
        self.start = start
        self.seen = seen
        self.reported = reported
        self.carried = carried

    def as_list(self) -> list[float]:
        return [self.start, self.seen, self.reported, self.carried]


def admit(entry: Entry | None, now: float, window: float) -> tuple[Entry, int]:
    """Count one crash; return the entry and the count to send (0: send nothing)."""
    if entry is None:
        entry = Entry(now)
    elif now - entry.start >= window:
        entry = Entry(now, carried=entry.carried + entry.seen - entry.reported)
    entry.seen += 1
    if entry.seen & (entry.seen - 1):  # not a power of two
        return entry, 0
    count = entry.seen - entry.reported + entry.carried
    entry.reported, entry.carried = entry.seen, 0
    return entry, count


def _entry(stored: list[float] | None) -> Entry | None:
    if stored is None:
        return None
    start, seen, reported, carried = stored
    return Entry(start, int(seen), int(reported), int(carried))


class StormLedger:
    def __init__(
        self, directory: str, window: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = os.path.join(directory, LEDGER_NAME)
        self._lock_path = os.path.join(directory, _LOCK_NAME)
        self.window = window
        self._clock = clock

    def admit(self, key: str) -> int:
        """How many crashes a record for `key` should count now; 0 means send none.

        Raises OSError if the state directory cannot be used.
        """
        if self.window <= 0:
            return 1
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        lock = os.open(self._lock_path, flags, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries = self._load()
            now = self._clock()
            old = entries.pop(digest, None)
            entry, count = admit(_entry(old), now, self.window)
            entries[digest] = entry.as_list()  # most recent last
            while len(entries) > MAX_KEYS:
                del entries[next(iter(entries))]
            self._store(entries)
            return count
        finally:
            os.close(lock)

    def _load(self) -> dict[str, list[float]]:
        try:
            with open(self.path, "rb") as handle:
                data = json.loads(handle.read())
        except (OSError, ValueError):
            return {}  # missing or damaged: counting starts again
        if not isinstance(data, dict):
            return {}
        return {
            key: value
            for key, value in data.items()
            if isinstance(value, list)
            and len(value) == 4
            and all(isinstance(v, (int, float)) for v in value)
        }

    def _store(self, entries: dict[str, list[float]]) -> None:
        # Crash handlers may run at once: each writes its own temporary file.
        replace_file(self.path, json.dumps(entries), temporary=f"{self.path}.{os.getpid()}")
