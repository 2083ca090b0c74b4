"""Signatures and titles, straight from payloads: the klog samples, crafted crash,
Python and unit payloads, and fuzzed text that must never raise."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from probe_payloads import kernel_events

from telemd.collector.problems.mce import mce_class
from telemd.collector.problems.signature import (
    MAX_SIGNATURE_CHARS,
    MAX_TITLE_CHARS,
    SkipList,
    occurrences_of,
    problem_of,
)
from telemd.collector.problems.skip_frames import FIRST_SKIP_FRAMES, check_pattern

SKIP = SkipList(FIRST_SKIP_FRAMES)

# klog sample -> title of each report it holds.
KERNEL_TITLES = {
    "bug_x86_nullderef": ["BUG: kernel NULL pointer dereference in ext4_readdir [ext4]"],
    "bug_arm64_oops": [
        "Unable to handle kernel NULL pointer dereference in demo_drv_probe [demo_drv]"
    ],
    "bug_kernel_bug_at": ["kernel BUG in demofs_evict_inode [demofs]"],
    "bug_list_corruption": ["list_del corruption in demo_queue_reap [demo_q]"],
    "warning_netdev": [
        "NETDEV WATCHDOG: enp3s0 (r8169): transmit queue N timed out in dev_watchdog [kernel]"
    ],
    "hungtask": [
        "INFO: task jbd2/sda1-N:N blocked for more than N seconds. in bit_wait_io [kernel]"
    ],
    "oom": [
        "demo-hog invoked oom-killer: gfp_mask=N(GFP_HIGHUSER_MOVABLE|__GFP_COMP) "
        "in __alloc_pages_slowpath [kernel]"
    ],
    "softlockup": [
        "watchdog: BUG: soft lockup - CPU#N stuck for Ns! [demo-spin:N] "
        "in demo_spin_write [demo_spin]"
    ],
    "mce": ["MCE bank 4: internal parity error", "Kernel panic - not syncing: Fatal machine check"],
    "mce_logged": ["MCE: Machine check events logged"],
    "bert": ["BERT: PCIe error"],
}


@pytest.mark.parametrize("sample", sorted(KERNEL_TITLES))
def test_kernel_reports_get_readable_titles(sample: str) -> None:
    problems = [problem_of(e.classification, e.payload(), SKIP) for e in kernel_events(sample)]
    assert [p.title if p else None for p in problems] == KERNEL_TITLES[sample]


def test_a_kernel_signature_holds_no_address_pid_or_cpu() -> None:
    [event] = kernel_events("bug_x86_nullderef")
    payload = event.payload()
    other = payload.replace("0000000000000028", "00000000000000f0")
    first, second = (
        problem_of(event.classification, payload, SKIP),
        problem_of(event.classification, other, SKIP),
    )
    assert first is not None and first == second
    assert first.signature == (
        "kernel:BUG: kernel NULL pointer dereference, address: N:ext4_readdir@ext4"
    )
    soft = problem_of(
        "org.clearlinux/kernel/softlockup",
        "Crash Report:\nReason: watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [x:99]\n"
        "Backtrace :\n#0 spin - [m]\n",
        SKIP,
    )
    assert soft is not None and "CPU#N stuck for Ns! [x:N]" in soft.signature


def crash(frames: list[str], signal: int = 6, crashes: int = 1) -> str:
    lines = [f"#{n} {frame}" for n, frame in enumerate(frames)]
    return (
        f"Process: /usr/bin/prog\nPID: 42\nSignal: {signal}\nName: prog\nCrashes: {crashes}\n\n"
        "Backtrace (TID 42):\n" + "\n".join(lines) + "\n\nBacktrace (TID 43):\n#0 other() - [x]\n"
    )


ABORTED = [
    "__pthread_kill_implementation() - [/usr/lib/x86_64-linux-gnu/libc.so.6] +0x8aebc",
    "__GI_raise() - [/usr/lib/x86_64-linux-gnu/libc.so.6] +0x3cf22 - ../sysdeps/posix/raise.c:26",
    "__GI_abort() - [/usr/lib/x86_64-linux-gnu/libc.so.6] +0x2745e",
    "__assert_fail_base.cold() - [/usr/lib/x86_64-linux-gnu/libc.so.6] +0x26391",
    "parse_header() - [/usr/lib/libfoo.so.1] +0x1234 - foo.c:88",
    "read_all() - [/usr/lib/libfoo.so.1] +0x2222",
    "??? - [/usr/bin/prog] +0x99",
    "main() - [/usr/bin/prog] +0x10",
]


def test_a_crash_signature_skips_the_reporting_frames_and_ignores_offsets() -> None:
    problem = problem_of("org.clearlinux/crash/clr", crash(ABORTED, crashes=7), SKIP)
    assert problem is not None
    assert problem.title == "SIGABRT in parse_header() [libfoo.so.1]"
    assert (
        problem.signature == "crash:SIGABRT:parse_header@libfoo.so.1|read_all@libfoo.so.1|???@prog"
    )
    assert problem.occurrences == 7
    moved = [re.sub(r"\+0x[0-9a-f]+", "+0x7", f).replace("/usr/lib/", "/opt/") for f in ABORTED]
    assert problem_of("org.clearlinux/crash/error", crash(moved, crashes=1), SKIP) == (
        type(problem)(problem.kind, problem.signature, problem.title, 1)
    )
    # Without the skip list, the reporting frames would be the signature.
    bare = problem_of("org.clearlinux/crash/clr", crash(ABORTED), SkipList([]))
    assert (
        bare is not None and bare.title == "SIGABRT in __pthread_kill_implementation() [libc.so.6]"
    )


def test_a_crash_without_frames_is_named_by_its_program() -> None:
    payload = "Process: /usr/bin/prog\nSignal: 11\nError: eu-stack found no thread in the core\n"
    problem = problem_of("org.clearlinux/crash/error", payload, SKIP)
    assert problem is not None and problem.title == "SIGSEGV in prog"
    assert problem_of("org.clearlinux/crash/unknown", "Crash from third party\n", SKIP) is None
    # A count int() would refuse, or one too large to be true.
    for count, occurrences in (("\u00b2", 1), ("0", 1), ("9" * 5000, 1_000_000), ("0007", 7)):
        odd = problem_of("org.clearlinux/crash/clr", f"{payload}Crashes: {count}\n", SKIP)
        assert odd is not None and odd.occurrences == occurrences


def test_python_signature_is_the_type_and_the_innermost_frame_of_the_program() -> None:
    payload = (
        "Exception: json.decoder.JSONDecodeError\nProgram: /usr/bin/tool\nPython: 3.11.2\n\n"
        "Traceback (most recent call last):\n"
        '  File "/usr/bin/tool", line 9, in <module>\n'
        '  File "/usr/lib/python3/dist-packages/tool/config.py", line 40, in load\n'
        '  File "/usr/lib/python3.11/json/__init__.py", line 346, in loads\n'
        '  File "/usr/lib/python3.11/json/decoder.py", line 337, in decode\n'
        "json.decoder.JSONDecodeError\n"
    )
    problem = problem_of("org.clearlinux/python/exception", payload, SKIP)
    assert problem is not None
    assert problem.title == "JSONDecodeError in load() [config.py]"
    assert problem.signature == (
        "python:json.decoder.JSONDecodeError:load@/usr/lib/python3/dist-packages/tool/config.py"
    )
    # Another line number is the same problem.
    assert (
        problem_of("org.clearlinux/python/exception", payload.replace("40", "41"), SKIP) == problem
    )


def test_failed_units_and_clear_s_message_form() -> None:
    ours = (
        "MESSAGE=a.service: Failed with result 'timeout'.\nUNIT=a.service\nRESULT=timeout\n\nlog\n"
    )
    clear = "MESSAGE=a.service: Failed with result 'timeout'.\n"
    first = problem_of("org.clearlinux/journal/error", ours, SKIP)
    assert first is not None and first.title == "a.service failed: timeout"
    assert problem_of("org.clearlinux/journal/error", clear, SKIP) == first
    assert problem_of("org.clearlinux/journal/error", "MESSAGE=something else\n", SKIP) is None


@pytest.mark.parametrize(
    ("status", "name"),
    [
        (0xB200000000070005, "internal parity error"),
        (0x9C00000000010091, "memory controller read error"),
        (0xBE00000000800400, "internal timer error"),
        (0x940000000000010A, "L2 cache generic error"),
        (0x9000000000001017, "generic level TLB error"),
        (0x000000000000000C, "L0 cache hierarchy error"),
        (0x0000000000000E0B, "bus generic error"),
    ],
)
def test_mce_classes(status: int, name: str) -> None:
    assert mce_class(status) == name


def test_skip_patterns_are_checked() -> None:
    assert check_pattern("__GI_*") == "__GI_*"
    for bad in ("", "a b", "x\n", "y" * 201):
        with pytest.raises(ValueError):
            check_pattern(bad)
    assert SkipList(["g_assertion_message*"]).skips("g_assertion_message_expr")
    assert not SkipList(["raise"]).skips("raise_error")


CLASSIFICATIONS = st.sampled_from(
    [
        "org.clearlinux/crash/clr",
        "org.clearlinux/crash/error",
        "org.clearlinux/kernel/bug",
        "org.clearlinux/kernel/mce",
        "org.clearlinux/bert/debug",
        "org.clearlinux/python/exception",
        "org.clearlinux/journal/error",
    ]
)
LINES = st.sampled_from(
    ["Reason: ", "Backtrace (TID 1):", "#0 ", "#1 ? ", "() - [", "] +0x1", "Signal: ", "Crashes: ",
     "Exception: ", '  File "', '", line 1, in ', "UNIT=", "RESULT=", "MESSAGE=", "Bank 4: ",
     "[Hardware Error]: section_type: ", "\n", "99999999999999999999", "@@", ".", "\u00b2",
     "\u0661", "0"]
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(CLASSIFICATIONS, st.lists(LINES | st.text(max_size=30), max_size=40))
def test_any_payload_gives_a_bounded_problem_or_none(classification: str, parts: list[str]) -> None:
    problem = problem_of(classification, "".join(parts), SKIP)
    if problem is not None:
        assert 0 < len(problem.signature) <= MAX_SIGNATURE_CHARS
        assert 0 < len(problem.title) <= MAX_TITLE_CHARS
        assert 1 <= problem.occurrences <= 1_000_000
        # The retention purge counts a record out by occurrences_of alone.
        assert occurrences_of(classification, "".join(parts)) == problem.occurrences
