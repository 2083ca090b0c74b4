"""Find problem reports in the kernel log, one message at a time.

`OopsScanner` is the pure heart of the klog probe: fed messages in log order,
it gathers the lines of each oops, warning, panic, lockup, stall, OOM kill or
hardware error report and returns a `KernelEvent` once the report is over.
`Deduper` says whether this boot has seen an event's signature before.

Neither keeps a clock or does I/O: the caller reads the log, and calls
`flush()` at the end of input or when the log has gone quiet. Memory stays
bounded whatever they are fed, and no input makes them raise.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from .event import KernelEvent, Kind
from .fields import is_frame_line, is_register_line

MAX_LINES = 256  # a report longer than this is cut and marked truncated
MAX_BYTES = 16 * 1024
MAX_LINE_CHARS = 1024  # the kernel's own line limit is a little under this
_HEADER_LINES = 64  # lines a report may run before its call trace starts
_DRAIN_LINES = 1024  # lines a report may run in all, those past MAX_LINES included

_CUT_HERE = "[ cut here ]"
_END_MARKS = ("[ end trace", "---[ end Kernel panic")
_HARDWARE_ERROR = "[Hardware Error]"
_OOM_KILLED = "Killed process"
_CALL_TRACE = re.compile(r"(?:Call Trace|Call trace|Backtrace):")
# What a dump_stack() after a one-line message starts with.
_DUMP_OPENER = re.compile(r"(?:CPU|PID|Pid): |Hardware name:|Modules linked in:|Call [Tt]race:")
# Lines that keep a report going after its call trace has started.
_TRACE_TAIL = re.compile(
    r"(?:Call [Tt]race:|Code:|Modules linked in:|Kernel Offset:|Shutting down cpus|Rebooting in"
    r"|CPU: |Hardware name:|NMI backtrace for cpu|Sending NMI from CPU|Exception stack"
    r"|irq event stamp:|hardirqs last|softirqs last|---\[)"
)


class _Role(enum.Enum):
    TRACE = enum.auto()  # opens a report that has a dump of its own
    MESSAGE = enum.auto()  # a one-line message; a dump or a WARNING: may follow it
    TRAP = enum.auto()  # what WARN() and BUG() print; completes a MESSAGE just before
    PART = enum.auto()  # continues an open report of its kind, else opens one


@dataclass(frozen=True, slots=True)
class _Starter:
    pattern: re.Pattern[str]
    kind: Kind
    role: _Role = _Role.TRACE
    anywhere: bool = False  # searched for in the whole line, not matched at its start

    def matches(self, text: str) -> bool:
        found = self.pattern.search(text) if self.anywhere else self.pattern.match(text)
        return found is not None


def _starter(
    pattern: str, kind: Kind, role: _Role = _Role.TRACE, anywhere: bool = False
) -> _Starter:
    return _Starter(re.compile(pattern), kind, role, anywhere)


# Tried in order, the first match wins.
_STARTERS = (
    # Lockups and stalls first: their lines say BUG: and INFO: too.
    _starter(r"(?:[\w ]*watchdog: )?BUG: soft lockup - CPU#\d+ stuck for \d+s!", Kind.SOFTLOCKUP),
    _starter(r"(?:[\w ]*watchdog: )?Watchdog detected hard LOCKUP on cpu \d+", Kind.HARDLOCKUP),
    _starter(
        r"(?:rcu: )?(?:INFO: )?rcu_\w+ (?:self-)?detected (?:expedited )?stalls? on (?:CPU|task)",
        Kind.RCUSTALL,
    ),
    _starter(r"INFO: task .{1,64}:\d+ blocked for more than \d+ seconds", Kind.HUNGTASK),
    _starter(r"Kernel panic - not syncing:", Kind.PANIC),
    _starter(r"do_IRQ: stack overflow:", Kind.STACKOVERFLOW, _Role.MESSAGE),
    _starter(r"BERT: Error records from previous boot:", Kind.BERT),
    _starter(
        r"mce: \[Hardware Error\]:|(?:mce: )?(?:\[Hardware Error\]: )?Machine check events logged",
        Kind.MCE,
        _Role.PART,
    ),
    _starter(r" invoked oom-killer: ", Kind.OOM, anywhere=True),
    _starter(
        r"oom-kill:|(?:Memory cgroup o|O)ut of memory(?: \([\w ]+\))?: Kill", Kind.OOM, _Role.PART
    ),
    _starter(r"kernel BUG at ", Kind.BUG, _Role.TRAP),
    _starter(
        r"BUG:|general protection fault|(?:PANIC: )?double fault|Badness"
        r"|(?i:unable to handle kernel)",
        Kind.BUG,
    ),
    _starter(r"(?:Internal error: )?Oops\b", Kind.BUG, _Role.PART),
    _starter(
        r"Eeek! page_mapcount\(page\) went negative!|near stack overflow", Kind.BUG, _Role.MESSAGE
    ),
    _starter(r"ALSA \S+: BUG:", Kind.BUG, _Role.MESSAGE),  # snd_BUG(), a sound driver's check
    _starter(r"WARNING:", Kind.WARNING, _Role.TRAP),
    _starter(r"NETDEV WATCHDOG: ", Kind.WARNING, _Role.MESSAGE, anywhere=True),
    _starter(
        r"sysctl table check failed|(?:genirq: )?IRQ handler type mismatch for IRQ"
        r"|RTNL: assertion failed|list_(?:add|del) corruption|ACPI (?:BIOS )?Error"
        r"|irq \d+: nobody cared",
        Kind.WARNING,
        _Role.MESSAGE,
    ),
)


class _Step(enum.Enum):
    TAKE = enum.auto()  # the line belongs to the report
    LAST = enum.auto()  # the line belongs to the report and ends it
    STOP = enum.auto()  # the report ended before the line


class _Report:
    """The report being gathered; mutable, and private to the scanner."""

    __slots__ = ("emitted", "in_stack", "kind", "lines", "quiet", "seen", "size")

    def __init__(self, kind: Kind, quiet: bool) -> None:
        self.kind = kind
        self.quiet = quiet  # a one-line message so far, that nothing has followed up
        self.in_stack = False
        self.lines: list[str] = []
        self.size = 0
        self.seen = 0  # lines taken, including those dropped past the bound
        self.emitted = False  # sent as truncated; the rest of it is being drained

    def step(self, text: str, starter: _Starter | None) -> _Step:
        """What the next line is to this report; its state moves on with it."""
        if self.seen >= _DRAIN_LINES:
            return _Step.STOP
        if starter is not None:
            if not self.absorbs(starter):
                return _Step.STOP
            if starter.role is _Role.TRAP and starter.kind.severity > self.kind.severity:
                self.kind = starter.kind  # list_del corruption, then kernel BUG at
            self.quiet = False
        elif self.kind in (Kind.BERT, Kind.MCE):
            if _HARDWARE_ERROR not in text:
                return _Step.STOP
        elif self.kind is Kind.OOM or _ends(self.kind, text):
            pass  # an OOM report runs through its memory dump to the kill; end marks end any
        elif self.quiet:
            if not _DUMP_OPENER.match(text):
                return _Step.STOP
            self.quiet = False
        elif not self.in_stack:
            if _CALL_TRACE.match(text) or is_frame_line(text):
                self.in_stack = True
            elif self.seen >= _HEADER_LINES:
                return _Step.STOP
        elif not (is_frame_line(text) or is_register_line(text) or _TRACE_TAIL.match(text)):
            return _Step.STOP
        return _Step.LAST if _ends(self.kind, text) else _Step.TAKE

    def absorbs(self, starter: _Starter) -> bool:
        """Whether a line that could open a report belongs to the open one instead."""
        if starter.role is _Role.PART:
            return starter.kind is self.kind
        if starter.role is _Role.TRAP:
            return self.quiet
        # Older kernels print WARN()'s message after the WARNING: line.
        return (
            starter.role is _Role.MESSAGE
            and starter.kind is Kind.WARNING
            and self.kind in (Kind.WARNING, Kind.BUG)
            and not self.in_stack
            and not self.quiet
        )


class OopsScanner:
    """Turns kernel log messages, fed in order, into `KernelEvent`s."""

    def __init__(self) -> None:
        self._report: _Report | None = None

    def feed(self, message: str) -> list[KernelEvent]:
        """Take one message (several lines are taken one by one); return ended reports."""
        events: list[KernelEvent] = []
        for line in message.split("\n"):
            events += self._feed_line(line[:MAX_LINE_CHARS])
        return events

    def flush(self) -> list[KernelEvent]:
        """End the report in progress, at the end of input or when the log went quiet."""
        return self._close()

    def _feed_line(self, line: str) -> list[KernelEvent]:
        if _CUT_HERE in line:  # it only announces the WARNING or BUG line to come
            return []
        text = line.lstrip()
        starter = next((s for s in _STARTERS if s.matches(text)), None)
        events: list[KernelEvent] = []
        report = self._report
        if report is not None:
            step = report.step(text, starter)
            if step is not _Step.STOP:
                events += self._take(report, line)
                if step is _Step.LAST:
                    events += self._close()
                return events
            events += self._close()
        if starter is not None:
            report = self._report = _Report(starter.kind, starter.role is _Role.MESSAGE)
            events += self._take(report, line)
            if _ends(report.kind, text):
                events += self._close()
        return events

    def _take(self, report: _Report, line: str) -> list[KernelEvent]:
        report.seen += 1
        if report.emitted:
            return []
        size = len(line.encode("utf-8", "surrogatepass"))
        if len(report.lines) < MAX_LINES and report.size + size <= MAX_BYTES:
            report.lines.append(line)
            report.size += size
            return []
        report.emitted = True
        return [KernelEvent.from_lines(report.kind, tuple(report.lines), truncated=True)]

    def _close(self) -> list[KernelEvent]:
        report, self._report = self._report, None
        if report is None or report.emitted:
            return []
        return [KernelEvent.from_lines(report.kind, tuple(report.lines))]


def _ends(kind: Kind, text: str) -> bool:
    if kind is Kind.OOM and _OOM_KILLED in text:
        return True
    return kind not in (Kind.BERT, Kind.MCE) and any(mark in text for mark in _END_MARKS)


class Deduper:
    """Remembers the signatures seen this boot; past `capacity`, forgets the least recent."""

    def __init__(self, capacity: int = 1024) -> None:
        self._capacity = capacity
        self._seen: dict[str, None] = {}  # insertion-ordered: the oldest comes first

    def is_new(self, event: KernelEvent) -> bool:
        """True the first time an event's classification and signature are seen."""
        key = f"{event.classification} {event.signature}"
        known = key in self._seen
        self._seen.pop(key, None)
        self._seen[key] = None  # a repeat makes the signature the most recent again
        if len(self._seen) > self._capacity:
            del self._seen[next(iter(self._seen))]
        return not known
