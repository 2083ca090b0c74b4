"""Kernel log records, from /dev/kmsg or from dmesg-style text.

The klog probe reads kernel messages in two shapes: records as /dev/kmsg hands
them out (`prio,seq,ts_usec,flags[,more];message`, then ` KEY=value`
dictionary lines), and text lines as `dmesg` prints them, with or without a
`[seconds.micros]` timestamp and a `<prio>` prefix. This module turns either
into `KmsgRecord` values.

It is pure: it never opens files or devices, and it never raises on bad input.
Invalid UTF-8 becomes U+FFFD.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

# What a text line does not say: dmesg prints no sequence numbers, and a line
# without a `<prio>` prefix has no level or facility.
UNKNOWN = -1

# Digit counts are bounded: int() refuses strings of more than 4300 digits.
_KMSG_HEADER = re.compile(r"([0-9]{1,10}),([0-9]{1,20}),([0-9]{1,20}),[^;]*;")
_PRIO = re.compile(r"<([0-9]{1,4})>")
# `[  123.456789] `, optionally followed by a caller id (`[    T42]`). Some
# loggers pad with a tab (`[\t68764.975944]`) or put no space after the `]`.
_TIMESTAMP = re.compile(r"\[[ \t]*([0-9]{1,12})\.([0-9]{1,9})\](?:\[[ \t]*[TC][0-9]{1,10}\])? ?")
_ESCAPE = re.compile(rb"\\x([0-9a-fA-F]{2})")


@dataclass(frozen=True, slots=True)
class KmsgRecord:
    """One kernel log message; fields the source did not carry are UNKNOWN."""

    level: int  # 0 (emerg) .. 7 (debug)
    facility: int  # 0 = kernel, 1 = user, 3 = daemon, ...
    seq: int
    ts_usec: int  # microseconds since boot
    message: str


def decode(data: str | bytes) -> str:
    """Text of `data`; invalid UTF-8 and lone surrogates become U+FFFD."""
    if isinstance(data, str):
        # surrogatepass cannot fail; the decode below then replaces what it let through.
        data = data.encode("utf-8", "surrogatepass")
    return data.decode("utf-8", "replace")


def parse_kmsg_record(data: str | bytes) -> KmsgRecord | None:
    """One record as read(2) on /dev/kmsg returns it, or None if `data` is not one.

    Dictionary lines after the first (` SUBSYSTEM=pci`, ` DEVICE=+pci:...`) are
    dropped. The kernel writes bytes outside printable ASCII, and the backslash,
    as `\\xNN`; they are decoded back, so a UTF-8 message comes out as text.
    """
    text = decode(data)
    header = _KMSG_HEADER.match(text)
    if header is None:
        return None
    prio, seq, ts_usec = (int(group) for group in header.groups())
    body = text[header.end() :].split("\n", 1)[0].rstrip("\r")
    raw = _ESCAPE.sub(lambda m: bytes([int(m[1], 16)]), body.encode("utf-8", "surrogatepass"))
    return KmsgRecord(prio & 7, prio >> 3, seq, ts_usec, raw.decode("utf-8", "replace"))


def parse_text_line(line: str | bytes) -> KmsgRecord:
    """A dmesg-style line: an optional `<prio>`, an optional `[ts]`, the message.

    The message keeps its own leading spaces (call trace lines start with one);
    only the single space dmesg puts after the timestamp is removed.
    """
    text = decode(line).rstrip("\r\n")
    level = facility = ts_usec = UNKNOWN
    prio = _PRIO.match(text)
    if prio is not None:
        level, facility = int(prio[1]) & 7, int(prio[1]) >> 3
        text = text[prio.end() :]
    stamp = _TIMESTAMP.match(text)
    if stamp is not None:
        ts_usec = int(stamp[1]) * 1_000_000 + int(stamp[2].ljust(6, "0")[:6])
        text = text[stamp.end() :]
    return KmsgRecord(level, facility, UNKNOWN, ts_usec, text)


class LineParser:
    """`parse_lines` one line at a time, for input that arrives in pieces.

    A line starting with a space right after a /dev/kmsg record is that
    record's dictionary and is skipped; anywhere else it is a message (call
    trace lines in bare text start with a space too).
    """

    def __init__(self) -> None:
        self._after_record = False

    def parse(self, line: str | bytes) -> KmsgRecord | None:
        """The record on `line`, or None for a dictionary line."""
        text = decode(line).rstrip("\r\n")
        if self._after_record and text.startswith(" "):
            return None
        record = parse_kmsg_record(text)
        self._after_record = record is not None
        return record if record is not None else parse_text_line(text)


def parse_lines(lines: Iterable[str | bytes]) -> Iterator[KmsgRecord]:
    """Records from the lines of a file holding /dev/kmsg records or dmesg text."""
    parser = LineParser()
    for line in lines:
        record = parser.parse(line)
        if record is not None:
            yield record
