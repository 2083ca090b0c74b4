"""Replace a small state file so that a crash leaves the old or the new one.

Write a temporary file beside it (never through a symlink someone planted),
fsync it, rename it over the old one, fsync the directory. Used for the
machine id and the probes' positions, cursors and memories. Imports only
`os`: probes use it.
"""

from __future__ import annotations

import os


def replace_file(path: str, text: str, *, mode: int = 0o600, temporary: str | None = None) -> None:
    """Atomically make `path` hold `text`; raises OSError, leaving `path` as it was."""
    temporary = temporary or f"{path}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temporary, flags, mode)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    directory = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
