"""Tests for the fields of a kernel trace: each frame form, the faulting function, versions."""

from __future__ import annotations

import re

import pytest
from telemd_probes.klog.event import KernelEvent, Kind
from telemd_probes.klog.fields import Frame, parse_fields
from test_klog_parser import EXPECTED, payload_lines, sample

# sample -> per event: (has a frame #0, call trace frames, of which unreliable).
FRAME_COUNTS = {
    "bert": [(False, 0, 0)],
    "bug_arm32_oops": [(True, 8, 0)],
    "bug_arm64_oops": [(True, 13, 0)],
    "bug_i386_eip": [(True, 9, 9)],
    "bug_kernel_bug_at": [(True, 18, 6)],
    "bug_list_corruption": [(True, 11, 5)],
    "bug_x86_nullderef": [(True, 10, 6)],
    "bug_x86_oldgpf": [(True, 2, 1)],
    "hardlockup": [(True, 15, 10)],
    "hungtask": [(False, 15, 5)],
    "mce": [(False, 0, 0), (False, 0, 0)],
    "mce_logged": [(False, 0, 0)],
    "oom": [(False, 16, 0)],
    "panic": [(False, 12, 2)],
    "rcustall": [(True, 12, 7)],
    "rcustall_self": [(True, 23, 4)],
    "softlockup": [(True, 12, 8)],
    "stackoverflow": [(False, 12, 1)],
    "truncated": [(True, 3, 2)],
    "warning_i386_klogd": [(False, 13, 2)],
    "warning_i386_symbolic": [(False, 8, 4)],
    "warning_netdev": [(True, 15, 1)],
    "warning_x86": [(True, 17, 9)],
    "warning_x86_unreliable": [(False, 21, 5)],
}


def test_every_sample_has_its_frame_counts() -> None:
    assert set(FRAME_COUNTS) == set(EXPECTED)


@pytest.mark.parametrize("framing", ["kmsg", "dmesg", "bare"])
@pytest.mark.parametrize("name", sorted(FRAME_COUNTS))
def test_frame_counts(name: str, framing: str) -> None:
    events = sample(name, framing)
    counts = [
        (event.fields.pc is not None, len(event.frames), sum(not f.reliable for f in event.frames))
        for event in events
    ]
    assert counts == FRAME_COUNTS[name]
    for event, (has_pc, frames, _) in zip(events, FRAME_COUNTS[name], strict=True):
        numbered = [line for line in event.payload().splitlines() if line.startswith("#")]
        assert len(numbered) == has_pc + frames


# How telemetrics-backend reads a frame line; it stops at the first other line.
BACKEND_FRAME = re.compile(r"^(#\d+ )(.+)( - \[(.*)\](.*))$")


@pytest.mark.parametrize("name", sorted(FRAME_COUNTS))
def test_the_backend_reads_every_frame_as_one_run(name: str) -> None:
    for event in sample(name):
        lines = event.payload().splitlines()
        numbered = [n for n, line in enumerate(lines) if line.startswith("#")]
        if not numbered:
            continue
        run = lines[numbered[0] : numbered[-1] + 1]
        assert all(BACKEND_FRAME.match(line) for line in run)
        first = 0 if event.fields.pc is not None else 1
        assert [int(line[1:].split(" ", 1)[0]) for line in run] == list(
            range(first, first + len(run))
        )


def frame_lines(name: str) -> list[str]:
    return [line for line in payload_lines(name) if line.startswith("#")]


def test_unreliable_frames_are_kept_and_marked_as_clear_marks_them() -> None:
    lines = payload_lines("warning_x86_unreliable")
    assert lines[:5] == [
        "Crash Report:",
        "Reason: WARNING: at net/sched/sch_generic.c:255 dev_watchdog+0x238/0x250()",
        "Kernel Version : 3.10.0-123.demo.x86_64",
        "Tainted : Not tainted",
        "Modules : demo_nic bridge stp llc nf_conntrack_ipv4 nf_defrag_ipv4 xt_state"
        " nf_conntrack ext4 jbd2 mbcache",
    ]
    assert lines[5:] == [
        "Backtrace :",
        "#1 dump_stack - [kernel]",
        "#2 warn_slowpath_common - [kernel]",
        "#3 warn_slowpath_fmt - [kernel]",
        "#4 ? __queue_work - [kernel]",
        "#5 dev_watchdog - [kernel]",
        "#6 ? dev_deactivate_queue.constprop.31 - [kernel]",
        "#7 ? demo_nic_tx_timeout - [demo_nic]",
        "#8 call_timer_fn - [kernel]",
        "#9 run_timer_softirq - [kernel]",
        "#10 __do_softirq - [kernel]",
        "#11 call_softirq - [kernel]",
        "#12 do_softirq - [kernel]",
        "#13 irq_exit - [kernel]",
        "#14 smp_apic_timer_interrupt - [kernel]",
        "#15 apic_timer_interrupt - [kernel]",
        "#16 ? native_sched_clock - [kernel]",
        "#17 ? cpuidle_enter_state - [kernel]",
        "#18 cpuidle_idle_call - [kernel]",
        "#19 arch_cpu_idle - [kernel]",
        "#20 cpu_startup_entry - [kernel]",
        "#21 start_secondary - [kernel]",
    ]


def test_2_6_era_frames_with_decimal_offsets() -> None:
    lines = payload_lines("warning_i386_klogd")
    assert "Kernel Version : 2.6.24-19-generic" in lines
    assert "Tainted : Not tainted" in lines
    assert frame_lines("warning_i386_klogd") == [
        "#1 warn_on_slowpath - [kernel]",
        "#2 ? printk - [kernel]",
        "#3 demo_snd_pointer - [demo_snd]",
        "#4 snd_pcm_update_hw_ptr - [snd_pcm]",
        "#5 snd_pcm_period_elapsed - [snd_pcm]",
        "#6 demo_snd_interrupt - [demo_snd]",
        "#7 handle_IRQ_event - [kernel]",
        "#8 handle_fasteoi_irq - [kernel]",
        "#9 do_IRQ - [kernel]",
        "#10 common_interrupt - [kernel]",
        "#11 ? default_idle - [kernel]",
        "#12 cpu_idle - [kernel]",
        "#13 rest_init - [kernel]",
    ]


def test_2_6_era_frames_with_the_symbol_in_brackets() -> None:
    # Its dmesg framing writes `<4>[\t68764.975944]WARNING: ...`, as some loggers do.
    for framing in ("kmsg", "dmesg"):
        (event,) = sample("warning_i386_symbolic", framing)
        assert event.kernel_version == "2.6.25-14.fc9.i686"
    assert frame_lines("warning_i386_symbolic") == [
        "#1 warn_on_slowpath - [kernel]",
        "#2 ? vsnprintf - [kernel]",
        "#3 ? _spin_unlock_irqrestore - [kernel]",
        "#4 ? release_console_sem - [kernel]",
        "#5 ? vprintk - [kernel]",
        "#6 mtrr_trim_uncached_memory - [kernel]",
        "#7 setup_arch - [kernel]",
        "#8 start_kernel - [kernel]",
    ]


def test_eip_is_at_is_frame_0_and_the_version_in_parentheses_is_read() -> None:
    lines = payload_lines("bug_i386_eip")
    assert lines[2:4] == ["Kernel Version : 2.6.32-5-686", "Tainted : Not tainted"]
    assert frame_lines("bug_i386_eip") == [
        "#0 demofs_lookup - [demofs]",
        "#1 ? d_alloc - [kernel]",
        "#2 ? do_lookup - [kernel]",
        "#3 ? __link_path_walk - [kernel]",
        "#4 ? path_walk - [kernel]",
        "#5 ? do_path_lookup - [kernel]",
        "#6 ? user_path_at - [kernel]",
        "#7 ? vfs_fstatat - [kernel]",
        "#8 ? sys_stat64 - [kernel]",
        "#9 ? syscall_call - [kernel]",
    ]


def test_arm32_pc_is_at_is_frame_0_and_its_backtrace_is_read() -> None:
    lines = payload_lines("bug_arm32_oops")
    assert "Register PC: Non-zero" in lines
    assert "Register LR: Non-zero" in lines
    assert frame_lines("bug_arm32_oops") == [
        "#0 demo_gpio_write - [demo_gpio]",
        "#1 demo_gpio_write - [demo_gpio]",
        "#2 demo_gpio_store - [demo_gpio]",
        "#3 dev_attr_store - [kernel]",
        "#4 sysfs_kf_write - [kernel]",
        "#5 kernfs_fop_write - [kernel]",
        "#6 __vfs_write - [kernel]",
        "#7 vfs_write - [kernel]",
        "#8 ksys_write - [kernel]",
    ]


def test_arm64_pc_is_frame_0() -> None:
    assert frame_lines("bug_arm64_oops")[:2] == [
        "#0 demo_drv_probe - [demo_drv]",
        "#1 demo_drv_probe - [demo_drv]",
    ]


@pytest.mark.parametrize(
    "line",
    [
        "RIP: 0010:barsnet_poll+0x15/0x60 [barsnet]",
        "RIP: 0010:[<ffffffffa0123456>]  [<ffffffffa0123456>] barsnet_poll+0x15/0x60 [barsnet]",
        "IP: [<ffffffffa0123456>] barsnet_poll+0x15/0x60 [barsnet]",
        "PC is at barsnet_poll+0x15/0x60 [barsnet]",
        "pc : barsnet_poll+0x15/0x60 [barsnet]",
        "EIP is at barsnet_poll+0x15/0x60 [barsnet]",
        "EIP: [<f8b41205>] barsnet_poll+0x15/0x60 [barsnet] SS:ESP 0068:f64b5dc4",
    ],
)
def test_the_faulting_function_is_frame_0(line: str) -> None:
    event = KernelEvent.from_lines(Kind.BUG, ("BUG: unable to handle page fault", line))
    assert event.fields.pc == Frame("barsnet_poll", "barsnet")
    assert [x for x in event.payload().splitlines() if x.startswith("#")] == [
        "#0 barsnet_poll - [barsnet]"
    ]
    assert event.signature == "barsnet_poll [barsnet]"


@pytest.mark.parametrize(
    ("line", "frame"),
    [
        (" ? __queue_work+0x1f4/0x3a0", Frame("__queue_work", reliable=False)),
        (" [<c0123456>] warn_on_slowpath+71/115", Frame("warn_on_slowpath")),
        (" [<c0123456>] ? printk+24/32", Frame("printk", reliable=False)),
        (" [<f8a3c1d0>] demo_fn+208/256 [demo]", Frame("demo_fn", "demo")),
        (" [warn_on_slowpath+71/115] warn_on_slowpath+0x47/0x73", Frame("warn_on_slowpath")),
        (" [vprintk+769/816] ? vprintk+0x301/0x330", Frame("vprintk", reliable=False)),
        (
            " <IRQ>  [<ffffffff815e18a9>] ? dump_stack+0x19/0x1b",
            Frame("dump_stack", "kernel", False),
        ),
        (
            "[<bf0a1000>] (demo_write [demo]) from [<bf0a10a0>] (demo_store+0x40/0x6c [demo])",
            Frame("demo_write", "demo"),
        ),
        (
            "[<c0012345>] (unwind_backtrace+0x0/0xf8) from [<c0011234>] (show_stack+0x10/0x14)",
            Frame("unwind_backtrace"),
        ),
    ],
)
def test_frame_forms(line: str, frame: Frame) -> None:
    assert parse_fields(["Call Trace:", line]).frames == (frame,)


@pytest.mark.parametrize(
    ("line", "version", "tainted"),
    [
        (
            "Pid: 1234, comm: x Not tainted 2.6.32-5-686 #1 Demo Board",
            "2.6.32-5-686",
            "Not tainted",
        ),
        ("Pid: 2577, comm: x Not tainted (2.6.32-5-686 #1) Demo", "2.6.32-5-686", "Not tainted"),
        (
            "Pid: 3221, comm: vzctl veid: 0 Tainted: P     ---------   2.6.32.53-demo #28",
            "2.6.32.53-demo",
            "P",
        ),
        (
            "Pid: 19703, comm: make Tainted: P      D    2.6.31.5-127.fc12.x86_64 #1",
            "2.6.31.5-127.fc12.x86_64",
            "P D",
        ),
    ],
)
def test_kernel_version_from_old_pid_lines(line: str, version: str, tainted: str) -> None:
    fields = parse_fields([line])
    assert (fields.kernel_version, fields.tainted) == (version, tainted)


def test_signature_prefers_reliable_frames_to_unreliable_ones() -> None:
    lines = (
        "WARNING: at demo.c:1 demo_fn()",
        "Call Trace:",
        " [<c0123456>] ? stale_caller+0x1/0x2 [demo]",
        " [<c0123457>] real_caller+0x1/0x2 [demo]",
    )
    assert KernelEvent.from_lines(Kind.WARNING, lines).signature == "real_caller [demo]"
    only_unreliable = lines[:3]
    event = KernelEvent.from_lines(Kind.WARNING, only_unreliable)
    assert event.signature == "stale_caller [demo]"
