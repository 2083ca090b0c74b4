"""Real journal files for tests, written by systemd-journal-remote from export format.

The journal export format is `FIELD=value` lines with a blank line after each
entry; a value holding a newline is written binary-safe: the field name, a
newline, its length as a little-endian 64-bit integer, the bytes, a newline.
"""

from __future__ import annotations

import itertools
import struct
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from probe_support import need

BOOT_ID = Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")
COREDUMP_MESSAGE_ID = "fc2e22bc6ee647b6b90729ab34a250b1"
_clock = itertools.count(int(time.time() * 1_000_000))
_files = itertools.count()


def export_entry(fields: Mapping[str, str], boot_id: str = BOOT_ID) -> bytes:
    now = next(_clock)
    out = [f"__REALTIME_TIMESTAMP={now}\n__MONOTONIC_TIMESTAMP={now}\n_BOOT_ID={boot_id}\n"]
    data = b"".join(item.encode() for item in out)
    for name, value in fields.items():
        raw = value.encode()
        if b"\n" in raw:
            data += name.encode() + b"\n" + struct.pack("<Q", len(raw)) + raw + b"\n"
        else:
            data += name.encode() + b"=" + raw + b"\n"
    return data + b"\n"


def write_journal(
    directory: Path, entries: Iterable[Mapping[str, str]], boot_id: str = BOOT_ID
) -> Path:
    """A new journal file in `directory` holding `entries`, in order, of boot `boot_id`."""
    remote = need("systemd-journal-remote", "systemd-journal-remote")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"test-{next(_files)}.journal"
    export = b"".join(export_entry(entry, boot_id) for entry in entries)
    subprocess.run([remote, f"--output={path}", "-"], input=export, check=True, capture_output=True)
    return path


def coredump_entry(
    pid: int, executable: str = "/usr/bin/demo", signal: int = 11, function: str = "crash_here"
) -> dict[str, str]:
    """An entry as systemd-coredump writes it, with a two-thread stack trace."""
    name = executable.rsplit("/", 1)[-1]
    message = (
        f"Process {pid} ({name}) of user 1000 dumped core.\n\n"
        f"Module {name} with build-id 63853366ad16009df9afa5da331b88ade906479d\n"
        f"Stack trace of thread {pid}:\n"
        f"#0  0x000055a920b8b165 {function} ({name} + 0x1165)\n"
        f"#1  0x000055a920b8b1c1 main ({name} + 0x11c0)\n"
        "#2  0x00007f752cd0624a __libc_start_call_main (libc.so.6 + 0x27249)\n"
        f"#3  0x000055a920b8b091 n/a ({name} + 0x1090)\n\n"
        f"Stack trace of thread {pid + 1}:\n"
        "#0  0x00007f752cdb2df2 __libc_pause (libc.so.6 + 0xd3df2)\n"
        "#1  0x00007f752cd681f5 n/a (n/a + 0x0)\n"
    )
    return {
        "MESSAGE_ID": COREDUMP_MESSAGE_ID,
        "MESSAGE": message,
        "PRIORITY": "2",
        "SYSLOG_IDENTIFIER": "systemd-coredump",
        "COREDUMP_PID": str(pid),
        "COREDUMP_UID": "1000",
        "COREDUMP_SIGNAL": str(signal),
        "COREDUMP_SIGNAL_NAME": "SIGSEGV",
        "COREDUMP_COMM": name,
        "COREDUMP_EXE": executable,
        "COREDUMP_CMDLINE": f"{executable} --password=hunter2",
        "COREDUMP_ENVIRON": "SECRET=1\nHOME=/home/alice",
        "COREDUMP_TIMESTAMP": "1700000000000000",
    }
