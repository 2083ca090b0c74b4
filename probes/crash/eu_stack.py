"""Unwind a core file with elfutils' `eu-stack`, within a deadline.

`unwind` runs `eu-stack --core=FILE -b -m -s -r -n 64` (build id and module
offset, module, source line, raw symbol names, Clear's 64 frames) and
`parse_eu_stack` turns what it prints into threads of frames:

    PID 4242 - core
    TID 4242:
    #0  0x000055a920b8b165 crash_here - /usr/bin/prog
        [63853366ad...]@0x55a920b8a000+0x1165
        /src/prog.c:4:55

eu-stack exits 1 when it showed frames but met errors, 2 when it showed none.
A timeout, a missing eu-stack and every error come back as text for the
record's `Error:` line, never as an exception.
"""

from __future__ import annotations

import os
import re

from ..common.subproc import run_bounded
from .report import MAX_FRAMES, Frame, Thread

_SEARCH_PATH = "/usr/bin:/bin:/usr/local/bin"  # the kernel starts core handlers without PATH
_OUTPUT_LIMIT = 1 << 20
_PID = re.compile(r"PID (\d+) ")
_TID = re.compile(r"TID (\d+):")
_FRAME = re.compile(r"#(\d+)\s+0x[0-9a-f]+(?: (?!- )(\S+))?(?: - (.+))?$")
_OFFSET = re.compile(r"\s+\[[0-9a-f]*\]@0x[0-9a-f]+\+(0x[0-9a-f]+)$")
_SOURCE = re.compile(r"\s+(\S+?:\d+)(?::\d+)?$")


class Unwound:
    __slots__ = ("error", "pid", "threads")

    def __init__(self, pid: int | None, threads: tuple[Thread, ...], error: str | None) -> None:
        self.pid = pid
        self.threads = threads
        self.error = error


def find_eu_stack(path: str | None = None) -> str | None:
    for directory in (path or os.environ.get("PATH") or _SEARCH_PATH).split(os.pathsep):
        candidate = os.path.join(directory or ".", "eu-stack")
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def unwind(core: str, timeout: float, user: int | None = None, group: int | None = None) -> Unwound:
    """The backtrace of every thread in `core`, and what went wrong, if anything."""
    program = find_eu_stack()
    if program is None:
        return Unwound(None, (), "eu-stack (elfutils) is not installed")
    argv = [program, f"--core={core}", "-b", "-m", "-s", "-r", "-n", str(MAX_FRAMES)]
    try:
        outcome = run_bounded(argv, timeout=timeout, limit=_OUTPUT_LIMIT, user=user, group=group)
    except OSError as exc:
        return Unwound(None, (), f"cannot run eu-stack: {exc.strerror}")
    pid, threads = parse_eu_stack(outcome.stdout.decode("utf-8", "replace"))
    error = None
    if outcome.timed_out:
        error = f"eu-stack did not finish within {timeout:g} s"
    elif outcome.returncode != 0 and not outcome.cut:
        error = _first_error(outcome.stderr) or f"eu-stack exited with status {outcome.returncode}"
    elif not threads:
        error = "eu-stack found no thread in the core"
    return Unwound(pid, threads, error)


def parse_eu_stack(text: str) -> tuple[int | None, tuple[Thread, ...]]:
    """The PID and the threads in eu-stack's output; lines it does not know are skipped."""
    pid: int | None = None
    threads: list[Thread] = []
    tid: int | None = None
    frames: list[Frame] = []

    def close() -> None:
        if tid is not None:
            threads.append(Thread(tid, tuple(frames)))

    for line in text.splitlines():
        if line.startswith(" "):
            if frames:
                frames[-1] = _annotate(frames[-1], line)
        elif match := _FRAME.match(line):
            if tid is not None and len(frames) < MAX_FRAMES:
                frames.append(Frame(match[2], match[3]))
        elif match := _TID.match(line):
            close()
            tid, frames = int(match[1]), []
        elif (match := _PID.match(line)) and pid is None:
            pid = int(match[1])
    close()
    return pid, tuple(threads)


def _annotate(frame: Frame, line: str) -> Frame:
    """Add the module offset or the source line that eu-stack prints below a frame."""
    if match := _OFFSET.match(line):
        return Frame(frame.function, frame.module, int(match[1], 16), frame.source)
    if match := _SOURCE.match(line):
        return Frame(frame.function, frame.module, frame.offset, match[1])
    return frame


def _first_error(stderr: bytes) -> str | None:
    for line in stderr.decode("utf-8", "replace").splitlines():
        text = line.removeprefix("eu-stack: ").strip()
        if text:
            return text
    return None
