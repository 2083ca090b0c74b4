"""telem-record-gen and hprobe against a live daemon."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from daemon_harness import DaemonHarness, command

EVENT_ID = "0123456789abcdef0123456789abcdef"


def record_gen(daemon: DaemonHarness, *args: str, stdin: str | None = None, **env: str):
    return subprocess.run(
        [command("telem-record-gen"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**daemon.env, **env},
        timeout=30,
    )


def test_an_acknowledged_record_is_in_the_spool_with_host_metadata(daemon: DaemonHarness) -> None:
    result = record_gen(
        daemon, "-c", "org.example/test/one", "-s", "3", "-R", "2", "-e", EVENT_ID, "-p", "hi\n"
    )
    assert result.returncode == 0, result.stderr
    [row] = daemon.records()
    assert row["classification"] == "org.example/test/one"
    assert (row["severity"], row["payload_format_version"]) == (3, 2)
    assert row["event_id"] == EVENT_ID
    assert row["payload"] == "hi\n"
    assert row["arch"] == os.uname().machine
    assert row["kernel_version"] == os.uname().release
    assert len(row["machine_id"]) == 32 and row["machine_id"] != "FFFFFFFF"
    assert row["sender_uid"] == os.getuid()
    assert len(row["record_id"]) == 32


def test_the_payload_comes_from_stdin_or_a_file(daemon: DaemonHarness, tmp_path: Path) -> None:
    assert record_gen(daemon, "-c", "a/b/c", stdin="from stdin\n").returncode == 0
    payload_file = tmp_path / "payload.txt"
    payload_file.write_text("from a file\n")
    assert record_gen(daemon, "-c", "a/b/c", "-P", str(payload_file)).returncode == 0
    assert [row["payload"] for row in daemon.records()] == ["from stdin\n", "from a file\n"]


def test_telem_event_id_groups_a_scripts_records(daemon: DaemonHarness) -> None:
    for _ in range(2):
        assert record_gen(daemon, "-c", "a/b/c", "-p", "x", TELEM_EVENT_ID=EVENT_ID).returncode == 0
    assert record_gen(daemon, "-c", "a/b/c", "-p", "x").returncode == 0
    event_ids = [row["event_id"] for row in daemon.records()]
    assert event_ids[:2] == [EVENT_ID, EVENT_ID]
    assert event_ids[2] != EVENT_ID


def test_new_event_id_prints_an_id_to_export(daemon: DaemonHarness) -> None:
    first, second = (record_gen(daemon, "--new-event-id") for _ in range(2))
    assert first.returncode == 0 and second.returncode == 0
    event_id = first.stdout.strip()
    assert len(event_id) == 32 and not event_id.strip("0123456789abcdef")
    assert second.stdout.strip() != event_id
    assert record_gen(daemon, "-c", "a/b/c", "-p", "x", TELEM_EVENT_ID=event_id).returncode == 0
    assert [row["event_id"] for row in daemon.records()] == [event_id]


def test_a_dashed_uuid_in_telem_event_id_is_normalised(daemon: DaemonHarness) -> None:
    dashed = "01234567-89AB-cdef-0123-456789abcdef"
    assert record_gen(daemon, "-c", "a/b/c", "-p", "x", TELEM_EVENT_ID=dashed).returncode == 0
    assert record_gen(daemon, "-c", "a/b/c", "-p", "x", "-e", dashed).returncode == 0
    assert [row["event_id"] for row in daemon.records()] == [EVENT_ID, EVENT_ID]


def test_the_python_client_honours_telem_event_id(daemon: DaemonHarness) -> None:
    script = (
        "from telemd.client import send; from telemd.record import Record;"
        "send(Record('a/b/c', 1, 'from python'))"
    )
    dashed = "01234567-89ab-cdef-0123-456789abcdef"
    env = {**daemon.env, "TELEM_EVENT_ID": dashed}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert [row["event_id"] for row in daemon.records()] == [EVENT_ID]


def test_echo_prints_the_record(daemon: DaemonHarness) -> None:
    result = record_gen(daemon, "-c", "a/b/c", "-p", "body", "-o", "-n")
    assert result.returncode == 0
    assert "classification: a/b/c\n" in result.stdout
    assert result.stdout.endswith("body\n")
    assert daemon.records() == []


def test_a_daemon_that_is_not_running_is_named(harness: DaemonHarness) -> None:
    result = record_gen(harness, "-c", "a/b/c", "-p", "x")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert f"telemd is not running: cannot connect to {harness.socket}" in result.stderr


def test_opted_out_says_how_to_opt_in(daemon: DaemonHarness) -> None:
    daemon.opt_out()
    result = record_gen(daemon, "-c", "a/b/c", "-p", "x")
    assert result.returncode == 1
    assert "opted out" in result.stderr and "telemctl opt-in" in result.stderr
    daemon.stop()
    result = record_gen(daemon, "-c", "a/b/c", "-p", "x")
    assert result.returncode == 1
    assert "opted out" in result.stderr


def test_bad_input_is_refused_with_a_reason(daemon: DaemonHarness) -> None:
    cases = [
        (["-c", "a/b", "-p", "x"], 1, "exactly 3 levels"),
        (["-c", "a/b/c", "-s", "5", "-p", "x"], 2, "severity must be between 1 and 4"),
        (["-c", "a/b/c", "-s", "high", "-p", "x"], 2, "must be a whole number"),
        (["-c", "a/b/c", "-p", "x" * 8193], 1, "more than the limit of 8192"),
        (["-c", "a/b/c", "-e", "nothex", "-p", "x"], 1, "event id must be 32 lowercase hex"),
        (["-p", "x"], 2, "a classification is required"),
        (["-c", "a/b/c", "-P", "/no/such/file"], 1, "cannot read payload file /no/such/file"),
        (["--bogus"], 2, "unknown option --bogus"),
    ]
    for args, status, message in cases:
        result = record_gen(daemon, *args)
        assert result.returncode == status, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
    bad_env = record_gen(daemon, "-c", "a/b/c", "-p", "x", TELEM_EVENT_ID="xyz")
    assert bad_env.returncode == 2 and "$TELEM_EVENT_ID" in bad_env.stderr
    assert daemon.records() == []


def test_hprobe_sends_the_heartbeat(daemon: DaemonHarness) -> None:
    result = subprocess.run(
        [command("hprobe"), "-f", str(daemon.config)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    [row] = daemon.records()
    assert (row["classification"], row["severity"], row["payload"]) == (
        "org.clearlinux/hello/world",
        1,
        "hello\n",
    )
