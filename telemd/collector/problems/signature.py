"""A record's problem: the signature that groups it with others, and a title.

Pure: no database, no clock. `problem_of` reads the payload layouts the
project's probes write (PROTOCOL.md section 6, docs/probes.md) and returns
None for a record that reports no problem (a heartbeat) or whose payload
has nothing to group by. A signature never holds an address, an offset, a
pid, a CPU number or a line number, so the same fault on other machines,
other builds and other load addresses has the same signature.
"""

from __future__ import annotations

import fnmatch
import functools
import re
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from telemd.collector.problems.mce import mce_class

MAX_SIGNATURE_CHARS = 512
MAX_TITLE_CHARS = 200
SIGNATURE_FRAMES = 3  # frames of the crashing thread that make two crashes the same
LIST_SEPARATOR = "|"
# Every classification that may report a problem starts so; others are not read.
PROBLEM_PREFIX = "org.clearlinux/"


class ProblemKind(str, Enum):
    CRASH = "crash"
    KERNEL = "kernel"
    MCE = "mce"
    PYTHON = "python"
    UNIT = "unit"


@dataclass(frozen=True, slots=True)
class Problem:
    kind: ProblemKind
    signature: str
    title: str
    occurrences: int = 1  # a crash record may stand for several crashes


class SkipList:
    """Shell patterns of frames that only report a fault (`raise`, `__GI_*`)."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = tuple(patterns)
        exact = {p for p in self.patterns if not any(c in p for c in "*?[")}
        wild = [fnmatch.translate(p) for p in self.patterns if p not in exact]
        self._exact = frozenset(exact)
        self._wild = re.compile("|".join(wild)) if wild else None

    def skips(self, function: str) -> bool:
        return function in self._exact or (
            self._wild is not None and self._wild.match(function) is not None
        )


# -- crashes (crashprobe) ------------------------------------------------------

CRASH_CLASSIFICATIONS = ("org.clearlinux/crash/clr", "org.clearlinux/crash/error")
# The header lines a signature reads; the first of each counts.
_HEADER_NAMES = ("Process: ", "Signal: ", "Crashes: ")
_MAX_CRASHES = 1_000_000  # a `Crashes:` line cannot outweigh a million records


@dataclass(frozen=True, slots=True)
class CrashFrame:
    function: str  # `???` when the frame has no symbol
    module: str  # the file name only: the same library lives in other directories elsewhere

    def __str__(self) -> str:
        return f"{self.function}@{self.module}"


def crash_frames(
    payload: str, skip: SkipList | None = None, enough: int = 0
) -> tuple[dict[str, str], list[CrashFrame]]:
    """The header lines and the crashing thread's frames (the first backtrace).

    With `skip`, frames it names are left out, and reading stops once
    `enough` frames are kept.
    """
    # String methods rather than patterns: this runs for every crash record,
    # on the writer's thread, and is three times faster so.
    head, _, rest = payload.partition("\nBacktrace ")
    header: dict[str, str] = {}
    for line in head.split("\n"):
        if line.startswith(_HEADER_NAMES):
            name, _, value = line.partition(": ")
            header.setdefault(name, value.strip())
    frames: list[CrashFrame] = []
    thread, _, _ = rest.partition("\n\n")  # the next thread follows a blank line
    for line in thread.split("\n")[1:]:
        # `#3 parse_header() - [/usr/lib/libfoo.so.1] +0x1a2b - foo.c:12`, `#4 ??? - [x]`
        number, _, text = line.partition(" ")
        named, found, module = text.partition(" - [")
        if not (found and number[:1] == "#" and number[1:].isdigit()):
            continue
        if named.endswith("()") and len(named) > 2:
            function = _base_function(named[:-2])
        elif named == "???":
            function = named
        else:
            continue
        if skip is not None and skip.skips(function):
            continue
        frames.append(CrashFrame(function, module.partition("]")[0].rsplit("/", 1)[-1]))
        if len(frames) == enough:
            break
    return header, frames


def crash_problem(payload: str, skip: SkipList) -> Problem | None:
    header, top = crash_frames(payload, skip, SIGNATURE_FRAMES)
    signal_name = _signal_name(header.get("Signal", ""))
    program = header.get("Process", "").rsplit("/", 1)[-1]
    occurrences = _count(header.get("Crashes", "1"))
    if top:
        frames_text = LIST_SEPARATOR.join(map(str, top))
        signature = f"crash:{signal_name}:{frames_text}"
        where = f"{top[0].function}()" if top[0].function != "???" else "???"
        title = f"{signal_name} in {where} [{top[0].module}]"
    elif program:
        signature = f"crash:{signal_name}:{program}"
        title = f"{signal_name} in {program}"
    else:
        return None
    return Problem(ProblemKind.CRASH, _cut(signature), _cut(title, MAX_TITLE_CHARS), occurrences)


@functools.lru_cache(maxsize=128)
def _signal_name(number: str) -> str:
    try:
        return signal.Signals(int(number)).name
    except ValueError:
        return "crash"


def _count(text: str) -> int:
    # ASCII digits only: int() refuses `²`, which isdigit() takes; and no
    # more of them than the bound has, so that no huge number is converted.
    if not (text.isascii() and text.isdigit()):
        return 1
    digits = text.lstrip("0")
    if len(digits) > len(str(_MAX_CRASHES)):
        return _MAX_CRASHES
    return min(max(int(digits or "1"), 1), _MAX_CRASHES)


# -- kernel reports (klogscanner, pstoreprobe) ------------------------------------

# Numbers in a reason (pids, CPUs, addresses, sizes, lines) differ between two
# reports of the same problem; words that merely end in a digit (ext4) do not.
_NUMBER = re.compile(r"(?<![A-Za-z0-9_])(?:0x)?[0-9a-fA-F]*[0-9][0-9a-fA-F]*")
# `#0 ext4_readdir - [ext4]`, `#5 ? __die - [kernel]` (`?`: the kernel was unsure)
_KERNEL_FRAME = re.compile(
    r"#(?P<n>[0-9]+) (?P<unsure>\? )?(?P<function>\S+) - \[(?P<module>[^\]]*)\]"
)
# Where the detail of a reason starts: `, address: N`, ` at virtual address N`.
_REASON_DETAIL = re.compile(r"(?:,| at) [^,]*N")


def normalise_reason(reason: str) -> str:
    return _NUMBER.sub("N", reason.strip())


def kernel_problem(payload: str, skip: SkipList) -> Problem | None:
    reason = ""
    first: tuple[str, str] | None = None
    frames: list[tuple[str, str]] = []
    hardware: list[str] = []
    for line in payload.splitlines():
        if line.startswith("Reason: ") and not reason:
            reason = line.removeprefix("Reason: ")
            continue
        if "[Hardware Error]:" in line:
            hardware.append(line)
        match = _KERNEL_FRAME.match(line)
        if match is None or match.group("unsure"):
            continue
        function = _base_function(match.group("function"))
        if skip.skips(function) or function == "???":
            continue
        frame = (function, match.group("module"))
        if match.group("n") == "0":
            first = frame
        else:
            frames.append(frame)
    if not reason:
        return _bert_problem(hardware)
    normal = normalise_reason(reason)
    top = [first] if first is not None else frames[:SIGNATURE_FRAMES]
    frames_text = LIST_SEPARATOR.join(f"{f}@{m}" for f, m in top)
    signature = f"kernel:{normal}:{frames_text}"
    short = _REASON_DETAIL.split(normal, maxsplit=1)[0]
    title = f"{short} in {top[0][0]} [{top[0][1]}]" if top else short
    return Problem(ProblemKind.KERNEL, _cut(signature), _cut(title, MAX_TITLE_CHARS))


def _bert_problem(lines: list[str]) -> Problem | None:
    """BERT's raw `[Hardware Error]:` lines: the section type says what failed."""
    for line in lines:
        _, _, rest = line.partition("section_type:")
        if rest.strip():
            section = normalise_reason(rest)
            return Problem(
                ProblemKind.KERNEL,
                _cut(f"bert:{section}"),
                _cut(f"BERT: {section}", MAX_TITLE_CHARS),
            )
    if lines:
        first = normalise_reason(lines[0].split("[Hardware Error]:", 1)[1])
        return Problem(
            ProblemKind.KERNEL, _cut(f"bert:{first}"), _cut(f"BERT: {first}", MAX_TITLE_CHARS)
        )
    return None


# -- machine checks ------------------------------------------------------------------

_BANK = re.compile(r"Bank (?P<bank>[0-9]+): (?P<status>[0-9a-fA-F]{1,16})\b")


def mce_problem(payload: str) -> Problem | None:
    match = _BANK.search(payload)
    if match is None:
        # `Machine check events logged`: no bank, the reason is all there is.
        reason = next(
            (line[8:] for line in payload.splitlines() if line.startswith("Reason: ")), ""
        )
        if not reason:
            return None
        normal = normalise_reason(reason.split("[Hardware Error]:", 1)[-1])
        return Problem(
            ProblemKind.MCE, _cut(f"mce:{normal}"), _cut(f"MCE: {normal}", MAX_TITLE_CHARS)
        )
    bank = int(match.group("bank"))
    error_class = mce_class(int(match.group("status"), 16))
    return Problem(
        ProblemKind.MCE, f"mce:bank {bank}:{error_class}", f"MCE bank {bank}: {error_class}"
    )


# -- Python exceptions ------------------------------------------------------------

_PY_FRAME = re.compile(r'  File "(?P<file>[^"]*)", line [0-9]+, in (?P<function>.*)')
# The interpreter's own library: `/usr/lib/python3.11/json/decoder.py`, not
# `.../site-packages/...`, which holds programs and their libraries.
_STDLIB = re.compile(r"/python3(?:\.[0-9]+)?/(?!(?:site|dist)-packages/)|^<frozen ")


def python_problem(payload: str) -> Problem | None:
    exception = ""
    frames: list[tuple[str, str]] = []
    for line in payload.splitlines():
        if line.startswith("Exception: ") and not exception:
            exception = line.removeprefix("Exception: ").strip()
        match = _PY_FRAME.fullmatch(line)
        if match:
            frames.append((match.group("file"), match.group("function")))
    if not exception:
        return None
    own = [frame for frame in frames if not _STDLIB.search(frame[0])]
    name = exception.rsplit(".", 1)[-1]
    if not frames:
        return Problem(ProblemKind.PYTHON, _cut(f"python:{exception}"), _cut(name, MAX_TITLE_CHARS))
    path, function = (own or frames)[-1]
    signature = f"python:{exception}:{function}@{path}"
    title = f"{name} in {function}() [{path.rsplit('/', 1)[-1]}]"
    return Problem(ProblemKind.PYTHON, _cut(signature), _cut(title, MAX_TITLE_CHARS))


# -- failed units (journalprobe) ----------------------------------------------------

_FAILED_MESSAGE = re.compile(r"MESSAGE=(?P<unit>\S+): Failed with result '(?P<result>[^']+)'\.")


def unit_problem(payload: str) -> Problem | None:
    fields: dict[str, str] = {}
    for line in payload.splitlines():
        if not line:
            break  # the unit's own log lines follow the blank line
        name, sep, value = line.partition("=")
        if sep:
            fields.setdefault(name, value)
    unit, result = fields.get("UNIT"), fields.get("RESULT")
    if not (unit and result):
        # Clear's journal probe sent the message alone.
        match = _FAILED_MESSAGE.match(payload)
        if match is None:
            return None
        unit, result = match.group("unit"), match.group("result")
    return Problem(
        ProblemKind.UNIT,
        _cut(f"unit:{unit}:{result}"),
        _cut(f"{unit} failed: {result}", MAX_TITLE_CHARS),
    )


# -- dispatch --------------------------------------------------------------------


Reader = Callable[[str, SkipList], "Problem | None"]


def reader_of(classification: str) -> Reader | None:
    """What reads a problem out of this classification's payloads; None: none reports one."""
    if classification in CRASH_CLASSIFICATIONS:
        return crash_problem
    if classification == "org.clearlinux/kernel/mce":
        return lambda payload, _: mce_problem(payload)
    if classification.startswith("org.clearlinux/kernel/") or classification == (
        "org.clearlinux/bert/debug"
    ):
        return kernel_problem
    if classification == "org.clearlinux/python/exception":
        return lambda payload, _: python_problem(payload)
    if classification == "org.clearlinux/journal/error":
        return lambda payload, _: unit_problem(payload)
    return None


def occurrences_of(classification: str, payload: str) -> int:
    """What a record of a problem counts, without its signature: a crash's `Crashes: N`, else 1."""
    if classification not in CRASH_CLASSIFICATIONS:
        return 1
    head, _, _ = payload.partition("\nBacktrace ")
    for line in head.split("\n"):
        if line.startswith("Crashes: "):
            return _count(line.removeprefix("Crashes: ").strip())
    return 1


def problem_of(classification: str, payload: str, skip: SkipList) -> Problem | None:
    """The problem a record reports, or None."""
    read = reader_of(classification)
    return read(payload, skip) if read is not None else None


def record_kind(classification: str) -> str:
    """What a record is about, for counts per kind: its classification's middle level."""
    parts = classification.split("/")
    return parts[1] if len(parts) == 3 else classification


def _base_function(function: str) -> str:
    """A function as its source names it.

    Compiler clones (`foo.cold`, `foo.constprop.0`, `foo.isra.3`) count as
    their origin and symbol versions (`__libc_start_main@@GLIBC_2.34`) as the
    symbol: both differ between builds of the same code.
    """
    name = function.split("@", 1)[0] or function
    return name.split(".", 1)[0] or name


def _cut(text: str, limit: int = MAX_SIGNATURE_CHARS) -> str:
    return text[:limit]
