"""The machine id sent with every record: random, rotated every three days.

A static id from the override file (its first line, at most 32 characters)
takes precedence, as in Clear. The rotating id lives in `state_dir/machine_id`
as two lines, the id and the unix time it was made; it is replaced
atomically (write, fsync, rename, fsync the directory).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from telemd.atomic_file import replace_file

log = logging.getLogger("telemd.machineid")

ROTATION_SECONDS = 3 * 24 * 3600
MACHINE_ID_LENGTH = 32
STATE_FILE = "machine_id"


def read_static_id(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            line = handle.readline(256).decode(errors="replace").strip()
    except OSError:
        return None
    return line[:MACHINE_ID_LENGTH] or None


class MachineId:
    """Hands out the current machine id; `current()` is cheap enough per record."""

    def __init__(
        self,
        state_dir: str,
        static_id_file: str,
        *,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: os.urandom(16).hex(),
        rotation: float = ROTATION_SECONDS,
    ) -> None:
        self._path = os.path.join(state_dir, STATE_FILE)
        self._static_id_file = static_id_file
        self._clock = clock
        self._new_id = new_id
        self._rotation = rotation
        self._static: str | None = None
        self._value = ""
        self._expires_at = 0.0
        self.reload()

    def reload(self) -> None:
        """Re-read the static override and the state file (at start and on SIGHUP)."""
        self._static = read_static_id(self._static_id_file)
        self._value, created = self._read_state()
        self._expires_at = created + self._rotation

    def current(self) -> str:
        if self._static is not None:
            return self._static
        if self._clock() >= self._expires_at:
            self._rotate()
        return self._value

    def _read_state(self) -> tuple[str, float]:
        try:
            with open(self._path, encoding="ascii", errors="replace") as handle:
                value, created = handle.read(256).split()[:2]
            if len(value) == MACHINE_ID_LENGTH:
                return value, float(created)
        except (OSError, ValueError):
            pass
        return "", float("-inf")

    def _rotate(self) -> None:
        now = self._clock()
        value = self._new_id()
        try:
            self._persist(value, now)
        except OSError as exc:
            # Records still get a fresh id; it is written again at the next rotation.
            log.warning("cannot save the machine id to %s: %s", self._path, exc.strerror)
        self._value = value
        self._expires_at = now + self._rotation

    def _persist(self, value: str, now: float) -> None:
        replace_file(self._path, f"{value}\n{int(now)}\n", mode=0o640)
