"""Follow the journal through `journalctl -o json`, resuming after a saved cursor.

`JournalReader` yields the entries that match some fields, oldest first,
each with the cursor to save once it has been handled; `CursorFile` keeps
that cursor on disk (written whole, then renamed), so a restarted probe
starts right after the last entry it finished with. Without a cursor, the
reader starts at the beginning of the current boot.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

from telemd.atomic_file import replace_file

_MAX_ENTRY_BYTES = 1 << 20  # an entry's JSON line; longer ones are skipped
_BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"


class CursorFile:
    def __init__(self, path: str) -> None:
        self.path = path

    def load(self) -> str | None:
        try:
            with open(self.path, encoding="utf-8") as handle:
                cursor = handle.read(4096).strip()
        except (OSError, UnicodeDecodeError):
            return None
        return cursor or None

    def save(self, cursor: str) -> None:
        replace_file(self.path, cursor + "\n")


def current_boot_id(journal_argv: list[str]) -> str:
    """The boot the journal's newest entry belongs to, else the kernel's.

    The journal's word first: in a container, the sandbox of the probe's unit
    (ProtectKernelTunables=, ProtectProc=) remounts /proc and shows the
    host's boot id instead of the container's, which journald stamps.
    """
    newest = subprocess.run(
        [*journal_argv, "--lines", "1", "--output-fields", "_BOOT_ID"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    try:
        boot_id = json.loads(newest.stdout or b"{}").get("_BOOT_ID")
    except ValueError:
        boot_id = None
    if isinstance(boot_id, str) and len(boot_id) == 32:
        return boot_id
    with open(_BOOT_ID_FILE, encoding="ascii") as handle:
        return handle.read().strip().replace("-", "")


class JournalReader:
    """`journalctl -o json MATCH... [--follow]` as a stream of (entry, cursor)."""

    def __init__(
        self,
        matches: list[str],
        *,
        cursor: str | None,
        follow: bool,
        directory: str | None = None,
        journalctl: str = "journalctl",
    ) -> None:
        argv = [journalctl, "-o", "json", "--no-pager", "--quiet"]
        if directory is not None:
            argv += ["--directory", directory]
        if cursor is not None:
            argv += ["--after-cursor", cursor]
        else:
            # A match rather than -b, which fails on a journal without this boot;
            # every entry of it, where --follow alone shows the last 10 only.
            argv += ["--lines", "all"]
            matches = [*matches, f"_BOOT_ID={current_boot_id(argv[:-2])}"]
        if follow:
            argv.append("--follow")
        self.argv = argv + matches
        self._proc: subprocess.Popen[bytes] | None = None

    def entries(self) -> Iterator[tuple[dict[str, object], str]]:
        """Matching entries; raise OSError if journalctl cannot start or fails."""
        self._proc = proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
        )
        assert proc.stdout is not None
        while line := proc.stdout.readline(_MAX_ENTRY_BYTES + 1):
            if len(line) > _MAX_ENTRY_BYTES or not line.endswith(b"\n"):
                while line and not line.endswith(b"\n"):  # skip the rest of it
                    line = proc.stdout.readline(_MAX_ENTRY_BYTES)
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            cursor = entry.get("__CURSOR") if isinstance(entry, dict) else None
            if isinstance(cursor, str):
                yield entry, cursor
        status = proc.wait()
        if status != 0:  # its own message went to our stderr
            raise OSError(f"journalctl exited with status {status}")

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait()
