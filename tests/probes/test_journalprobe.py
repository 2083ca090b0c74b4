"""journalprobe against a private dbus-daemon with a stand-in systemd, and real journal files."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import DaemonHarness
from journal_files import write_journal
from private_bus import STANDIN, start_bus
from probe_support import ProbeConfig, Running, block_with_a_directory

from telemd.units import OWN_UNITS


@pytest.fixture
def bus_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    bus, env = start_bus(tmp_path)
    try:
        yield env
    finally:
        bus.terminate()
        bus.wait(10)


def standin(env: dict[str, str], *failed: str) -> Running:
    systemd = Running(sys.executable, STANDIN, *failed, env=env, stdin=subprocess.PIPE, bufsize=1)
    assert systemd.wait_for("ready") == ["ready"]
    return systemd


def command(systemd: Running, line: str) -> None:
    assert systemd.proc.stdin is not None
    systemd.proc.stdin.write(line + "\n")
    systemd.proc.stdin.flush()
    assert systemd.wait_for(f"{line.split()[0]} {line.split()[1]} done", count=1)


def journalprobe(config: Path, env: dict[str, str], journal: Path) -> Running:
    probe = Running("journalprobe", "-f", str(config), "-D", str(journal), env=env)
    assert probe.wait_for("watching systemd for failed units")
    return probe


def unit_log(unit: str, *messages: str) -> list[dict[str, str]]:
    return [{"_SYSTEMD_UNIT": unit, "MESSAGE": message, "PRIORITY": "3"} for message in messages]


def test_a_failed_unit_becomes_one_record_with_its_result_and_log(
    daemon: DaemonHarness, probe_config: ProbeConfig, bus_env: dict[str, str], tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    write_journal(journal, unit_log("demo.service", "starting", "cannot open /etc/demo.conf"))
    write_journal(journal, unit_log("other.service", "not this one"))
    config = probe_config(journal_lines=5, journal_ignore_units=["user@*.service"])
    systemd = standin(bus_env)
    probe = journalprobe(config, bus_env, journal)
    try:
        command(systemd, "fail demo.service exit-code 1 3")
        [line] = probe.wait_for(" sent ")
        assert line.startswith("journalprobe: demo.service: sent org.clearlinux/journal/error")
        command(systemd, "fail user@1000.service signal 2 9")
        assert probe.wait_for("user@1000.service: failed (signal); ignored")
        command(systemd, "start demo.service")
        command(systemd, "fail demo.service signal 2 9")
        assert len(probe.wait_for(" sent ", count=2)) == 2
    finally:
        assert probe.stop() == 0
        systemd.stop()
    first, second = daemon.records()
    assert (first["classification"], first["severity"]) == ("org.clearlinux/journal/error", 2)
    header, log = first["payload"].split("\n\n")
    assert header == (
        "MESSAGE=demo.service: Failed with result 'exit-code'.\n"
        "UNIT=demo.service\nRESULT=exit-code\nEXIT_CODE=exited\nEXIT_STATUS=3"
    )
    assert [line.split(": ", 1)[1] for line in log.splitlines()] == [
        "starting",
        "cannot open /etc/demo.conf",
    ]
    assert "RESULT=signal\nEXIT_CODE=killed\nEXIT_STATUS=9\n" in second["payload"]


def test_under_the_privacy_filter_the_unit_log_stays_home(
    daemon: DaemonHarness, probe_config: ProbeConfig, bus_env: dict[str, str], tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    write_journal(journal, unit_log("demo.service", "login failed for my_secret_password"))
    config = probe_config(filters=True, journal_lines=5)
    systemd = standin(bus_env)
    probe = journalprobe(config, bus_env, journal)
    try:
        command(systemd, "fail demo.service exit-code 1 3")
        assert probe.wait_for("demo.service: sent ")
    finally:
        assert probe.stop() == 0
        systemd.stop()
    [row] = daemon.records()
    assert row["payload"] == (
        "MESSAGE=demo.service: Failed with result 'exit-code'.\n"
        "UNIT=demo.service\nRESULT=exit-code\nEXIT_CODE=exited\nEXIT_STATUS=3\n"
    )


def test_units_failed_before_the_start_are_reported_once_across_restarts(
    daemon: DaemonHarness, probe_config: ProbeConfig, bus_env: dict[str, str], tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    write_journal(journal, unit_log("early.service", "early failure"))
    config = probe_config()
    systemd = standin(bus_env, "early.service")
    try:
        for outcome in (" sent ", "this failure was reported already"):
            probe = journalprobe(config, bus_env, journal)
            assert probe.wait_for(f"early.service: {outcome.strip()}")
            assert probe.stop() == 0
    finally:
        systemd.stop()
    [row] = daemon.records()
    assert row["payload"].startswith("MESSAGE=early.service: Failed with result 'exit-code'.\n")


def test_without_a_bus_it_says_so_and_exits_1(probe_config: ProbeConfig, tmp_path: Path) -> None:
    pytest.importorskip("dbus_fast", reason="needs dbus-fast (pip install dbus-fast)")
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=f"unix:path={tmp_path}/no-bus")
    probe = Running("journalprobe", "-f", str(probe_config()), env=env)
    assert probe.proc.wait(30) == 1
    assert probe.wait_for("cannot watch systemd on the system bus")


def test_losing_the_bus_exits_1_so_that_systemd_restarts_it(
    harness: DaemonHarness, probe_config: ProbeConfig, tmp_path: Path
) -> None:
    harness.state_dir.mkdir()  # no daemon: the probe only needs its state directory
    bus, env = start_bus(tmp_path)
    systemd = standin(env)
    probe = journalprobe(probe_config(), env, tmp_path)
    bus.terminate()
    bus.wait(10)
    assert probe.proc.wait(30) == 1
    assert probe.wait_for("lost the connection to the system bus")
    systemd.stop()


def test_telemds_own_units_are_not_reported(
    daemon: DaemonHarness, probe_config: ProbeConfig, bus_env: dict[str, str], tmp_path: Path
) -> None:
    """A record about a failed probe or daemon would start it again: a loop."""
    systemd = standin(bus_env)
    probe = journalprobe(probe_config(), bus_env, tmp_path)
    try:
        # The stand-in describes services only (a socket's Result is on its own interface).
        for unit in [name for name in OWN_UNITS if name.endswith(".service")]:
            command(systemd, f"fail {unit} exit-code 1 1")
            assert probe.wait_for(f"{unit}: failed (exit-code); telemd's own, not reported")
        command(systemd, "fail demo.service exit-code 1 1")
        assert probe.wait_for("demo.service: sent ")
    finally:
        assert probe.stop() == 0
        systemd.stop()
    assert [row["payload"].split("\n")[1] for row in daemon.records()] == ["UNIT=demo.service"]


def test_a_failure_that_cannot_be_remembered_is_not_sent(
    daemon: DaemonHarness, probe_config: ProbeConfig, bus_env: dict[str, str], tmp_path: Path
) -> None:
    reported = daemon.state_dir / "journalprobe.reported"
    reported.mkdir()  # where the file must go
    systemd = standin(bus_env, "early.service")
    sent = []
    try:
        blocked = Running(
            "journalprobe", "-f", str(probe_config()), "-D", str(tmp_path), env=bus_env
        )
        assert blocked.proc.wait(30) == 73
        assert blocked.wait_for("; sending nothing")
        reported.rmdir()
        probe = journalprobe(probe_config(), bus_env, tmp_path)
        assert probe.wait_for("early.service: sent ")
        # From here on nothing can be saved (whether early.service's was or not).
        block_with_a_directory(reported)
        command(systemd, "start demo.service")
        command(systemd, "fail demo.service exit-code 1 1")
        assert probe.proc.wait(30) == 73
        assert probe.wait_for("; stopping")
        sent = probe.matching(" sent ")
        again = Running("journalprobe", "-f", str(probe_config()), "-D", str(tmp_path), env=bus_env)
        assert again.proc.wait(30) == 73
        assert again.wait_for("; sending nothing")
    finally:
        systemd.stop()
    units = [row["payload"].split("\n")[1] for row in daemon.records()]
    assert len(units) == len(sent) and len(set(units)) == len(units)  # each failure once
