"""Put the kernel log dumps that pstore kept back together, and find the crash in each.

When the kernel oopses or panics, pstore saves the tail of its log in
records that survive a reboot, shown as files such as `dmesg-efi-<id>` or
`dmesg-ramoops-<n>`. A dump too large for one record is split in parts,
each file starting with a line like `Panic#2 Part3`; Part1 holds the end of
the log, higher parts what came before. `group_dumps` joins the parts of each
dump in log order, and `crash_event` picks the report that matters (the most
severe, the first of those) with `OopsScanner`. Pure: files are read by the
caller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..klog.event import KernelEvent, Kind
from ..klog.kmsg import parse_lines
from ..klog.parser import OopsScanner

_FILE = re.compile(r"dmesg-(?P<backend>.+)-(?P<id>\d+)(?P<compressed>\.enc\.z)?")
_HEADER = re.compile(r"(?P<reason>\w+)#(?P<count>\d+) Part(?P<part>\d+)")
_TAIL_LINES = 64  # what a dump without a recognised report is reported with


@dataclass(frozen=True, slots=True)
class Part:
    name: str  # the file name in the pstore directory
    backend: str  # efi, efi_pstore, ramoops, erst...
    reason: str  # Oops, Panic, ... as the kernel's dump header says
    count: int  # the dump's number since its boot
    number: int  # 1 is the end of the log
    mtime: float
    body: str  # the log lines after the header


@dataclass(frozen=True, slots=True)
class Dump:
    backend: str
    reason: str
    count: int
    parts: tuple[Part, ...]  # in log order: the highest part number first

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(part.name for part in self.parts)

    @property
    def text(self) -> str:
        return "".join(part.body.removesuffix("\n") + "\n" for part in self.parts)


def is_dump_file(name: str) -> bool:
    return _FILE.fullmatch(name) is not None


def is_compressed(name: str) -> bool:
    found = _FILE.fullmatch(name)
    return found is not None and found["compressed"] is not None


def read_part(name: str, content: str, mtime: float) -> Part | None:
    """A dump file's part, or None if `name` is not a dmesg dump."""
    found = _FILE.fullmatch(name)
    if found is None:
        return None
    first, _, body = content.partition("\n")
    header = _HEADER.fullmatch(first.strip())
    if header is None:  # no header: the whole file is one part of its own
        return Part(name, found["backend"], "Dump", int(found["id"]), 1, mtime, content)
    return Part(
        name,
        found["backend"],
        header["reason"],
        int(header["count"]),
        int(header["part"]),
        mtime,
        body,
    )


def group_dumps(parts: list[Part]) -> list[Dump]:
    """Parts joined into dumps, oldest dump first.

    Parts belong together when backend, reason and count agree; since counts
    start again at each boot, a part number seen twice starts another dump
    (parts are taken in the order they were written).
    """
    dumps: list[list[Part]] = []
    open_dumps: dict[tuple[str, str, int], list[Part]] = {}
    for part in sorted(parts, key=lambda p: (p.mtime, -p.number, p.name)):
        key = (part.backend, part.reason, part.count)
        current = open_dumps.get(key)
        if current is None or any(p.number == part.number for p in current):
            current = open_dumps[key] = []
            dumps.append(current)
        current.append(part)
    return [_dump(group) for group in dumps]


def _dump(parts: list[Part]) -> Dump:
    first = parts[0]
    in_log_order = sorted(parts, key=lambda part: -part.number)
    return Dump(first.backend, first.reason, first.count, tuple(in_log_order))


def crash_event(dump: Dump) -> KernelEvent:
    """The dump's most severe report (the first of equals), or its tail when none is found."""
    scanner = OopsScanner()
    records = list(parse_lines(dump.text.splitlines()))
    events = [event for record in records for event in scanner.feed(record.message)]
    events += scanner.flush()
    if events:
        worst = max(event.severity for event in events)
        return next(event for event in events if event.severity == worst)
    kind = Kind.PANIC if dump.reason == "Panic" else Kind.BUG
    reason = f"{dump.reason}#{dump.count} saved by pstore ({dump.backend})"
    tail = tuple(record.message for record in records[-_TAIL_LINES:])
    return KernelEvent.from_lines(kind, (reason, *tail))
