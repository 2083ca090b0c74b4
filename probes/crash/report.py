"""A crashed process, its classification and the payload Clear's backends read.

Both ways into the crash probe (a core from the kernel, an entry from
systemd-coredump) end in a `Crash`. `classify` applies Clear's privacy
filter, `payload` writes Clear's crash layout (PROTOCOL.md section 6) with
telemd's additions as extra header lines and a module offset after each
frame's module, and `storm_key` says which crashes are "the same" for storm
counting. Pure: no I/O, and nothing here ever sees memory contents.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..common.record_kind import RecordKind

MAX_FRAMES = 64  # per thread, as Clear's probe
MAX_PAYLOAD_BYTES = 8192
_MAX_LINE_CHARS = 512  # a C++ symbol can be kilobytes long
_STORM_FRAMES = 3  # top frames of the crashing thread that make two crashes the same


class CrashKind(RecordKind):
    """Clear's crash classifications; the value is (classification, severity)."""

    CLR = ("org.clearlinux/crash/clr", 3)
    ERROR = ("org.clearlinux/crash/error", 4)
    UNKNOWN = ("org.clearlinux/crash/unknown", 2)
    CLR_BUILD = ("org.clearlinux/crash/clr-build", 2)


# The one line a privacy-filtered record carries, as Clear's probe wrote it.
_ONE_LINERS = {
    CrashKind.UNKNOWN: "Crash from third party",
    CrashKind.CLR_BUILD: "Crash from Clear package build",
}


@dataclass(frozen=True, slots=True)
class Frame:
    function: str | None = None
    module: str | None = None
    offset: int | None = None  # of the program counter in its module
    source: str | None = None  # `file:line`, where debug information has it

    def line(self, number: int) -> str:
        if self.module is None:
            return f"#{number} (no symbols)"
        function = f"{self.function}()" if self.function else "???"
        text = f"#{number} {function} - [{self.module}]"
        if self.offset is not None:
            text += f" +{self.offset:#x}"
        if self.source:
            text += f" - {self.source}"
        return text


@dataclass(frozen=True, slots=True)
class Thread:
    tid: int
    frames: tuple[Frame, ...]


@dataclass(frozen=True, slots=True)
class Crash:
    executable: str  # the path of the program
    name: str  # the process name (comm)
    pid: int | None = None
    signal: int | None = None
    threads: tuple[Thread, ...] = ()  # the crashing thread first
    error: str | None = None  # why the backtrace is missing or partial
    cmdline: str | None = None  # only when crash_include_cmdline is on
    core_cut_at: int | None = None  # bytes kept of a core that was larger
    timestamp: int | None = None  # unix seconds of the crash


def classify(executable: str, privacy_filters: bool) -> CrashKind:
    """Clear's rule: programs outside /usr (or in /usr/local) and package builds
    send one line only, unless the privacy filters are lifted."""
    if privacy_filters:
        if "/builddir/build/BUILD/" in executable:
            return CrashKind.CLR_BUILD
        if not executable.startswith("/usr/") or executable.startswith("/usr/local/"):
            return CrashKind.UNKNOWN
    return CrashKind.CLR


def needs_backtrace(kind: CrashKind) -> bool:
    return kind not in _ONE_LINERS


def final_kind(kind: CrashKind, crash: Crash) -> CrashKind:
    """A crash that was to be unwound but could not be becomes `crash/error`."""
    return CrashKind.ERROR if kind is CrashKind.CLR and crash.error is not None else kind


def storm_key(crash: Crash) -> str:
    """Executable, signal and the top frames of the crashing thread."""
    top = crash.threads[0].frames[:_STORM_FRAMES] if crash.threads else ()
    frames = " ".join(f"{frame.function}@{frame.module}" for frame in top)
    return f"{crash.executable}\n{crash.signal}\n{frames}"


def payload(crash: Crash, kind: CrashKind, count: int = 1) -> str:
    """The record payload; `count` is how many crashes this record stands for."""
    if kind in _ONE_LINERS:
        times = f" ({count} crashes)" if count > 1 else ""
        return f"{_ONE_LINERS[kind]}{times}\n"
    header = [f"Process: {crash.executable}"]
    if crash.pid is not None:
        header.append(f"PID: {crash.pid}")
    if crash.signal is not None:
        header.append(f"Signal: {crash.signal}")
    header += [f"Name: {crash.name}", f"Crashes: {count}"]
    if crash.core_cut_at is not None:
        header.append(f"Core: cut at {crash.core_cut_at} bytes")
    if crash.cmdline is not None:
        header.append(f"Cmdline: {crash.cmdline}")
    if crash.error is not None:
        header.append(f"Error: {crash.error}")
    lines = header
    for thread in crash.threads:
        lines += ["", f"Backtrace (TID {thread.tid}):"]
        lines += [frame.line(n) for n, frame in enumerate(thread.frames[:MAX_FRAMES])]
    return _fit(lines)


def _fit(lines: list[str]) -> str:
    """Printable ASCII lines, whole, up to the payload limit."""
    out: list[str] = []
    size = 0
    for line in lines:
        text = "".join(c if " " <= c <= "~" else "?" for c in line[:_MAX_LINE_CHARS]) + "\n"
        if size + len(text) > MAX_PAYLOAD_BYTES:
            break
        out.append(text)
        size += len(text)
    return "".join(out)
