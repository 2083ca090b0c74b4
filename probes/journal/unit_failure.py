"""A systemd unit that entered the failed state, and its `org.clearlinux/journal/error` payload.

Clear's journal probe sent `MESSAGE=<message>` lines; this payload starts the
same way, with the message systemd itself logs for a failed unit, adds the
unit, result and exit status as journal-style `KEY=value` lines, and ends
with the unit's last log lines after a blank line. Pure.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

CLASSIFICATION = "org.clearlinux/journal/error"
SEVERITY = 2
MAX_PAYLOAD_BYTES = 8192
_MAX_LINE_CHARS = 1024
# How the main process ended (ExecMainCode), as waitid(2) reports it.
_EXIT_CODES = {1: "exited", 2: "killed", 3: "dumped"}


@dataclass(frozen=True, slots=True)
class UnitFailure:
    unit: str  # demo.service
    result: str  # exit-code, signal, core-dump, timeout, ...
    invocation: str  # systemd's invocation id of the failed run, hex; may be empty
    changed_at: int = 0  # StateChangeTimestamp, usec: tells runs apart without an invocation id
    exit_code: int = 0  # ExecMainCode of a service: 0 none, 1 exited, 2 killed, 3 dumped
    exit_status: int = 0  # the exit status, or the signal number

    @property
    def key(self) -> str:
        """Names this failure of this run, so that it is reported once."""
        return f"{self.unit} {self.invocation or self.changed_at}"

    @property
    def message(self) -> str:
        return f"{self.unit}: Failed with result '{self.result}'."


def is_ignored(unit: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(unit, pattern) for pattern in patterns)


def payload(failure: UnitFailure, journal: list[str]) -> str:
    """The record payload; the oldest log lines go first when not all fit."""
    header = [f"MESSAGE={failure.message}", f"UNIT={failure.unit}", f"RESULT={failure.result}"]
    if failure.exit_code in _EXIT_CODES:
        header.append(f"EXIT_CODE={_EXIT_CODES[failure.exit_code]}")
        header.append(f"EXIT_STATUS={failure.exit_status}")
    text = "".join(_line(line) for line in header)
    tail = [_line(line) for line in journal]
    room = MAX_PAYLOAD_BYTES - len(text) - 1  # the blank line before the log
    while tail and sum(len(line) for line in tail) > room:
        tail.pop(0)
    return text + "\n" + "".join(tail) if tail else text


def _line(text: str) -> str:
    """Printable ASCII, as the wire wants, bounded, with its newline."""
    return "".join(c if " " <= c <= "~" else "?" for c in text[:_MAX_LINE_CHARS]) + "\n"
