"""`klogscanner`: kernel problem reports become `org.clearlinux/kernel/*` records.

Reads kernel log records (/dev/kmsg, or `--source FILE` in its format or
dmesg's), finds oopses, BUG:s, warnings, faults, lockups, hung tasks, RCU
stalls, panics, OOM kills and machine checks with `OopsScanner`, and sends
one record per report in Clear's kernel layout; a report whose signature
this boot has seen already is not sent again. A report still open is ended
at the end of input and after `klog_quiet_period` seconds of silence.

On /dev/kmsg the sequence number of the last record reported is kept under
the state directory with the boot id, so that a restart does not send the
same boot's reports twice; where it cannot be saved, nothing is sent.
"""

from __future__ import annotations

import os

from telemd.atomic_file import replace_file
from telemd.record import Record

from ..common.cli import (
    COMMON_OPTIONS,
    EXIT_CANNOT_SAVE,
    Options,
    Shutdown,
    deliver,
    log,
    start_command,
    text_option,
)
from ..common.settings import ProbeSettings
from .event import KernelEvent
from .parser import Deduper, OopsScanner
from .source import KMSG, is_device, read_records

PROG = "klogscanner"
POSITION_NAME = "klogscanner.position"
_BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"
OPTIONS = {
    **COMMON_OPTIONS,
    "s": ("source", True),
    "o": ("once", False),
    "S": ("state-dir", True),
}
HELP = f"""\
Usage: {PROG} [-s PATH] [--once] [-f FILE]
Send a record for each problem the kernel reports in its log.

  -s, --source PATH       kernel log records to read (default {KMSG}); a file
                          in /dev/kmsg's or dmesg's format is read to its end
  -o, --once              stop at the end of the log instead of waiting
  -S, --state-dir DIR     where the position in /dev/kmsg is kept
  -f, --config-file FILE  configuration file to use
  -V, --version           print the version
  -h, --help              show this help
"""


class Position:
    """The last /dev/kmsg sequence number handled this boot, kept in a file."""

    def __init__(self, path: str) -> None:
        self.path = path
        with open(_BOOT_ID_FILE, encoding="ascii") as handle:
            self.boot_id = handle.read().strip()

    def load(self) -> int:
        try:
            with open(self.path, encoding="ascii") as handle:
                boot_id, seq = handle.read(256).split()
            return int(seq) if boot_id == self.boot_id else -1
        except (OSError, ValueError):
            return -1

    def save(self, seq: int) -> None:
        replace_file(self.path, f"{self.boot_id} {seq}\n")


def main(argv: list[str] | None = None) -> int:
    started = start_command(PROG, argv, OPTIONS, HELP)
    if isinstance(started, int):
        return started
    options, settings = started
    source = text_option(options, "source") or KMSG
    position = None
    if is_device(source):
        state_dir = text_option(options, "state-dir") or settings.state_dir
        position = Position(os.path.join(state_dir, POSITION_NAME))
        if not _save(position, position.load()):  # before anything is sent
            return EXIT_CANNOT_SAVE
    try:
        return _scan(source, position, bool(options.get("once")), settings, options)
    except OSError as exc:
        log(PROG, f"cannot read {source}: {exc.strerror or exc}")
        return 1


def _scan(
    source: str, position: Position | None, once: bool, settings: ProbeSettings, options: Options
) -> int:
    scanner = OopsScanner()
    deduper = Deduper()
    failures = 0
    after = -1 if position is None else position.load()
    # Reports ended by a record may not include it (it can open the next
    # report), so the position saved is that of the record before.
    previous_seq = after
    records = read_records(source, once=once, quiet=settings.klog_quiet_period, after_seq=after)
    shutdown = Shutdown()
    for record in records:
        shutdown.begin()
        events = scanner.flush() if record is None else scanner.feed(record.message)
        failures += sum(not _report(event, deduper, settings, options) for event in events)
        if events and position is not None and not _save(position, previous_seq):
            return EXIT_CANNOT_SAVE  # stopping, rather than send these again after a restart
        if record is not None:
            previous_seq = record.seq
        shutdown.end()
    failures += sum(not _report(event, deduper, settings, options) for event in scanner.flush())
    if position is not None and previous_seq > after and not _save(position, previous_seq):
        return EXIT_CANNOT_SAVE
    return 0 if failures == 0 else 1


def _report(
    event: KernelEvent, deduper: Deduper, settings: ProbeSettings, options: Options
) -> bool:
    what = f"{event.kind.name.lower()} {event.signature}"
    if not deduper.is_new(event):
        log(PROG, f"{what}: seen this boot, not sent again")
        return True
    record = Record(event.classification, event.severity, event.payload())
    return deliver(PROG, record, settings, options, what) is None


def _save(position: Position, seq: int) -> bool:
    try:
        position.save(seq)
    except OSError as exc:
        log(PROG, f"cannot save the position in {position.path}: {exc.strerror}; stopping")
        return False
    return True
