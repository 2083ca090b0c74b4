"""The klog scanner against Clear's own kernel-log corpus, where a copy is at hand.

telemetrics-client's `tests/oops_test_files` is not shipped here; point
TELEMD_CLEAR_OOPS_DIR at a checkout's copy to run these. Clear's oops parser
finds 283 call trace frames in it (the `clear` column below, counted by
building src/probes/oops_parser.c); where both find frames, the functions
agree one for one, except for a `=======================` separator line
that Clear counts as a frame in ALSA.txt and for a bare address that Clear
prints as a number and telemd as `???`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from telemd_probes.klog.event import KernelEvent
from telemd_probes.klog.kmsg import parse_lines
from telemd_probes.klog.parser import OopsScanner

CORPUS = os.environ.get("TELEMD_CLEAR_OOPS_DIR", "")

pytestmark = pytest.mark.skipif(
    not CORPUS, reason="TELEMD_CLEAR_OOPS_DIR (telemetrics-client's tests/oops_test_files) unset"
)

# file -> (call trace frames Clear's parser finds, frames telemd finds).
FRAMES = {
    "2or3_digit_loglevel.txt": (22, 22),
    "ALSA.txt": (11, 10),
    "RTNL.txt": (13, 13),
    "bad_page_map.txt": (0, 0),
    "badness.txt": (0, 0),
    "bug_kernel_handle.txt": (23, 23),
    "bug_kernel_handle_new.txt": (23, 23),
    "double_fault.txt": (0, 0),
    "double_fault_DONE.txt": (0, 0),
    "general_protection_fault.txt": (8, 8),
    "irq.txt": (49, 49),
    "kernel_bug_at.txt": (0, 12),
    "kernel_bug_at_DONE.txt": (10, 10),
    "kernel_null_pointer.txt": (7, 7),
    "loglevel_notimestamp.txt": (13, 13),
    "nologlevel_notimestamp.txt": (0, 16),
    "soft_lockup.txt": (13, 13),
    "sysctl_check1": (0, 26),
    "sysctl_check1.txt": (26, 26),
    "sysctl_check2": (0, 14),
    "sysctl_check2.txt": (14, 14),
    "two_warnings.txt": (0, 10),
    "warn_on.txt": (17, 17),
    "warning.txt": (13, 13),
    "watchdog.txt": (21, 21),
}


def scan(name: str) -> list[KernelEvent]:
    scanner = OopsScanner()
    events: list[KernelEvent] = []
    for record in parse_lines((Path(CORPUS) / name).read_bytes().splitlines()):
        events += scanner.feed(record.message)
    return events + scanner.flush()


def test_the_table_covers_the_corpus() -> None:
    assert {path.name for path in Path(CORPUS).iterdir()} == set(FRAMES)
    assert sum(clear for clear, _ in FRAMES.values()) == 283


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_frames_found(name: str) -> None:
    assert sum(len(event.frames) for event in scan(name)) == FRAMES[name][1]


def test_clear_s_own_watchdog_assertions_hold() -> None:
    (event,) = scan("watchdog.txt")
    payload = event.payload()
    assert event.reason == "WARNING: at net/sched/sch_generic.c:255 dev_watchdog+0x238/0x250"
    assert "Kernel Version : 3.10.4-100.fc18.x86_64\n" in payload
    assert "Tainted : Not tainted\n" in payload
    for frame in (
        "#1 dump_stack",
        "#4 ? __queue_work",
        "#6 ? dev_deactivate_queue.constprop.30",
        "#14 ? __hrtimer_start_range_ns",
        "#21 start_secondary",
    ):
        assert f"\n{frame} - [kernel]\n" in payload


def test_clear_s_alsa_frames_are_found_in_the_warning_that_holds_them() -> None:
    warning = scan("ALSA.txt")[-1]
    assert warning.kernel_version == "2.6.25-14.fc9.i686"
    lines = warning.payload().splitlines()
    for frame in ("#1 warn_on_slowpath", "#2 ? vsnprintf", "#3 ? _spin_unlock_irqrestore"):
        assert f"{frame} - [kernel]" in lines
    assert "#10 start_kernel - [kernel]" in lines
