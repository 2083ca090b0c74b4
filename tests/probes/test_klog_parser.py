"""Tests for the klog scanner: samples in three framings, payload layout, bounds, dedupe."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from telemd_probes.klog.event import KernelEvent, Kind
from telemd_probes.klog.kmsg import parse_lines
from telemd_probes.klog.parser import MAX_BYTES, MAX_LINES, Deduper, OopsScanner

DATA = Path(__file__).resolve().parent.parent / "data" / "klog"
FRAMINGS = ("kmsg", "dmesg", "bare")

# Written out rather than read from Kind, so that a changed name or severity fails here.
CLASSES = {
    "bug": ("org.clearlinux/kernel/bug", 4),
    "warning": ("org.clearlinux/kernel/warning", 2),
    "stackoverflow": ("org.clearlinux/kernel/stackoverflow", 4),
    "panic": ("org.clearlinux/kernel/panic", 4),
    "bert": ("org.clearlinux/bert/debug", 2),
    "softlockup": ("org.clearlinux/kernel/softlockup", 3),
    "hardlockup": ("org.clearlinux/kernel/hardlockup", 4),
    "hungtask": ("org.clearlinux/kernel/hungtask", 3),
    "rcustall": ("org.clearlinux/kernel/rcustall", 3),
    "oom": ("org.clearlinux/kernel/oom", 2),
    "mce": ("org.clearlinux/kernel/mce", 3),
}

# sample -> the (kind, signature) of each event it holds, in order.
EXPECTED = {
    "bug_x86_nullderef": [("bug", "ext4_readdir [ext4]")],
    "bug_x86_oldgpf": [("bug", "do_sys_open [kernel]")],
    "bug_arm64_oops": [("bug", "demo_drv_probe [demo_drv]")],
    "bug_kernel_bug_at": [("bug", "demofs_evict_inode [demofs]")],
    "bug_list_corruption": [("bug", "demo_queue_reap [demo_q]")],
    "warning_x86": [("warning", "demo_vblank_enable [demo_drm]")],
    "warning_netdev": [("warning", "dev_watchdog [kernel]")],
    "stackoverflow": [("stackoverflow", "demo_recurse [demo_stack]")],
    "panic": [("panic", "mount_root_generic [kernel]")],
    "bert": [("bert", "BERT: Error records from previous boot:")],
    "softlockup": [("softlockup", "demo_spin_write [demo_spin]")],
    "hardlockup": [("hardlockup", "demo_irqoff_loop [demo_irqoff]")],
    "hungtask": [("hungtask", "bit_wait_io [kernel]")],
    "rcustall": [("rcustall", "demo_rcu_hog [demo_rcu]")],
    "rcustall_self": [("rcustall", "demo_work_fn [demo_wq]")],
    "oom": [("oom", "__alloc_pages_slowpath.constprop.0 [kernel]")],
    "mce": [
        ("mce", "mce: [Hardware Error]: CPU N: Machine Check Exception: N Bank N: N"),
        ("panic", "Kernel panic - not syncing: Fatal machine check"),
    ],
    "mce_logged": [("mce", "mce: [Hardware Error]: Machine check events logged")],
    "truncated": [("bug", "demo_fill_pages [demo_fill]")],
    "warning_x86_unreliable": [("warning", "dev_watchdog [kernel]")],
    "warning_i386_klogd": [("warning", "demo_snd_pointer [demo_snd]")],
    "warning_i386_symbolic": [("warning", "mtrr_trim_uncached_memory [kernel]")],
    "bug_i386_eip": [("bug", "demofs_lookup [demofs]")],
    "bug_arm32_oops": [("bug", "demo_gpio_write [demo_gpio]")],
}


def scan(messages: list[str]) -> list[KernelEvent]:
    scanner = OopsScanner()
    events = [event for message in messages for event in scanner.feed(message)]
    return events + scanner.flush()


def scan_file(path: Path) -> list[KernelEvent]:
    return scan([r.message for r in parse_lines(path.read_bytes().splitlines())])


def sample(name: str, framing: str = "kmsg") -> list[KernelEvent]:
    return scan_file(DATA / f"{name}.{framing}")


def payload_lines(name: str, index: int = 0) -> list[str]:
    return sample(name)[index].payload().splitlines()


def test_every_sample_is_expected() -> None:
    assert {path.stem for path in DATA.glob("*.bare")} == set(EXPECTED)
    assert {kind for events in EXPECTED.values() for kind, _ in events} == set(CLASSES)


@pytest.mark.parametrize("framing", FRAMINGS)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample(name: str, framing: str) -> None:
    events = sample(name, framing)
    assert [(e.kind.name.lower(), e.signature) for e in events] == EXPECTED[name]
    for event in events:
        assert (event.classification, event.severity) == CLASSES[event.kind.name.lower()]
        assert not event.truncated


def test_soft_lockup_line_is_not_a_bug() -> None:
    (event,) = scan(["watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [kworker/0:1:31]"])
    assert event.kind is Kind.SOFTLOCKUP


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("NMI watchdog: Watchdog detected hard LOCKUP on cpu 3", Kind.HARDLOCKUP),
        ("INFO: rcu_sched self-detected stall on CPU { 2}  (t=60000 jiffies)", Kind.RCUSTALL),
        ("rcu: INFO: rcu_preempt self-detected stall on CPU", Kind.RCUSTALL),
        ("INFO: task Web Content:5120 blocked for more than 245 seconds.", Kind.HUNGTASK),
        ("BUG: scheduling while atomic: swapper/0/0/0x00000002", Kind.BUG),
        ("BUG: unable to handle kernel paging request at ffffffffa0000000", Kind.BUG),
        (
            "general protection fault, probably for non-canonical address 0xdead: 0000 [#1]",
            Kind.BUG,
        ),
        ("Internal error: Oops - BUG: 00000000f2000800 [#1] SMP", Kind.BUG),
        ("ALSA sound/core/pcm_lib.c:154: BUG: stream = 1, pos = 0x1138", Kind.BUG),
        ("WARNING: at fs/demo.c:12 demo_fn+0x1/0x2()", Kind.WARNING),
        ("sysctl table check failed: /kernel/demo .3.99 Missing strategy", Kind.WARNING),
        ('irq 16: nobody cared (try booting with the "irqpoll" option)', Kind.WARNING),
        ("RTNL: assertion failed at net/core/dev.c (2871)", Kind.WARNING),
        ("ACPI Error: Aborting method \\_SB.PCI0.GFX0._DSM due to previous error", Kind.WARNING),
        (
            "e1000e 0000:00:19.0 eth0: NETDEV WATCHDOG: CPU: 2: transmit queue 0 timed out 5312 ms",
            Kind.WARNING,
        ),
        ("Out of memory: Killed process 812 (demo) total-vm:9kB", Kind.OOM),
        ("Memory cgroup out of memory: Killed process 812 (demo) total-vm:9kB", Kind.OOM),
        ("[Hardware Error]: Machine check events logged", Kind.MCE),
    ],
)
def test_starter(line: str, kind: Kind) -> None:
    assert [event.kind for event in scan([line])] == [kind]


@pytest.mark.parametrize(
    "line",
    [
        "BUG without colon",
        "a WARNING: in the middle",
        "Call Trace:",
        " dump_stack+0x19/0x1b",
        "Oopsie",
    ],
)
def test_not_a_starter(line: str) -> None:
    assert scan([line]) == []


def test_payload_layout_x86() -> None:
    lines = payload_lines("bug_x86_nullderef")
    assert lines[:6] == [
        "Crash Report:",
        "Reason: BUG: kernel NULL pointer dereference, address: 0000000000000028",
        "Kernel Version : 6.1.0-18-amd64",
        "Tainted : G OE",
        "Modules : ext4 crc16 mbcache jbd2 demo_trace(OE) virtio_net net_failover failover"
        " virtio_blk",
        "Backtrace :",
    ]
    assert lines[6] == "Register RIP: Non-zero"
    assert "Register RAX: Zero" in lines
    assert "Register knlGS: Zero" in lines
    frames = [line for line in lines if line.startswith("#")]
    assert frames == [
        "#0 ext4_readdir - [ext4]",  # RIP: the faulting function
        "#1 ? __die - [kernel]",
        "#2 ? page_fault_oops - [kernel]",
        "#3 ? exc_page_fault - [kernel]",
        "#4 ? asm_exc_page_fault - [kernel]",
        "#5 ? ext4_readdir - [ext4]",
        "#6 iterate_dir - [kernel]",
        "#7 __x64_sys_getdents64 - [kernel]",
        "#8 ? __pfx_filldir64 - [kernel]",
        "#9 do_syscall_64 - [kernel]",
        "#10 entry_SYSCALL_64_after_hwframe - [kernel]",
    ]
    # The frames follow the registers and end the payload, as Clear lays them out.
    assert lines[lines.index(frames[0]) :] == frames


def test_payload_layout_arm64() -> None:
    lines = payload_lines("bug_arm64_oops")
    assert "Kernel Version : 6.6.15-arm64" in lines
    assert "Register PC: Non-zero" in lines
    assert "Register X0: Zero" in lines
    assert "#1 demo_drv_probe - [demo_drv]" in lines
    assert "#9 el0_svc_common.constprop.0 - [kernel]" in lines


def test_payload_layout_old_x86() -> None:
    lines = payload_lines("bug_x86_oldgpf")
    assert "Tainted : Not tainted" in lines
    assert "Kernel Version : 3.16.0-4-amd64" in lines
    assert "Register RAX: Non-zero" in lines
    # `?` frames are kept, marked as Clear marks them.
    assert [line for line in lines if line.startswith("#")] == [
        "#0 do_sys_open - [kernel]",
        "#1 ? system_call_fast_compare_end - [kernel]",
        "#2 system_call_fast_compare_end - [kernel]",
    ]


def test_payload_hung_task_reads_version_from_not_tainted_line() -> None:
    lines = payload_lines("hungtask")
    assert lines[2:5] == ["Kernel Version : 6.1.0-18-amd64", "Tainted : Not tainted", "Backtrace :"]
    assert "#8 jbd2_journal_commit_transaction - [jbd2]" in lines
    assert not any(line.startswith("Modules :") for line in lines)


def test_payload_bert_is_the_raw_hardware_lines() -> None:
    lines = payload_lines("bert")
    assert len(lines) == 12
    assert lines[0] == "[Hardware Error]: event severity: fatal"
    assert all(line.startswith("[Hardware Error]:") for line in lines)


def test_payload_mce_keeps_banks_but_not_the_rip_line() -> None:
    lines = payload_lines("mce")
    reason = "mce: [Hardware Error]: CPU 2: Machine Check Exception: 5 Bank 4: b200000000070005"
    assert lines[1] == f"Reason: {reason}"
    assert "mce: [Hardware Error]: TSC 2c4f8e9a1b6 ADDR 1f8a3c040 MISC 86" in lines
    assert not any("RIP" in line or "ffffffff8d6e4c2a" in line for line in lines)


def test_merged_message_keeps_its_reason_and_takes_the_trap_kind() -> None:
    (netdev,) = sample("warning_netdev")
    assert netdev.reason == "NETDEV WATCHDOG: enp3s0 (r8169): transmit queue 0 timed out"
    (corruption,) = sample("bug_list_corruption")
    assert corruption.reason.startswith("list_del corruption")
    assert corruption.kind is Kind.BUG


def test_old_warning_absorbs_its_message() -> None:
    events = scan(
        [
            "WARNING: at net/sched/sch_generic.c:261 dev_watchdog+0x24f/0x260()",
            "Hardware name: Demo Board",
            "NETDEV WATCHDOG: eth0 (e1000e): transmit queue 0 timed out",
            "Modules linked in: e1000e",
            "Pid: 0, comm: swapper Not tainted 2.6.32-5-amd64 #1",
            "Call Trace:",
            " [<ffffffff8104c2f1>] ? warn_slowpath_common+0x77/0xa3",
            " [<ffffffff8104c379>] warn_slowpath_fmt+0x51/0x59",
            " [<ffffffff8125e1c4>] dev_watchdog+0x24f/0x260",
            "---[ end trace 8f2d1e0c4b3a2910 ]---",
        ]
    )
    assert [(e.kind, e.signature, e.kernel_version) for e in events] == [
        (Kind.WARNING, "dev_watchdog [kernel]", "2.6.32-5-amd64")
    ]
    assert len(events[0].lines) == 10


def test_one_line_message_ends_at_the_next_unrelated_line() -> None:
    events = scan(
        ["ACPI Error: Method parse/execution failed (AE_NOT_FOUND)", "usb 1-1: new device", "x"]
    )
    assert [len(e.lines) for e in events] == [1]


def test_one_line_message_followed_by_a_dump() -> None:
    events = scan(
        [
            'irq 16: nobody cared (try booting with the "irqpoll" option)',
            "CPU: 0 PID: 0 Comm: swapper/0 Not tainted 6.1.0 #1",
            "Call Trace:",
            " <IRQ>",
            " dump_stack_lvl+0x44/0x5c",
            " __report_bad_irq+0x35/0xaa",
            " note_interrupt.cold+0xb/0x5c",
            " </IRQ>",
            "handlers:",
        ]
    )
    assert [(e.kind, e.signature, len(e.lines)) for e in events] == [
        (Kind.WARNING, "__report_bad_irq [kernel]", 8)
    ]


def test_new_report_ends_the_open_one() -> None:
    first = [
        "WARNING: CPU: 0 PID: 1 at a.c:1 alpha+0x1/0x2",
        "Call Trace:",
        " alpha_caller+0x1/0x2",
    ]
    second = ["WARNING: CPU: 0 PID: 1 at b.c:2 beta+0x1/0x2", "Call Trace:", " beta_caller+0x1/0x2"]
    events = scan(first + second)
    assert [(e.signature, len(e.lines)) for e in events] == [
        ("alpha [kernel]", 3),
        ("beta [kernel]", 3),
    ]


def test_trace_ends_at_end_marker_without_waiting() -> None:
    scanner = OopsScanner()
    assert scanner.feed("BUG: demo") == []
    events = scanner.feed("---[ end trace 0000000000000000 ]---")
    assert [e.lines for e in events] == [("BUG: demo", "---[ end trace 0000000000000000 ]---")]
    assert scanner.flush() == []


def test_oom_runs_from_invocation_to_kill() -> None:
    events = scan(
        [
            "demo invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
            "Mem-Info:",
            "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),task=demo,pid=9,uid=0",
            "Out of memory: Killed process 9 (demo) total-vm:1kB",
            "oom_reaper: reaped process 9 (demo)",
        ]
    )
    assert [(e.kind, len(e.lines)) for e in events] == [(Kind.OOM, 4)]


def test_header_without_a_trace_is_bounded() -> None:
    events = scan(
        ["BUG: Bad page state in process demo  pfn:1234"] + [f"line {n}" for n in range(200)]
    )
    assert [len(e.lines) for e in events] == [64]


def test_truncated_sample_keeps_what_arrived() -> None:
    (event,) = sample("truncated")
    assert [(f.function, f.reliable) for f in event.frames] == [
        ("show_regs", False),
        ("__die", False),
        ("demo_fill_ioctl", True),
    ]
    assert not event.truncated


def test_long_trace_is_cut_and_drained() -> None:
    frames = [f" demo_frame_{n}+0x10/0x20 [demo]" for n in range(400)]
    after = ["WARNING: CPU: 1 PID: 2 at x.c:3 next_one+0x1/0x2", "---[ end trace 1 ]---"]
    events = scan(
        ["BUG: kernel NULL pointer dereference, address: 0", "Call Trace:", *frames, *after]
    )
    assert [(e.kind, e.truncated, len(e.lines)) for e in events] == [
        (Kind.BUG, True, MAX_LINES),
        (Kind.WARNING, False, 2),
    ]
    assert len(events[0].frames) == 64


def test_byte_bound() -> None:
    frames = [f" demo_{'x' * 900}_{n}+0x10/0x20" for n in range(40)]
    (event,) = scan(["BUG: demo", "Call Trace:", *frames])
    assert event.truncated
    assert sum(len(line) for line in event.lines) <= MAX_BYTES
    assert len(event.lines) < 40


def test_payload_fits_the_wire_limit() -> None:
    modules = "Modules linked in: " + " ".join(f"module_{n}" for n in range(600))
    frames = [f" {'f' * 200}_{n}+0x1/0x2 [demo]" for n in range(200)]
    (event,) = scan(["BUG: demo", modules, "Call Trace:", *frames])
    payload = event.payload()
    assert len(payload.encode()) <= 8192
    assert payload.startswith("Crash Report:\nReason: BUG: demo\n")
    assert payload.endswith("\n")


def test_payload_is_printable_ascii() -> None:
    (event,) = scan(["BUG: caf\u00e9 \udcff \x07 demo", "---[ end trace ]---"])
    assert event.payload().splitlines()[1] == "Reason: BUG: caf? ? ? demo"


HEX_RUN = re.compile(r"[0-9a-f]{8,}")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_registers_never_leak(name: str) -> None:
    for event in sample(name):
        lines = event.payload().splitlines()
        registers = [line for line in lines if line.startswith("Register ")]
        assert all(re.fullmatch(r"Register \w+: (Zero|Non-zero)", line) for line in registers)
        if event.kind in (Kind.BERT, Kind.MCE):
            continue
        assert [
            line for line in lines if HEX_RUN.search(line) and not line.startswith("Reason:")
        ] == []


def test_registers_are_reported() -> None:
    events = [event for name in EXPECTED for event in sample(name)]
    assert sum(len(event.registers) for event in events) > 100


def test_garbage_gives_nothing() -> None:
    assert scan_file(DATA / "garbage.bin") == []


def test_feed_splits_multi_line_messages() -> None:
    (event,) = scan(["BUG: demo\nCall Trace:\n demo_fn+0x1/0x2 [demo]\n---[ end trace 1 ]---"])
    assert event.signature == "demo_fn [demo]"


def test_flush_twice() -> None:
    scanner = OopsScanner()
    scanner.feed("BUG: demo")
    assert len(scanner.flush()) == 1
    assert scanner.flush() == []


def test_deduper() -> None:
    deduper = Deduper()
    (first,) = sample("bug_x86_nullderef")
    (again,) = sample("bug_x86_nullderef", "dmesg")
    (other,) = sample("warning_x86")
    assert deduper.is_new(first)
    assert not deduper.is_new(again)
    assert deduper.is_new(other)
    assert not deduper.is_new(first)


def test_deduper_keys_on_classification_too() -> None:
    deduper = Deduper()
    (bug,) = scan(["BUG: demo", "Call Trace:", " shared_fn+0x1/0x2"])
    (warning,) = scan(["WARNING: suspicious RCU usage", "Call Trace:", " shared_fn+0x1/0x2"])
    assert bug.signature == warning.signature == "shared_fn [kernel]"
    assert deduper.is_new(bug)
    assert deduper.is_new(warning)


def test_deduper_forgets_the_least_recent() -> None:
    deduper = Deduper(capacity=2)
    a, b, c = (scan(["BUG: demo", "Call Trace:", f" fn_{n}+0x1/0x2"])[0] for n in "abc")
    assert deduper.is_new(a) and deduper.is_new(b)
    assert not deduper.is_new(a)  # a is now more recent than b
    assert deduper.is_new(c)  # forgets b
    assert not deduper.is_new(a)
    assert deduper.is_new(b)


# Lines the scanner reacts to, mixed with noise so that events do come out.
KERNEL_LINES = sorted(
    {
        r.message
        for name in EXPECTED
        for r in parse_lines((DATA / f"{name}.kmsg").read_bytes().splitlines())
    }
)
REASONS = sorted({event.reason for name in EXPECTED for event in sample(name)})


def check(events: list[KernelEvent]) -> None:
    for event in events:
        payload = event.payload().encode("ascii")
        assert len(payload) <= 8192
        assert len(event.lines) <= MAX_LINES


@settings(max_examples=300)
@given(
    st.lists(
        st.one_of(st.sampled_from(REASONS), st.sampled_from(KERNEL_LINES), st.text(max_size=300)),
        max_size=120,
    )
)
def test_random_lines_never_raise(lines: list[str]) -> None:
    check(scan(lines))


@given(st.binary(max_size=4000))
def test_random_bytes_never_raise(data: bytes) -> None:
    check(scan([r.message for r in parse_lines(data.splitlines())]))


@given(
    st.text(min_size=1000, max_size=3000),
    st.lists(st.from_regex(r"[a-z_]{100,900}", fullmatch=True), min_size=1, max_size=80),
)
def test_huge_fields_stay_within_the_payload_limit(text: str, functions: list[str]) -> None:
    lines = ["BUG: " + text, "Modules linked in: " + text, "Call Trace:"]
    events = scan(lines + [f" {name}+0x1/0x2 [demo]" for name in functions])
    assert events
    check(events)
