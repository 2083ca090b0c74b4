"""The pstore files pstoreprobe has sent and that are still there, kept in a state file.

A file is known by its name and content (`file_identity`), not its mtime:
pstore gives a record the backend kept no time for the time of the mount,
which changes at every boot. pstoreprobe remembers a dump's files before its
record is sent and leaves remembered files out of the dumps it reads, so a
run stopped after sending, a file it cannot remove (pstore read-only, a
backend refusing the erase) or `pstore_keep` never has a dump sent twice.
Identities whose files are gone are forgotten: the state holds at most one
line per file in the pstore directory. The file is replaced whole
(`replace_file`), and a lock beside it keeps two runs from sending the same
dump.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterable

from telemd.atomic_file import replace_file

SENT_NAME = "pstoreprobe.sent"
_MAX_BYTES = 1 << 20  # far above what a pstore directory holds (one line per file)
_IDENTITY_LENGTH = 64


def file_identity(name: str, data: bytes) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogateescape") + b"\0" + data).hexdigest()


class SentFiles:
    """Identities of the files sent, as saved last plus the changes since."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._identities = self._load()
        self._saved = set(self._identities)

    def _load(self) -> set[str]:
        try:
            with open(self.path, "rb") as handle:
                lines = handle.read(_MAX_BYTES).decode("ascii", "replace").split()
        except OSError:
            return set()  # missing: nothing sent yet; unusable: saving will say so
        return {line for line in lines if _is_identity(line)}

    def __contains__(self, identity: str) -> bool:
        return identity in self._identities

    def add(self, identities: Iterable[str]) -> None:
        self._identities.update(identities)

    def discard(self, identities: Iterable[str]) -> None:
        self._identities.difference_update(identities)

    def keep_only(self, present: Iterable[str]) -> None:
        """Forget the files that are gone."""
        self._identities.intersection_update(present)

    @property
    def changed(self) -> bool:
        return self._identities != self._saved

    def save(self) -> None:
        """Write the identities durably; raises OSError, leaving the file as it was."""
        replace_file(self.path, "".join(f"{identity}\n" for identity in sorted(self._identities)))
        self._saved = set(self._identities)

    def lock(self) -> int | None:
        """Hold the lock beside the file (the descriptor), or None if another run holds it.

        Raises OSError if the lock file cannot be opened. The lock goes with the process.
        """
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(f"{self.path}.lock", flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd


def _is_identity(line: str) -> bool:
    return len(line) == _IDENTITY_LENGTH and all(c in "0123456789abcdef" for c in line)
