"""A report found in the kernel log, and the payload Clear's backends read.

A `KernelEvent` is one oops, warning, panic, lockup, stall, OOM kill or
hardware error report: its kind, the lines the scanner gathered, the fields
parsed out of them and a signature to recognise it again. `payload()` lays it
out the way telemetrics-client's klogscanner did (PROTOCOL.md section 6), so
existing crash views group it by function. The payload never carries a
register value, and stays printable ASCII within the 8192-byte wire limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..common.record_kind import RecordKind
from .fields import Fields, Frame, Register, parse_fields, symbol_in

MAX_PAYLOAD_BYTES = 8192  # the frame's payload limit (PROTOCOL.md section 1)
_MAX_FIELD_CHARS = 1024  # so that a long modules list cannot crowd out the backtrace
_MAX_SIGNATURE_CHARS = 160

# Frames of the machinery that reports a problem rather than of the code that
# has it; a signature made of them would lump unrelated reports together.
_REPORTING_FRAME_NAMES = """
    dump_stack dump_stack_lvl __dump_stack show_stack show_regs show_trace_log_lvl dump_backtrace
    __warn __warn_printk warn_on_slowpath warn_slowpath_common warn_slowpath_fmt warn_slowpath_null
    report_bug handle_bug exc_invalid_op do_invalid_op invalid_op do_error_trap do_trap die __die
    oops_end page_fault_oops no_context __bad_area_nosemaphore bad_area_nosemaphore page_fault
    kernelmode_fixup_or_oops do_user_addr_fault exc_page_fault do_page_fault general_protection
    exc_general_protection die_kernel_fault __do_kernel_fault do_translation_fault do_mem_abort
    el1_abort el1_da el1h_64_sync_handler el1h_64_sync el1_dbg bug_handler call_break_hook
    brk_handler do_debug_exception panic nmi_cpu_backtrace nmi_trigger_cpumask_backtrace
    arch_trigger_cpumask_backtrace nmi_handle default_do_nmi exc_nmi watchdog_timer_fn
    watchdog_overflow_callback __hrtimer_run_queues hrtimer_interrupt __schedule schedule
    schedule_timeout schedule_preempt_disabled io_schedule io_schedule_timeout dump_header
    oom_kill_process out_of_memory do_IRQ common_interrupt handle_irq rcu_dump_cpu_stacks
    print_cpu_stall check_cpu_stall rcu_pending rcu_sched_clock_irq update_process_times
    tick_sched_handle tick_sched_timer __list_add_valid __list_del_entry_valid
    __list_add_valid_or_report __list_del_entry_valid_or_report
"""
_REPORTING_FRAMES = frozenset(_REPORTING_FRAME_NAMES.split())
_REPORTING_PREFIXES = ("asm_", "entry_", "sysvec_", "__sysvec_", "ret_from_")
# Numbers in a reason (pids, addresses, sizes) differ between two reports of
# the same problem; words that merely end in a digit (ext4) do not.
_NUMBER = re.compile(r"(?<![A-Za-z_])(?:0x)?[0-9a-fA-F]*[0-9][0-9a-fA-F]*")
_HARDWARE_ERROR = "[Hardware Error]:"


class Kind(RecordKind):
    """What the kernel reported; the value is (classification, severity)."""

    BUG = ("org.clearlinux/kernel/bug", 4)
    WARNING = ("org.clearlinux/kernel/warning", 2)
    STACKOVERFLOW = ("org.clearlinux/kernel/stackoverflow", 4)
    PANIC = ("org.clearlinux/kernel/panic", 4)
    BERT = ("org.clearlinux/bert/debug", 2)
    # Reports Clear's klogscanner did not know, named in the same style.
    SOFTLOCKUP = ("org.clearlinux/kernel/softlockup", 3)
    HARDLOCKUP = ("org.clearlinux/kernel/hardlockup", 4)
    HUNGTASK = ("org.clearlinux/kernel/hungtask", 3)
    RCUSTALL = ("org.clearlinux/kernel/rcustall", 3)
    OOM = ("org.clearlinux/kernel/oom", 2)
    MCE = ("org.clearlinux/kernel/mce", 3)


@dataclass(frozen=True, slots=True)
class KernelEvent:
    kind: Kind
    reason: str  # the line that started the report
    lines: tuple[str, ...]  # the report as gathered, at most the scanner's bound
    fields: Fields
    signature: str  # `ext4_readdir [ext4]`: what makes two reports the same problem
    truncated: bool = False  # the report was longer than the bound and was cut

    @classmethod
    def from_lines(cls, kind: Kind, lines: tuple[str, ...], truncated: bool = False) -> KernelEvent:
        reason = lines[0].strip() if lines else ""
        fields = parse_fields(lines)
        return cls(kind, reason, lines, fields, _signature(reason, fields), truncated)

    @property
    def classification(self) -> str:
        return self.kind.classification

    @property
    def severity(self) -> int:
        return self.kind.severity

    @property
    def kernel_version(self) -> str | None:
        return self.fields.kernel_version

    @property
    def tainted(self) -> str | None:
        return self.fields.tainted

    @property
    def modules(self) -> tuple[str, ...] | None:
        return self.fields.modules

    @property
    def registers(self) -> tuple[Register, ...]:
        return self.fields.registers

    @property
    def frames(self) -> tuple[Frame, ...]:
        return self.fields.frames

    def payload(self) -> str:
        """The record payload: Clear's kernel layout, or BERT's raw error lines."""
        hardware = [line.strip() for line in self.lines if _HARDWARE_ERROR in line]
        if self.kind is Kind.BERT:
            return _fit(hardware or [self.reason])
        lines = ["Crash Report:", f"Reason: {self.reason}"]
        fields = self.fields
        if fields.kernel_version is not None:
            lines.append(f"Kernel Version : {fields.kernel_version}")
        if fields.tainted is not None:
            lines.append(f"Tainted : {fields.tainted}")
        if fields.modules is not None:
            lines.append(f"Modules : {' '.join(fields.modules)}")
        if fields.pc is not None or fields.frames:
            lines.append("Backtrace :")
        lines += [
            f"Register {r.name}: {'Non-zero' if r.nonzero else 'Zero'}" for r in self.registers
        ]
        # The faulting function is frame #0, so the call trace keeps Clear's #1 onwards.
        if fields.pc is not None:
            lines.append(_frame_line(0, fields.pc))
        lines += [_frame_line(n, frame) for n, frame in enumerate(fields.frames, 1)]
        if self.kind is Kind.MCE:
            # The bank, status and address lines are the report; an RIP line
            # would carry a register value.
            lines += [line for line in hardware if line != self.reason and "RIP" not in line]
        return _fit(lines)


def _frame_line(number: int, frame: Frame) -> str:
    # `#4 ? __queue_work - [kernel]`: Clear's mark for a frame the kernel was unsure of.
    mark = "" if frame.reliable else "? "
    return f"#{number} {mark}{frame.function} - [{frame.module}]"


def _signature(reason: str, fields: Fields) -> str:
    """The first meaningful function, else the reason with its numbers masked.

    Reliable frames are tried before unreliable ones, which may be stale
    return addresses left on the stack.
    """
    reliable = [frame for frame in fields.frames if frame.reliable]
    unreliable = [frame for frame in fields.frames if not frame.reliable]
    for frame in (symbol_in(reason), fields.pc, *reliable, *unreliable):
        if frame is not None and not _is_reporting(frame.function):
            return str(frame)[:_MAX_SIGNATURE_CHARS]
    return _NUMBER.sub("N", reason)[:_MAX_SIGNATURE_CHARS]


def _is_reporting(function: str) -> bool:
    # Compiler clones (`oom_kill_process.cold`, `foo.constprop.0`) count as their origin.
    base = function.split(".", 1)[0]
    return function == "???" or base in _REPORTING_FRAMES or base.startswith(_REPORTING_PREFIXES)


def _fit(lines: list[str]) -> str:
    """Join lines as printable ASCII, dropping whole lines past the size limit."""
    out: list[str] = []
    size = 0
    for line in lines:
        text = _printable(line)[:_MAX_FIELD_CHARS] + "\n"
        if size + len(text) > MAX_PAYLOAD_BYTES:
            break
        out.append(text)
        size += len(text)
    return "".join(out)


def _printable(text: str) -> str:
    # The wire takes printable ASCII and whitespace only (PROTOCOL.md section 1).
    return "".join(c if " " <= c <= "~" or c == "\t" else "?" for c in text)
