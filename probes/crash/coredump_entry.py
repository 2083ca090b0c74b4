"""Read systemd-coredump's journal entries as crashes.

systemd-coredump logs each crash it handles as one entry with MESSAGE_ID
`fc2e22bc6ee647b6b90729ab34a250b1`, `COREDUMP_*` fields and, in MESSAGE,
the stack trace it unwound:

    Process 4242 (prog) of user 1000 dumped core.

    Module prog with build-id 6385...
    Stack trace of thread 4242:
    #0  0x000055a920b8b165 crash_here (prog + 0x1165)
    #1  0x000055a920b8b1c1 n/a (prog + 0x11c0)

`crash_from_entry` turns an entry, as `journalctl -o json` prints it, into a
`Crash`; the environment systemd-coredump also logs is never read. Pure.
"""

from __future__ import annotations

import re

from .report import MAX_FRAMES, Crash, Frame, Thread

COREDUMP_MESSAGE_ID = "fc2e22bc6ee647b6b90729ab34a250b1"
_THREAD = re.compile(r"Stack trace of thread (\d+):")
# systemd 246 and later append "+ 0xOFFSET"; older ones print the module alone.
_FRAME = re.compile(r"\s*#(\d+)\s+0x[0-9a-f]+ (\S+) \((.*?)(?: \+ (0x[0-9a-f]+))?\)\s*$")
_UNKNOWN = "n/a"


def field(entry: dict[str, object], name: str) -> str | None:
    """A field as text: journalctl prints binary values as byte arrays, and
    repeated fields as arrays of values (the first is taken)."""
    value = entry.get(name)
    if isinstance(value, list) and value and not isinstance(value[0], int):
        value = value[0]
    if isinstance(value, list):
        octets = [b for b in value if isinstance(b, int) and 0 <= b < 256]
        return bytes(octets).decode("utf-8", "replace") if len(octets) == len(value) else None
    return value if isinstance(value, str) else None


def crash_from_entry(entry: dict[str, object], include_cmdline: bool = False) -> Crash:
    executable = field(entry, "COREDUMP_EXE") or ""
    name = field(entry, "COREDUMP_COMM") or executable.rsplit("/", 1)[-1] or "unknown"
    threads = parse_stack_trace(field(entry, "MESSAGE") or "")
    return Crash(
        executable=executable or name,
        name=name,
        pid=_number(field(entry, "COREDUMP_PID")),
        signal=_number(field(entry, "COREDUMP_SIGNAL")),
        threads=threads,
        error=None if threads else "systemd-coredump logged no stack trace",
        cmdline=field(entry, "COREDUMP_CMDLINE") if include_cmdline else None,
        timestamp=_seconds(field(entry, "COREDUMP_TIMESTAMP")),
    )


def parse_stack_trace(message: str) -> tuple[Thread, ...]:
    threads: list[Thread] = []
    tid: int | None = None
    frames: list[Frame] = []
    for line in message.splitlines():
        if match := _THREAD.match(line):
            if tid is not None:
                threads.append(Thread(tid, tuple(frames)))
            tid, frames = int(match[1]), []
        elif (match := _FRAME.match(line)) and tid is not None and len(frames) < MAX_FRAMES:
            function, module, offset = match[2], match[3], match[4]
            frames.append(
                Frame(
                    None if function == _UNKNOWN else function,
                    None if module == _UNKNOWN else module,
                    None if offset is None else int(offset, 16),
                )
            )
    if tid is not None:
        threads.append(Thread(tid, tuple(frames)))
    return tuple(threads)


def _number(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


def _seconds(usec: str | None) -> int | None:
    number = _number(usec)
    return None if number is None else number // 1_000_000
