"""Every telemctl subcommand, against a live daemon in a temporary directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import AS_NOBODY, NOBODY_UID, DaemonHarness, command, directory_for_nobody
from private_bus import STANDIN, start_bus

from telemd.record import Record
from telemd.units import UNITS


def telemctl(harness: DaemonHarness, *args: str, env: dict[str, str] | None = None):
    return subprocess.run(
        [command("telemctl"), "-f", str(harness.config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def send(harness: DaemonHarness, *payloads: str) -> list[str]:
    with harness.client() as client:
        return [
            client.send(Record("org.example/test/telemctl", 2, payload)) for payload in payloads
        ]


def test_status_of_a_running_daemon(daemon: DaemonHarness) -> None:
    send(daemon, "one", "two")
    result = telemctl(daemon, "status")
    assert result.returncode == 0, result.stderr
    assert "Opted in:        yes" in result.stdout
    assert f"running, pid {daemon.proc.pid}" in result.stdout  # type: ignore[union-attr]
    assert "Spool:           2 records" in result.stdout
    assert "Spool writer:    running" in result.stdout
    state = json.loads(telemctl(daemon, "status", "--json").stdout)
    assert state["running"] and state["spool"]["records"] == 2
    assert state["spool"]["writer"] == "running"
    assert state["intake"]["accepted"] == 2
    assert set(state["delivery"]) >= {"fates", "last_error", "retry_at"}


def test_status_without_a_daemon_reads_the_files(daemon: DaemonHarness) -> None:
    send(daemon, "waiting")
    assert daemon.stop() == 0
    daemon.opt_out()
    state = json.loads(telemctl(daemon, "status", "--json").stdout)
    assert state == {
        "running": False,
        "opted_in": False,
        "server": "",
        "spool": {
            "records": 1,
            "bytes": state["spool"]["bytes"],
            "oldest_age": state["spool"]["oldest_age"],
        },
    }
    assert "Daemon:          not running" in telemctl(daemon, "status").stdout


def test_spool_list_show_flush_and_purge(daemon: DaemonHarness) -> None:
    first, second = send(daemon, "payload one\n", "payload two\n")
    listing = telemctl(daemon, "spool", "list")
    assert first in listing.stdout and second in listing.stdout
    assert "2 records" in listing.stdout
    lines = [
        json.loads(line) for line in telemctl(daemon, "spool", "list", "--json").stdout.splitlines()
    ]
    assert [line["record_id"] for line in lines] == [first, second]
    shown = telemctl(daemon, "spool", "show", first)
    assert shown.returncode == 0 and "payload:\npayload one\n" in shown.stdout
    missing = telemctl(daemon, "spool", "show", "0" * 32)
    assert missing.returncode == 1 and "no record" in missing.stderr
    assert telemctl(daemon, "spool", "flush").returncode == 0
    purged = telemctl(daemon, "spool", "purge")
    assert purged.returncode == 0 and "Purged 2 records" in purged.stdout
    assert daemon.records() == []
    journal = telemctl(daemon, "journal", "--status", "dropped")
    assert first in journal.stdout and second in journal.stdout


def test_purge_without_a_daemon_works_on_the_files(daemon: DaemonHarness) -> None:
    [record_id] = send(daemon, "left behind")
    assert daemon.stop() == 0
    result = telemctl(daemon, "spool", "purge")
    assert result.returncode == 0 and "Purged 1 records" in result.stdout
    assert daemon.records() == []
    assert record_id in telemctl(daemon, "journal").stdout


def test_flush_needs_a_running_daemon(harness: DaemonHarness) -> None:
    result = telemctl(harness, "spool", "flush")
    assert result.returncode == 1
    assert "telemd is not running" in result.stderr


def test_journal_in_clears_columns_with_filters(daemon: DaemonHarness) -> None:
    daemon.write_config(record_server_delivery_enabled=False, record_retention_enabled=True)
    daemon.stop()
    daemon.start()
    ids = send(daemon, "a\n", "b\n")
    with daemon.client() as client:
        other = client.send(Record("org.example/other/x", 1, "c\n", event_id="e" * 32))
    assert daemon.wait_for_log(f"{other} kept-local")
    verbose = telemctl(daemon, "journal", "-V").stdout.splitlines()
    assert verbose[0].split()[:2] == ["Classification", "Time"]
    assert verbose[-1] == "Total records: 3"
    line = verbose[1]
    assert line.startswith("org.example/test/telemctl".ljust(30) + " ")
    assert ids[0] in line and line.endswith("kept-local")
    assert telemctl(daemon, "journal", "-c", "org.example/other/x").stdout.count("\n") == 1
    assert telemctl(daemon, "journal", "-c", "org.example/*").stdout.count("\n") == 3
    assert telemctl(daemon, "journal", "-r", ids[1]).stdout.count("\n") == 1
    assert telemctl(daemon, "journal", "-e", "e" * 32).stdout.count("\n") == 1
    assert telemctl(daemon, "journal", "-n", "1").stdout.count("\n") == 1
    assert telemctl(daemon, "journal", "--status", "delivered").stdout == ""
    with_payload = telemctl(daemon, "journal", "-i", "-r", ids[0]).stdout
    assert with_payload.endswith("a\n")
    entries = [json.loads(x) for x in telemctl(daemon, "journal", "--json").stdout.splitlines()]
    assert [entry["fate"] for entry in entries] == ["kept-local"] * 3
    assert telemctl(daemon, "journal", "--since", "1h").stdout.count("\n") == 3
    assert telemctl(daemon, "journal", "--since=-2d").stdout.count("\n") == 3
    assert telemctl(daemon, "journal", "--until", "0").stdout == ""
    bad = telemctl(daemon, "journal", "--since", "yesterday-ish")
    assert bad.returncode == 2


def test_journal_follow_prints_new_records(daemon: DaemonHarness) -> None:
    daemon.write_config(record_server_delivery_enabled=False)
    daemon.stop()
    daemon.start()
    send(daemon, "before")
    follower = subprocess.Popen(
        [command("telemctl"), "-f", str(daemon.config), "journal", "--follow"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        assert "kept-local" in follower.stdout.readline()
        [later] = send(daemon, "after")
        assert later in follower.stdout.readline()
    finally:
        follower.terminate()
        follower.wait(10)


def test_config_show_and_check(harness: DaemonHarness, tmp_path: Path) -> None:
    shown = telemctl(harness, "config", "show")
    assert f'spool_dir = "{harness.spool_dir}"  # {harness.config}' in shown.stdout
    assert 'post_format = "headers"  # default' in shown.stdout
    as_json = json.loads(telemctl(harness, "config", "show", "--json").stdout)
    assert as_json["max_clients"] == {"value": 512, "source": "default"}
    good = telemctl(harness, "config", "check")
    assert good.returncode == 0 and good.stdout.endswith(": OK\n")
    bad = tmp_path / "bad.toml"
    bad.write_text("spol_dir = '/x'\nmax_clients = 'many'\n")
    result = telemctl(harness, "config", "check", str(bad))
    assert result.returncode == 1
    assert "unknown key 'spol_dir' (did you mean 'spool_dir'?)" in result.stderr
    assert "max_clients must be" in result.stderr


def test_a_bad_configuration_exits_78(harness: DaemonHarness) -> None:
    harness.config.write_text("max_clients = 0\n")
    result = telemctl(harness, "status")
    assert result.returncode == 78 and "max_clients" in result.stderr


def test_opt_in_and_opt_out_without_systemd(harness: DaemonHarness) -> None:
    harness.opt_out()
    assert telemctl(harness, "opt-in", "--no-start").returncode == 0
    assert harness.opt_in_file.exists()
    harness.start()
    send(harness, "pending")
    result = telemctl(harness, "opt-out", "--no-stop")
    assert result.returncode == 0, result.stderr
    assert not harness.opt_in_file.exists()
    assert "Purged 1 spooled records" in result.stdout
    assert harness.records() == []


def test_opt_out_can_keep_the_spool(daemon: DaemonHarness) -> None:
    send(daemon, "kept")
    result = telemctl(daemon, "opt-out", "--no-stop", "--keep-spool")
    assert result.returncode == 0
    assert len(daemon.records()) == 1


def test_unprivileged_users_read_status_but_cannot_flush_or_purge(
    harness: DaemonHarness, tmp_path: Path
) -> None:
    with directory_for_nobody(tmp_path, "run telemctl as another uid") as public:
        harness.write_config(control_socket_path=str(public / "control"))
        harness.config.chmod(0o644)
        for parent in (harness.root, *harness.root.parents):
            if parent == Path("/"):
                break
            parent.chmod(parent.stat().st_mode | 0o005)  # let nobody read the config file
        harness.start()
        try:
            send(harness, "stays")
            base = [command("telemctl"), "-f", str(harness.config)]
            status = subprocess.run(
                [*AS_NOBODY, *base, "status", "--json"], capture_output=True, text=True
            )
            assert status.returncode == 0, status.stderr
            assert json.loads(status.stdout)["running"] is True
            for action in ("flush", "purge"):
                refused = subprocess.run(
                    [*AS_NOBODY, *base, "spool", action], capture_output=True, text=True
                )
                assert refused.returncode == 1
                assert f"{action} needs root or the telemetry user" in refused.stderr
            assert len(harness.records()) == 1
        finally:
            harness.stop()


def test_a_user_who_may_not_read_the_files_is_told_so(tmp_path: Path) -> None:
    """Not `0 records` nor `no journal yet`: the path, who may read it, exit 1."""
    with directory_for_nobody(tmp_path, "run telemctl as a uid that cannot read") as public:
        harness = DaemonHarness(public / "telemd")
        harness.config.chmod(0o644)
        harness.start()
        try:
            send(harness, "waits")
            base = [*AS_NOBODY, command("telemctl"), "-f", str(harness.config)]
            spool = harness.spool_dir
            for args in (["spool", "list"], ["spool", "list", "--json"], ["spool", "show", "x"]):
                result = subprocess.run([*base, *args], capture_output=True, text=True)
                assert (result.returncode, result.stdout) == (1, ""), result
                assert result.stderr == (
                    f"telemctl: cannot read {spool}/spool.sqlite: permission denied"
                    f" ({spool} is 0700 root:root); only root and the user root may read it"
                    " (no group may)\n"
                )
            state = harness.state_dir
            journal = subprocess.run([*base, "journal"], capture_output=True, text=True)
            assert (journal.returncode, journal.stdout) == (1, "")
            assert journal.stderr == (
                f"telemctl: cannot read {state}/journal.sqlite: permission denied"
                f" ({state} is 0750 root:root); root, the user root and members of the group"
                " root may read it\n"
            )
            assert len(harness.records()) == 1  # it was there all along
            # What the message promises holds: the group it names may read the journal.
            for path in (state, *state.iterdir()):
                os.chown(path, 0, NOBODY_UID)
            member = subprocess.run([*base, "journal", "--json"], capture_output=True, text=True)
            assert member.returncode == 0, member.stderr
        finally:
            harness.stop()
        # With no daemon to ask, purge reads the spool itself: not "Purged 0 records".
        purge = subprocess.run([*base, "spool", "purge"], capture_output=True, text=True)
        assert (purge.returncode, purge.stdout) == (1, "")
        assert f"cannot read {spool}/spool.sqlite: permission denied" in purge.stderr
        assert len(harness.records()) == 1


# systemd through D-Bus: a private bus with a stand-in for systemd's Manager.


@pytest.fixture
def system_bus(tmp_path: Path) -> Iterator[dict[str, str]]:
    bus, env = start_bus(tmp_path)
    systemd = subprocess.Popen(
        [sys.executable, STANDIN], env=env, stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert systemd.stderr is not None
    assert systemd.stderr.readline().strip() == "ready"
    try:
        yield env
    finally:
        systemd.kill()
        systemd.wait(10)
        bus.terminate()
        bus.wait(10)


def test_start_stop_and_is_active_drive_systemd(
    harness: DaemonHarness, system_bus: dict[str, str]
) -> None:
    before = telemctl(harness, "is-active", env=system_bus)
    assert before.returncode == 3, before.stderr  # as systemctl is-active: none is active
    assert before.stdout.splitlines()[:2] == [
        "telemd.socket : inactive",
        "telemd-control.socket : inactive",
    ]
    assert telemctl(harness, "start", env=system_bus).returncode == 0
    after = telemctl(harness, "is-active", env=system_bus)
    assert after.returncode == 0
    lines = after.stdout.splitlines()
    assert "telemd.service : active" in lines and "hprobe.timer : active" in lines
    assert all(line.endswith(": active") for line in lines)
    assert telemctl(harness, "stop", env=system_bus).returncode == 0
    stopped = telemctl(harness, "is-active", env=system_bus)
    assert stopped.returncode == 3
    assert all(line.endswith(": inactive") for line in stopped.stdout.splitlines())
    assert telemctl(harness, "restart", env=system_bus).returncode == 0
    assert "telemd.service : active" in telemctl(harness, "is-active", env=system_bus).stdout


def test_opt_in_starts_and_opt_out_stops_the_units(
    harness: DaemonHarness, system_bus: dict[str, str]
) -> None:
    harness.opt_out()
    assert telemctl(harness, "opt-in", env=system_bus).returncode == 0
    started = telemctl(harness, "is-active", env=system_bus).stdout.splitlines()
    for unit in UNITS:  # the probes that read the journal and pstore too
        assert f"{unit} : active" in started
    result = telemctl(harness, "opt-out", env=system_bus)
    assert result.returncode == 0, result.stderr
    stopped = telemctl(harness, "is-active", env=system_bus).stdout.splitlines()
    assert stopped == [f"{unit} : inactive" for unit in UNITS]


def test_reload_applies_a_valid_configuration_running_or_idle(
    harness: DaemonHarness, system_bus: dict[str, str]
) -> None:
    idle = telemctl(harness, "reload", env=system_bus)
    assert idle.returncode == 0, idle.stderr
    assert idle.stdout == "telemd is not running; it reads the configuration when next started.\n"
    assert telemctl(harness, "start", env=system_bus).returncode == 0
    running = telemctl(harness, "reload", env=system_bus)
    assert running.returncode == 0, running.stderr
    assert running.stdout == "telemd re-read its configuration.\n"
    harness.config.write_text(harness.config.read_text() + "spool_max_size = '5 MB'\n")
    refused = telemctl(harness, "reload", env=system_bus)
    assert refused.returncode == 78
    assert "spool_max_size" in refused.stderr and refused.stdout == ""


def test_without_a_system_bus_the_error_says_how_to_run_in_the_foreground(
    harness: DaemonHarness, tmp_path: Path
) -> None:
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=f"unix:path={tmp_path}/no-bus")
    for verb in ("start", "stop", "restart", "is-active", "reload"):
        result = telemctl(harness, verb, env=env)
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1
        assert (
            f"run the daemon in the foreground instead: telemd -f {harness.config}" in result.stderr
        )
