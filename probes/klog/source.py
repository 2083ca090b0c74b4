"""Where kernel log records come from: /dev/kmsg, or a file or pipe of lines.

`read_records` yields `KmsgRecord`s, and `None` whenever the input has been
quiet for the quiet period, so that the caller can end a report the kernel
stopped writing. /dev/kmsg hands out one record per read(2) and blocks at
the end of the buffer; with `once`, reading stops there instead. Anything
else (a file, a pipe such as `journalctl -k -f -o short-monotonic |
klogscanner -s /dev/stdin`) is read as lines, in /dev/kmsg's record format or
dmesg's, to its end. Reads are bounded: a line longer than the kernel's own
record limit comes out in pieces.
"""

from __future__ import annotations

import os
import select
import stat
from collections.abc import Iterator

from .kmsg import KmsgRecord, LineParser, parse_kmsg_record

KMSG = "/dev/kmsg"
_READ_SIZE = 16384  # more than a /dev/kmsg record can hold (the kernel's limit is ~8 KiB)


def is_device(path: str) -> bool:
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False


def read_records(
    path: str, *, once: bool, quiet: float, after_seq: int = -1
) -> Iterator[KmsgRecord | None]:
    """Records of `path` (skipping /dev/kmsg records up to `after_seq`); raise OSError."""
    device = is_device(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if device:
            yield from _device_records(fd, once, quiet, after_seq)
        else:
            yield from _line_records(fd, quiet)
    finally:
        os.close(fd)


def _device_records(
    fd: int, once: bool, quiet: float, after_seq: int
) -> Iterator[KmsgRecord | None]:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while True:
        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            if once:
                return
            if not poller.poll(quiet * 1000):
                yield None
                poller.poll()
            continue
        except BrokenPipeError:  # records were overwritten before we read them
            continue
        record = parse_kmsg_record(data)
        if record is not None and record.seq > after_seq:
            yield record


def _line_records(fd: int, quiet: float) -> Iterator[KmsgRecord | None]:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    parser = LineParser()
    pending = b""
    while True:
        if not poller.poll(quiet * 1000):
            yield None
            continue
        try:
            chunk = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            continue
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        if len(pending) >= _READ_SIZE:
            lines.append(pending)
            pending = b""
        for line in lines:
            record = parser.parse(line)
            if record is not None:
                yield record
    if pending:
        record = parser.parse(pending)
        if record is not None:
            yield record
