"""klogscanner as a process: the shipped samples, garbage, pipes, /dev/kmsg, dedupe."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pytest
from daemon_harness import DaemonHarness
from probe_support import ProbeConfig, Running, probe
from test_klog_parser import CLASSES, EXPECTED

DATA = Path(__file__).resolve().parent.parent / "data" / "klog"


def scan(config: Path, source: Path | str, *extra: str) -> subprocess.CompletedProcess[str]:
    return probe("klogscanner", "--once", "--source", str(source), "-f", str(config), *extra)


def sent(stderr: str) -> list[tuple[str, str]]:
    """(kind, signature) of each record the log lines say was sent."""
    found = []
    for line in stderr.splitlines():
        what, marker, _ = line.removeprefix("klogscanner: ").rpartition(": sent ")
        if marker:
            kind, _, signature = what.partition(" ")
            found.append((kind, signature))
    return found


@pytest.mark.parametrize("framing", ["kmsg", "dmesg"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_sample_gives_its_kind_and_signature(
    daemon: DaemonHarness, probe_config: ProbeConfig, name: str, framing: str
) -> None:
    result = scan(probe_config(), DATA / f"{name}.{framing}")
    assert result.returncode == 0, result.stderr
    assert sent(result.stderr) == EXPECTED[name]
    rows = daemon.records()
    assert [(row["classification"], row["severity"]) for row in rows] == [
        CLASSES[kind] for kind, _ in EXPECTED[name]
    ]
    assert all(row["payload"].startswith(("Crash Report:\n", "[Hardware Error]")) for row in rows)


def test_the_stored_payload_keeps_frame_0_and_the_unreliable_frames(
    daemon: DaemonHarness, probe_config: ProbeConfig
) -> None:
    for name in ("bug_i386_eip", "warning_x86_unreliable"):
        result = scan(probe_config(), DATA / f"{name}.dmesg")
        assert result.returncode == 0, result.stderr
    first, second = (row["payload"].splitlines() for row in daemon.records())
    assert "#0 demofs_lookup - [demofs]" in first
    assert "#1 ? d_alloc - [kernel]" in first
    assert "#4 ? __queue_work - [kernel]" in second


def test_garbage_and_random_bytes_never_crash_it(
    daemon: DaemonHarness, probe_config: ProbeConfig, tmp_path: Path
) -> None:
    noise = tmp_path / "noise"
    generator = random.Random(1234)
    noise.write_bytes(bytes(generator.randrange(256) for _ in range(200_000)))
    for source in (DATA / "garbage.bin", noise):
        result = scan(probe_config(), source)
        assert (result.returncode, result.stderr) == (0, "")
    assert daemon.records() == []


def test_a_report_cut_mid_trace_is_still_sent(
    daemon: DaemonHarness, probe_config: ProbeConfig
) -> None:
    result = scan(probe_config(), DATA / "truncated.kmsg")
    assert sent(result.stderr) == [("bug", "demo_fill_pages [demo_fill]")]


def test_a_signature_is_sent_once_per_run(
    daemon: DaemonHarness, probe_config: ProbeConfig, tmp_path: Path
) -> None:
    twice = tmp_path / "twice.dmesg"
    twice.write_bytes((DATA / "warning_x86.dmesg").read_bytes() * 2)
    result = scan(probe_config(), twice)
    assert sent(result.stderr) == [("warning", "demo_vblank_enable [demo_drm]")]
    assert "seen this boot, not sent again" in result.stderr
    assert len(daemon.records()) == 1


def test_a_quiet_pipe_ends_the_open_report(
    daemon: DaemonHarness, probe_config: ProbeConfig
) -> None:
    # The sample up to its trace's last line: only the quiet period can end the report.
    text = (DATA / "softlockup.dmesg").read_text()
    text = text[: text.index("</TASK>\n") + len("</TASK>\n")]
    config = probe_config(klog_quiet_period=0.2)
    scanner = Running(
        "klogscanner", "--source", "/dev/stdin", "-f", str(config), stdin=subprocess.PIPE
    )
    try:
        assert scanner.proc.stdin is not None
        scanner.proc.stdin.write(text)
        scanner.proc.stdin.flush()
        [line] = scanner.wait_for(" sent ")
        assert line.startswith("klogscanner: softlockup demo_spin_write [demo_spin]: sent ")
    finally:
        scanner.stop()


def test_dev_kmsg_is_read_once_per_boot(daemon: DaemonHarness, probe_config: ProbeConfig) -> None:
    if not os.access("/dev/kmsg", os.R_OK):
        pytest.skip("/dev/kmsg is not readable here")
    state = daemon.state_dir
    first = probe("klogscanner", "--once", "-S", str(state), "-f", str(probe_config()))
    assert first.returncode == 0, first.stderr
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert (state / "klogscanner.position").read_text().startswith(boot_id + " ")
    again = probe("klogscanner", "--once", "-S", str(state), "-f", str(probe_config()))
    assert sent(again.stderr) == []


def test_a_missing_source_is_one_line_and_status_1(
    probe_config: ProbeConfig, tmp_path: Path
) -> None:
    missing = tmp_path / "missing"  # not a fixed path, which something else may create
    result = probe("klogscanner", "--once", "-s", str(missing), "-f", str(probe_config()))
    assert result.returncode == 1
    assert result.stderr == f"klogscanner: cannot read {missing}: No such file or directory\n"


def test_a_position_that_cannot_be_saved_sends_nothing(
    daemon: DaemonHarness, probe_config: ProbeConfig
) -> None:
    """On a device (here /dev/null, which reads as an empty kernel log) the
    position is saved before anything is read."""
    (daemon.state_dir / "klogscanner.position").mkdir()  # where the file must go
    result = scan(probe_config(), "/dev/null", "-S", str(daemon.state_dir))
    assert result.returncode == 73, result.stderr
    assert result.stderr.startswith("klogscanner: cannot save the position in ")
    assert result.stderr.endswith("; stopping\n")
