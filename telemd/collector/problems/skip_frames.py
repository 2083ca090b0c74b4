"""The frames a signature skips: the ones that report a fault, not the ones that have it.

The list lives in the database (`skip_frames`, edited with `telemd-collector
skip-frame`); `FIRST_SKIP_FRAMES` is what a new database starts with and is
never changed (the migration that writes it is released). Reads go through
`SkipFrames`, a cache a writer asks at most every `REFRESH_SECONDS`, so an
edit from another process reaches new records without a signal.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from telemd.collector.problems.signature import SkipList

if TYPE_CHECKING:
    from telemd.collector.store.base import Session

REFRESH_SECONDS = 10.0
MAX_PATTERN_CHARS = 200

# C: the signal and assertion machinery of glibc and GLib.
_CRASH = """
    raise abort __assert_fail __assert_fail_base __assert_perror_fail __GI_* __libc_message
    __libc_fatal __fortify_fail __chk_fail __stack_chk_fail malloc_printerr __pthread_kill_*
    pthread_kill gsignal g_assertion_message* g_assert_warning g_log g_logv g_log_structured*
    _g_log_abort __kernel_vsyscall __restore_rt
"""
# The kernel: dumping, trapping and watchdog frames (as klogscanner skips them).
_KERNEL = """
    dump_stack dump_stack_lvl __dump_stack show_stack show_regs show_trace_log_lvl dump_backtrace
    __warn __warn_printk warn_on_slowpath warn_slowpath_common warn_slowpath_fmt warn_slowpath_null
    report_bug handle_bug exc_invalid_op do_invalid_op invalid_op do_error_trap do_trap die __die
    __die_body oops_end page_fault_oops no_context __bad_area_nosemaphore bad_area_nosemaphore
    page_fault kernelmode_fixup_or_oops do_user_addr_fault exc_page_fault do_page_fault
    general_protection exc_general_protection die_kernel_fault __do_kernel_fault
    do_translation_fault do_mem_abort el1_abort el1_da el1h_64_sync_handler el1h_64_sync el1_dbg
    bug_handler call_break_hook brk_handler do_debug_exception panic nmi_cpu_backtrace
    nmi_trigger_cpumask_backtrace arch_trigger_cpumask_backtrace nmi_handle default_do_nmi exc_nmi
    watchdog_timer_fn watchdog_overflow_callback __hrtimer_run_queues hrtimer_interrupt __schedule
    schedule schedule_timeout schedule_preempt_disabled io_schedule io_schedule_timeout
    dump_header oom_kill_process out_of_memory do_IRQ common_interrupt handle_irq
    rcu_dump_cpu_stacks print_cpu_stall check_cpu_stall rcu_pending rcu_sched_clock_irq
    update_process_times tick_sched_handle tick_sched_timer __list_add_valid
    __list_del_entry_valid __list_add_valid_or_report __list_del_entry_valid_or_report
    asm_* entry_* sysvec_* __sysvec_* ret_from_*
"""
FIRST_SKIP_FRAMES: tuple[str, ...] = tuple(_CRASH.split() + _KERNEL.split())


def check_pattern(pattern: str) -> str:
    """A pattern as stored: printable, no spaces, bounded."""
    if not pattern or len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(
            f"a frame pattern has 1..{MAX_PATTERN_CHARS} characters, got {len(pattern)}"
        )
    if not pattern.isprintable() or any(c.isspace() for c in pattern):
        raise ValueError(f"a frame pattern has no spaces or control characters: {pattern!r}")
    return pattern


def load(session: Session) -> SkipList:
    rows = session.fetch("SELECT pattern FROM skip_frames ORDER BY pattern")
    return SkipList([str(row[0]) for row in rows])


class SkipFrames:
    """The skip list as the writer uses it: read again at most every REFRESH_SECONDS."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._list: SkipList | None = None
        self._read_at = 0.0

    @property
    def latest(self) -> SkipList | None:
        """The list as last read, for signing outside the writer (any thread); None: not yet."""
        return self._list

    def current(self, session: Session) -> SkipList:
        now = self.clock()
        if self._list is None or now - self._read_at >= REFRESH_SECONDS:
            self._list = load(session)
            self._read_at = now
        return self._list
