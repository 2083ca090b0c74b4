"""Clients that write a frame and close: nothing they send vanishes untraced.

libtelemetry (v2.3.5 and v2.4.3) never reads the daemon's reply, so a record
telemd refuses is lost to its probe. The frames here are the bytes the C
library writes (tests/clear_libtelemetry.py), sent over a real socket to a
real daemon that delivers to a real collector. What Clear's daemon and
telemetrics-backend would deliver arrives, normalised; what is still refused
is in `telemctl journal --status refused` and `telemctl status`, and a flood
of refusals costs the journal two entries, not one per frame.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
from typing import Any

from clear_libtelemetry import VERSIONS, frame_as_written, header_values, libtelemetry_frame
from daemon_harness import DaemonHarness, command, wait_until
from processes import Collector, report

from telemd.record import is_event_id

UID = os.getuid()


def fire_and_forget(harness: DaemonHarness, frame: bytes) -> None:
    """As tm_send_record: connect, write the frame, close, read nothing."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(harness.socket)
        sock.sendall(frame)


def telemctl(harness: DaemonHarness, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [command("telemctl"), "-f", str(harness.config), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def journal(harness: DaemonHarness, *args: str) -> list[dict[str, Any]]:
    result = telemctl(harness, "journal", "--json", *args)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def collected(collector: Collector) -> list[dict[str, Any]]:
    if not collector.db.exists():
        return []
    conn = sqlite3.connect(f"file:{collector.db}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute("SELECT record_id, classification, event_id, payload FROM records")
        return [dict(row) for row in rows]
    except sqlite3.OperationalError:
        return []  # the schema is not there yet
    finally:
        conn.close()


def start_delivering(harness: DaemonHarness, collector: Collector) -> None:
    harness.write_config(server=f"{collector.base_url}/v2/collector", uid_records_per_minute=-1)
    harness.start()


# (name, frame, what the collector must store: classification and payload)
def clear_cases(version: str) -> list[tuple[str, bytes, tuple[str, str]]]:
    clas = f"org.example/v{version}/"
    return [
        (
            "a space in the classification",
            libtelemetry_frame(version, f"{clas}disk full", 2, b"sda\n"),
            (f"{clas}disk full", "sda\n"),
        ),
        (
            "a Latin-1 payload, from a probe in an ISO-8859-1 locale",
            libtelemetry_frame(
                version,
                f"{clas}latin",
                2,
                "caf\u00e9 cr\u00e8me\n".encode("latin-1"),
                locale="latin-1",
            ),
            (f"{clas}latin", "caf\u00e9 cr\u00e8me\n"),
        ),
        (
            "a payload with a NUL, cut by the library's strlen",
            libtelemetry_frame(version, f"{clas}nul-lib", 3, b"Signal: 11\0stack"),
            (f"{clas}nul-lib", "Signal: 11"),
        ),
        (
            "a payload with a NUL, in a frame a client wrote itself",
            frame_as_written(
                header_values(f"{clas}nul-raw", 3, os.urandom(16).hex()), b"Signal: 11\0stack"
            ),
            (f"{clas}nul-raw", "Signal: 11"),
        ),
        (
            "a classification ending in a tab",
            libtelemetry_frame(version, f"{clas}tab\t", 1, b"t"),
            (f"{clas}tab", "t"),
        ),
    ]


def test_what_clear_delivers_arrives_and_what_telemd_refuses_is_journaled(
    harness: DaemonHarness, collector: Collector
) -> None:
    start_delivering(harness, collector)
    expected: list[tuple[str, str]] = []
    for version in VERSIONS:
        for _, frame, stored in clear_cases(version):
            fire_and_forget(harness, frame)
            expected.append(stored)
    # Event ids other clients write (a shell tool's UUID, upper case, anything).
    uuid_id = "01234567-89AB-CDEF-0123-456789ABCDEF"
    for event_id in (uuid_id, "not-an-id-42"):
        values = header_values(f"org.example/event/{event_id}", 2, "")
        values["event_id"] = event_id
        fire_and_forget(harness, frame_as_written(values, b"grouped\n"))
    # Still refused: values neither Clear's backend nor telemd can store.
    bad_severity = {**header_values("org.example/refused/severity", 2, "0" * 32), "severity": "x"}
    fire_and_forget(harness, frame_as_written(bad_severity, b"x"))
    fire_and_forget(harness, libtelemetry_frame("2.4.3", "org.example/refused/cl\u00e9", 2, b"x"))
    fire_and_forget(harness, b"\x09\x00\x00\x00\x00\x00\x00\x00\x00")  # no header block at all

    total = len(expected) + 2
    assert wait_until(lambda: len(collected(collector)) == total, timeout=30), collected(collector)
    rows = collected(collector)
    assert sorted(expected) == sorted(
        (row["classification"], row["payload"])
        for row in rows
        if not row["classification"].startswith("org.example/event/")
    )
    by_class = {row["classification"]: row for row in rows}
    assert (
        by_class[f"org.example/event/{uuid_id}"]["event_id"] == "0123456789abcdef0123456789abcdef"
    )
    replaced = by_class["org.example/event/not-an-id-42"]
    assert is_event_id(replaced["event_id"])

    # The original event id is in the journal, against the record that carries the new one.
    normalised = {entry["record_id"]: entry for entry in journal(harness, "--status", "normalised")}
    entry = normalised[replaced["record_id"]]
    assert entry["event_id"] == replaced["event_id"] and "'not-an-id-42'" in entry["message"]
    assert entry["sender_uid"] == UID
    assert (
        "byte 10 of 16"
        in normalised[by_class["org.example/v2.4.3/nul-raw"]["record_id"]]["message"]
    )
    assert "Latin-1" in normalised[by_class["org.example/v2.3.5/latin"]["record_id"]]["message"]

    # Each refusal is journaled with its reason, the classification where it
    # could be read and the sender's uid.
    refused = journal(harness, "--status", "refused")
    reasons = {entry["classification"]: entry["message"] for entry in refused}
    assert len(refused) == 3 and all(entry["sender_uid"] == UID for entry in refused)
    assert reasons["org.example/refused/severity"].startswith("invalid severity: ")
    assert "outside printable ASCII" in reasons["org.example/refused/cl\u00e9"]
    assert "header block must have 15 lines" in reasons[""]
    text = telemctl(harness, "journal", "--status", "refused").stdout
    assert f"refused uid {UID}, 1x: invalid severity: severity: must be a decimal" in text

    state = json.loads(telemctl(harness, "status", "--json").stdout)
    assert state["intake"]["refused"] == {"invalid": 3}
    assert state["intake"]["normalised"] == 2 * 3 + 2  # NUL, Latin-1 and tab a version, 2 ids
    assert (
        "3 refused (invalid 3; telemctl journal --status refused)"
        in telemctl(harness, "status").stdout
    )
    assert harness.stop() == 0


def test_a_flood_of_refusals_costs_the_journal_two_entries(
    harness: DaemonHarness, collector: Collector
) -> None:
    start_delivering(harness, collector)
    bad = frame_as_written(
        {**header_values("org.example/flood/severity", 2, "0" * 32), "severity": "x"}, b"x"
    )
    count = 5000
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(harness.socket)
        sock.sendall(bad * count)
        sock.shutdown(socket.SHUT_WR)
        replies = b""
        while chunk := sock.recv(65536):
            replies += chunk
    assert replies.count(b"ERR invalid severity") == count
    state = json.loads(telemctl(harness, "status", "--json").stdout)
    assert state["intake"]["refused"] == {"invalid": count}
    # Within the minute: the first refusal only. The rest are counted...
    [first] = journal(harness, "--status", "refused")
    assert first["count"] == 1
    # ...and journaled as one entry when the window ends or the daemon stops.
    assert harness.stop() == 0
    entries = journal(harness, "--status", "refused")
    assert [entry["count"] for entry in entries] == [1, count - 1]
    assert "4999 refused in a minute" in entries[1]["message"]
    journal_file = harness.state_dir / "journal.sqlite"
    report("refusal-flood", frames=count, journal_entries=len(entries),
           journal_bytes=journal_file.stat().st_size)  # fmt: skip
