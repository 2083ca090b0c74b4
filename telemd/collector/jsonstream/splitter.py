"""Split a byte stream of concatenated JSON values into values, as bytes arrive.

Values may be separated by whitespace or by nothing at all (`{"a":1}{"b":2}`).
One value a line, the common case, takes a fast path: the line goes to the
JSON parser whole. Anything else is scanned for the end of the value (strings,
escapes and brackets) and then parsed. Only the value being read is held, at
most `max_value` bytes: never the stream.

Bad input does not raise: `feed` and `end` return the values read before it
and the error, with the number of the value at fault. Pure code: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from telemd.collector import json_codec

# The largest event; the Vrooli lines and a WebSocket message have the same bound.
MAX_VALUE = 1024 * 1024
_NOT_SPACE = re.compile(rb"[^ \t\r\n]")
_STRUCTURE = re.compile(rb'[{}\[\]"]')
_STRING_SPECIAL = re.compile(rb'["\\]')
# A number or a literal (true, false, null) ends at whitespace or structure.
_BARE_END = re.compile(rb'[ \t\r\n{}\[\]",:]')


@dataclass(slots=True)
class Split:
    """The values read from one piece of the stream, and the error that ended it."""

    values: list[Any] = field(default_factory=list)
    error: str | None = None
    too_large: bool = False


class JsonSplitter:
    def __init__(self, max_value: int = MAX_VALUE) -> None:
        self.max_value = max_value
        self.count = 0  # values read so far
        self._buf = bytearray()
        self._start = -1  # where the value being scanned starts; -1: between values
        self._scan = 0  # where scanning resumes
        self._depth = 0
        self._in_string = False
        self._bare = False
        self._failed = False

    def feed(self, data: bytes) -> Split:
        """The values that `data` completes."""
        split = Split()
        if self._failed:
            split.error = "the stream already failed"
            return split
        self._buf += data
        consumed = self._read(split, at_end=False)
        del self._buf[:consumed]
        if self._start >= 0:
            self._start -= consumed
            self._scan -= consumed
        return split

    def end(self) -> Split:
        """The stream is over: the value still being read is whole, or an error."""
        split = Split()
        if self._failed:
            return split
        consumed = self._read(split, at_end=True)
        del self._buf[:consumed]
        if split.error is None and _NOT_SPACE.search(self._buf):
            self._fail(split, f"value {self.count + 1} is cut off at the end of the stream")
        return split

    def _fail(self, split: Split, message: str, too_large: bool = False) -> None:
        self._failed = True
        split.error = message
        split.too_large = too_large

    def _read(self, split: Split, at_end: bool) -> int:
        """Append the whole values in the buffer; return the bytes consumed."""
        buf = self._buf
        pos = 0
        while True:
            if self._start < 0:
                found = _NOT_SPACE.search(buf, pos)
                if found is None:
                    return len(buf)
                start = found.start()
                newline = buf.find(b"\n", start)
                if newline >= 0 and newline - start <= self.max_value:
                    try:
                        split.values.append(json_codec.loads(bytes(buf[start:newline])))
                    except ValueError:
                        pass  # not one value a line: scan it
                    else:
                        self.count += 1
                        pos = newline + 1
                        continue
                if not self._begin(split, start):
                    return pos
            end = self._find_end(at_end)
            if end < 0:
                if len(buf) - self._start > self.max_value:
                    self._fail(
                        split,
                        f"value {self.count + 1} is larger than {self.max_value} bytes",
                        too_large=True,
                    )
                return pos
            if end - self._start > self.max_value:
                self._fail(
                    split,
                    f"value {self.count + 1} is larger than {self.max_value} bytes",
                    too_large=True,
                )
                return pos
            try:
                split.values.append(json_codec.loads(bytes(buf[self._start : end])))
            except ValueError as exc:
                self._fail(split, f"value {self.count + 1} is not valid JSON: {_reason(exc)}")
                return pos
            self.count += 1
            pos = end
            self._start = -1

    def _begin(self, split: Split, start: int) -> bool:
        first = self._buf[start]
        if first in b"}]":
            where = f"value {self.count + 1}"
            self._fail(split, f"{where} is not valid JSON: unexpected {chr(first)!r}")
            return False
        self._start = start
        self._depth = 0
        self._in_string = first == ord('"')
        self._bare = first not in b'{["'
        self._scan = start + 1 if (self._in_string or self._bare) else start
        return True

    def _find_end(self, at_end: bool) -> int:
        """The end of the value being scanned, or -1 when more bytes are needed."""
        buf = self._buf
        if self._bare:
            found = _BARE_END.search(buf, self._scan)
            if found is None:
                self._scan = len(buf)
                return len(buf) if at_end else -1
            return found.start()
        scan = self._scan
        while True:
            if self._in_string:
                found = _STRING_SPECIAL.search(buf, scan)
                if found is None:
                    self._scan = len(buf)
                    return -1
                at = found.start()
                if buf[at] == 0x5C:  # a backslash escapes the next byte
                    if at + 1 >= len(buf):
                        self._scan = at
                        return -1
                    scan = at + 2
                    continue
                self._in_string = False
                scan = at + 1
                if self._depth == 0:
                    return scan
                continue
            found = _STRUCTURE.search(buf, scan)
            if found is None:
                self._scan = len(buf)
                return -1
            at = found.start()
            byte = buf[at]
            scan = at + 1
            if byte == 0x22:
                self._in_string = True
            elif byte in b"{[":
                self._depth += 1
            else:
                self._depth -= 1
                if self._depth == 0:
                    return scan


def _reason(exc: ValueError) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
