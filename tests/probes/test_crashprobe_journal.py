"""crashprobe --from-journal: systemd-coredump's entries in real journal files."""

from __future__ import annotations

from pathlib import Path

import pytest
from daemon_harness import DaemonHarness
from journal_files import coredump_entry, write_journal
from probe_support import ProbeConfig, Running, block_with_a_directory, need, probe
from telemd_probes.crash.coredump_entry import crash_from_entry, field, parse_stack_trace

OTHER_ENTRY = {"MESSAGE": "Started demo.service.", "PRIORITY": "6"}


@pytest.fixture(autouse=True)
def journalctl() -> None:
    need("journalctl", "systemd")


def from_journal(config: Path, journal: Path) -> list[str]:
    result = probe("crashprobe", "--from-journal", "--once", "-f", str(config), "-D", str(journal))
    assert result.returncode == 0, result.stderr
    return result.stderr.splitlines()


def test_each_coredump_entry_is_reported_once_across_runs(
    daemon: DaemonHarness, probe_config: ProbeConfig, tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    config = probe_config(filters=True)
    write_journal(journal, [coredump_entry(100), OTHER_ENTRY, coredump_entry(200, "/opt/x/y")])
    assert len(from_journal(config, journal)) == 2
    assert from_journal(config, journal) == []  # a restart resumes after the cursor
    write_journal(journal, [coredump_entry(300, function="other_crash")])
    assert len(from_journal(config, journal)) == 1
    rows = daemon.records()
    assert [row["classification"] for row in rows] == [
        "org.clearlinux/crash/clr",
        "org.clearlinux/crash/unknown",
        "org.clearlinux/crash/clr",
    ]
    assert rows[1]["payload"] == "Crash from third party\n"
    assert "#0 other_crash() - [demo] +0x1165\n" in rows[2]["payload"]


def test_the_payload_is_clears_layout_without_secrets(
    daemon: DaemonHarness, probe_config: ProbeConfig, tmp_path: Path
) -> None:
    write_journal(tmp_path / "journal", [coredump_entry(4242)])
    from_journal(probe_config(filters=True), tmp_path / "journal")
    [row] = daemon.records()
    assert (row["severity"], row["creation_timestamp"]) == (3, 1700000000)
    assert row["payload"] == (
        "Process: /usr/bin/demo\nPID: 4242\nSignal: 11\nName: demo\nCrashes: 1\n"
        "\nBacktrace (TID 4242):\n"
        "#0 crash_here() - [demo] +0x1165\n"
        "#1 main() - [demo] +0x11c0\n"
        "#2 __libc_start_call_main() - [libc.so.6] +0x27249\n"
        "#3 ??? - [demo] +0x1090\n"
        "\nBacktrace (TID 4243):\n"
        "#0 __libc_pause() - [libc.so.6] +0xd3df2\n"
        "#1 (no symbols)\n"
    )


def test_following_reports_new_entries_and_stops_cleanly(
    daemon: DaemonHarness, probe_config: ProbeConfig, tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    write_journal(journal, [coredump_entry(1)])
    config = probe_config(filters=True)
    follower = Running("crashprobe", "--from-journal", "-f", str(config), "-D", str(journal))
    try:
        assert len(follower.wait_for(" sent ")) == 1
        write_journal(journal, [coredump_entry(2, function="later")])
        assert len(follower.wait_for(" sent ", count=2)) == 2
    finally:
        assert follower.stop() == 0
    assert from_journal(config, journal) == []
    assert len(daemon.records()) == 2


def test_an_entry_is_kept_for_later_while_the_daemon_is_down(
    harness: DaemonHarness, probe_config: ProbeConfig, tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    write_journal(journal, [coredump_entry(1)])
    harness.state_dir.mkdir()
    config = probe_config(filters=True)
    result = probe("crashprobe", "--from-journal", "--once", "-f", str(config), "-D", str(journal))
    assert result.returncode == 1
    assert "not recorded: telemd is not running" in result.stderr
    harness.start()
    from_journal(config, journal)
    assert len(harness.records()) == 1


def test_entries_as_journalctl_prints_them() -> None:
    entry: dict[str, object] = {
        "COREDUMP_EXE": [47, 98, 105, 110, 47, 120],  # binary-safe form of "/bin/x"
        "COREDUMP_COMM": ["x", "ignored-duplicate"],
        "COREDUMP_SIGNAL": "6",
        "MESSAGE": "Process 1 (x) of user 0 dumped core.",
    }
    assert field(entry, "COREDUMP_EXE") == "/bin/x"
    crash = crash_from_entry(entry)
    assert (crash.executable, crash.name, crash.signal) == ("/bin/x", "x", 6)
    assert crash.error == "systemd-coredump logged no stack trace"


def test_stack_traces_of_older_systemd_have_no_offsets() -> None:
    [thread] = parse_stack_trace(
        "Stack trace of thread 7:\n#0  0x00007f0000001000 raise (libc.so.6)\n#1  garbage\n"
    )
    assert (thread.tid, len(thread.frames)) == (7, 1)
    assert thread.frames[0].line(0) == "#0 raise() - [libc.so.6]"


def test_a_cursor_that_cannot_be_saved_sends_nothing(
    daemon: DaemonHarness, probe_config: ProbeConfig, tmp_path: Path
) -> None:
    """Sending without a saved cursor would send the same crash after every restart."""
    write_journal(tmp_path / "journal", [coredump_entry(1)])
    (daemon.state_dir / "crashprobe-journal.cursor").mkdir()  # where the file must go
    config = probe_config(filters=True)
    for _ in range(2):  # as systemd would start it again
        result = probe(
            "crashprobe",
            "--from-journal",
            "--once",
            "-f",
            str(config),
            "-D",
            str(tmp_path / "journal"),
        )
        assert result.returncode == 73, result.stderr
        assert "cannot save the journal cursor" in result.stderr
        assert result.stderr.endswith("; sending nothing\n")
    assert daemon.records() == []


def test_a_cursor_that_stops_saving_stops_the_probe(
    daemon: DaemonHarness, probe_config: ProbeConfig, tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    write_journal(journal, [coredump_entry(1)])
    config = probe_config(filters=True)
    follower = Running("crashprobe", "--from-journal", "-f", str(config), "-D", str(journal))
    assert len(follower.wait_for(" sent ")) == 1
    # From here on the cursor cannot be saved (whether the first entry's
    # save came before this or not).
    block_with_a_directory(daemon.state_dir / "crashprobe-journal.cursor")
    write_journal(journal, [coredump_entry(2, function="later")])
    assert follower.proc.wait(20) == 73
    assert follower.wait_for("; stopping"), follower.lines
    again = probe("crashprobe", "--from-journal", "--once", "-f", str(config), "-D", str(journal))
    assert again.returncode == 73 and " sent " not in again.stderr
    pids = [row["payload"].split("\n")[1] for row in daemon.records()]
    assert len(pids) == len(follower.matching(" sent ")) and len(set(pids)) == len(pids)


def test_following_without_a_cursor_starts_at_the_beginning_of_the_boot(
    daemon: DaemonHarness, probe_config: ProbeConfig, tmp_path: Path
) -> None:
    """journalctl --follow alone shows only the last 10 entries."""
    journal = tmp_path / "journal"
    write_journal(journal, [coredump_entry(pid, function=f"crash_{pid}") for pid in range(12)])
    config = probe_config(filters=True)
    follower = Running("crashprobe", "--from-journal", "-f", str(config), "-D", str(journal))
    try:
        assert len(follower.wait_for(" sent ", count=12)) == 12
    finally:
        assert follower.stop() == 0
    assert len(daemon.records()) == 12


def test_without_a_cursor_the_boot_is_the_journals_newest_not_procs(
    daemon: DaemonHarness, probe_config: ProbeConfig, tmp_path: Path
) -> None:
    """In a container, a sandboxed unit's /proc shows the host's boot id while
    journald stamps the container's: the journal's newest entry decides."""
    journal = tmp_path / "journal"
    container_boot = "0123456789abcdef0123456789abcdef"
    write_journal(journal, [coredump_entry(7, function="crash_in_container")], container_boot)
    result = probe("crashprobe", "--from-journal", "--once", "-f", str(probe_config()), "-D",
                   str(journal))  # fmt: skip
    assert result.returncode == 0, result.stderr
    [record] = daemon.records()
    assert "crash_in_container" in record["payload"]
