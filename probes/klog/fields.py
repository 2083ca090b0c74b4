"""Read the fields of a kernel trace: version, taint, modules, registers, frames.

Line-level parsers for the pieces an oops, warning or lockup report is made of,
in the forms x86 (32 and 64 bit; the 2.6-era `[<addr>] func+71/115`, the
`[<addr>] func+0x47/0x73` of 2.6 to 4.x and the bare `func+0x47/0x73` of
4.10 on), arm32 and arm64 print them. Pure and total: a line that does not
parse yields nothing.

Register values are reduced to zero / non-zero here, the moment they are read;
nothing downstream ever sees one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

MAX_FRAMES = 64

# `func+0x47/0x73`, or `func+71/115` (decimal) as 2.6-era logs carry it (klogd's translation).
_SYMBOL = r"(?P<{0}>[A-Za-z_.$][\w.$]*)\+(?:0x[0-9a-f]+(?:/0x[0-9a-f]+)?|[0-9]+/[0-9]+)"
# `[ext4]`, or `[ext4 5f1c...]` when the kernel prints build ids.
_MODULE = r"(?:\s+\[(?P<{0}>[\w-]+)(?: [0-9a-f]+)?\])?"

# ` [<ffffffff8109b6d5>] ? foo+0x5/0x10`, `  foo+0x5/0x10 [mod]`, `<IRQ>  [<...>] foo+...`,
# and 2.6.2x i386's ` [foo+71/115] foo+0x47/0x73`, the symbol in the brackets too.
_FRAME = re.compile(
    r"\s*(?:<[A-Z#]{2,8}>\s*)?(?:\[(?:<[0-9a-f]+>|[\w.$]+\+[0-9]+/[0-9]+)\]\s*)?"
    r"(?P<unreliable>\?\s+)?"
    r"(?:"
    + _SYMBOL.format("func")
    + _MODULE.format("module")
    + r"|0x[0-9a-f]+)\s*(?:\([A-Z]?\))?\s*$"  # arm64 6.x adds (P) / (L)
)
# arm32: `[<bf0a1000>] (demo_write [demo]) from [<bf0a10a0>] (demo_store+0x40/0x6c [demo])`,
# the function first and its caller after `from`; the caller has a line of its own.
_ARM32_FRAME = re.compile(
    r"\s*\[<[0-9a-f]+>\]\s+\((?P<func>[A-Za-z_.$][\w.$]*)(?:\+0x[0-9a-f]+/0x[0-9a-f]+)?"
    r"(?:\s+\[(?P<module>[\w-]+)\])?\)(?:\s+from\s+\[<[0-9a-f]+>\]\s+\([^)]*\))?\s*$"
)
_STACK_MARK = re.compile(r"\s*</?(?:IRQ|NMI|TASK|SOFTIRQ|EOI|EOE|#DF|MCE|VC)>\s*$")
# A symbol anywhere in a line: the WARNING line's `at file.c:12 func+0x1/0x2 [mod]`.
_SYMBOL_IN_LINE = re.compile(_SYMBOL.format("func") + _MODULE.format("module"))

_REGISTER_NAMES = (
    r"RIP|EIP|IP|RSP|ESP|EFLAGS|ORIG_RAX|R[A-D]X|E[A-D]X|R[SD]I|E[SD]I|RBP|EBP|R0[89]|R1[0-5]"
    r"|knlGS|[FGCDES]S|CR[0234]|DR[0-367]|PKRU|PC|LR|pc|lr|sp|pstate|x[12]?[0-9]|x30"
)
# The program counter (x86's RIP, EIP, IP; arm32's `PC is at`; arm64's `pc :`):
# its symbol says where the kernel was.
_PC_NAMES = frozenset({"RIP", "EIP", "IP", "PC", "pc"})
_REGISTER_LINE = re.compile(rf"\s*(?:{_REGISTER_NAMES})(?:\s*:|\s+is at\s|\s+[<\[])")
_REGISTER = re.compile(
    rf"(?<![\w])(?P<name>{_REGISTER_NAMES})(?:\s*:\s*|\s+is at\s+|\s+(?=[<\[]))"
    r"(?:[0-9a-f]{4}:(?=\S))?"  # segment selector, as in `RIP: 0010:`
    r"(?:\[<(?P<bracket>[0-9a-f]+)>\](?:\s+\[<[0-9a-f]+>\])?\s*(?:"
    + _SYMBOL.format("bsym")
    + _MODULE.format("bmod")
    + r")?"
    r"|<(?P<angle>[0-9a-f]+)>"
    r"|" + _SYMBOL.format("sym") + _MODULE.format("mod") + r"|(?:0x)?(?P<hex>[0-9a-f]+))"
)
_KERNEL_LINE = re.compile(r"\s*(?:CPU|PID|Pid):|\s*(?:Not tainted|Tainted:) ")
# `Not tainted 6.1.0-18-amd64 #1`, `Tainted: G W 6.1.0 #1`, and 2.6-era
# `Pid: 1, comm: x Not tainted (2.6.32-5-686 #1) board`.
_VERSION = re.compile(
    r"(?:\bNot tainted|\bTainted: (?P<flags>[A-Z -]*?))\s+\(?(?P<version>[0-9][^\s#()]*)"
    r"(?:\s+#|\s*$|\))"
)
_MODULES = re.compile(r"\s*Modules linked in:(?P<list>.*?)(?:\[last unloaded: [^\]]*\])?\s*$")


@dataclass(frozen=True, slots=True)
class Frame:
    """A function in a call trace, and the module it lives in (`kernel` for none).

    An unreliable frame is one the kernel printed with a `?`: an address found
    on the stack that may be a stale return address rather than a caller.
    """

    function: str
    module: str = "kernel"
    reliable: bool = True

    def __str__(self) -> str:
        return f"{self.function} [{self.module}]"


@dataclass(frozen=True, slots=True)
class Register:
    name: str  # RIP, knlGS, PC, X29
    nonzero: bool


@dataclass(frozen=True, slots=True)
class Fields:
    """What the lines of one report say, each field from its first occurrence."""

    kernel_version: str | None = None
    tainted: str | None = None  # "Not tainted", or the flags: "G W O"
    modules: tuple[str, ...] | None = None  # None: no `Modules linked in:` line
    registers: tuple[Register, ...] = ()
    pc: Frame | None = None  # the program counter's symbol: the faulting function
    frames: tuple[Frame, ...] = ()  # the call trace, top of the stack first


def is_frame_line(line: str) -> bool:
    """A call trace line: a frame (reliable or not) or an `<IRQ>`-style marker."""
    return _match_frame(line) is not None or _STACK_MARK.match(line) is not None


def is_register_line(line: str) -> bool:
    return _REGISTER_LINE.match(line) is not None


def symbol_in(line: str) -> Frame | None:
    """The first `func+0x1/0x2 [mod]` anywhere in `line`."""
    found = _SYMBOL_IN_LINE.search(line)
    return None if found is None else Frame(found["func"], found["module"] or "kernel")


def parse_fields(lines: Iterable[str]) -> Fields:
    version: str | None = None
    tainted: str | None = None
    modules: tuple[str, ...] | None = None
    registers: dict[str, Register] = {}
    pc: Frame | None = None
    frames: list[Frame] = []
    for line in lines:
        frame = _match_frame(line)
        if frame is not None:
            if len(frames) < MAX_FRAMES:
                frames.append(frame)
        elif _REGISTER_LINE.match(line):
            for reg in _REGISTER.finditer(line):
                # x86 names as printed (knlGS too); arm64's lower-case ones upper-cased.
                name = reg["name"].upper() if reg["name"].islower() else reg["name"]
                symbol = reg["sym"] or reg["bsym"]
                if symbol and pc is None and reg["name"] in _PC_NAMES:
                    pc = Frame(symbol, reg["mod"] or reg["bmod"] or "kernel")
                if name not in registers:
                    registers[name] = Register(name, _nonzero(reg, symbol))
        elif version is None and _KERNEL_LINE.match(line):
            found = _VERSION.search(line)
            if found is not None:
                version = found["version"]
                tainted = _taint(found["flags"])
        elif modules is None:
            listed = _MODULES.match(line)
            if listed is not None:
                modules = tuple(listed["list"].split())
    return Fields(version, tainted, modules, tuple(registers.values()), pc, tuple(frames))


def _taint(flags: str | None) -> str:
    if flags is None:
        return "Not tainted"
    # Padding squeezed; some vendor kernels pad with dashes too: `P  ------  2.6.32`.
    return " ".join(word for word in flags.split() if word.strip("-"))


def _match_frame(line: str) -> Frame | None:
    found = _FRAME.match(line)
    if found is not None:
        # A bare address has no symbol; Clear's layout spells that `???`.
        function, module = found["func"] or "???", found["module"] or "kernel"
        return Frame(function, module, reliable=not found["unreliable"])
    found = _ARM32_FRAME.match(line)
    return None if found is None else Frame(found["func"], found["module"] or "kernel")


def _nonzero(reg: re.Match[str], symbol: str | None) -> bool:
    if symbol:
        return True
    digits = reg["bracket"] or reg["angle"] or reg["hex"] or "0"
    return int(digits, 16) != 0
