"""A spool that runs out of room: a real 4 MiB tmpfs that fills, and the
spool_max_size quota. Clients get spool-full, the daemon stays up, nothing
acknowledged is lost, and intake resumes once room is made."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import DaemonHarness
from http_sink import Behaviour, HttpSink
from processes import report

from telemd.client import Client
from telemd.errors import ErrorCode, RejectedError
from telemd.record import Record

PAYLOAD = "x" * 8000


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: a file system that really fills."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a 4 MiB tmpfs needs root")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def spooled_ids(spool_dir: Path, elsewhere: Path) -> set[str]:
    """The spool's record ids, read from a copy: a reader on the full file
    system could not create its shared-memory file."""
    elsewhere.mkdir()
    for name in os.listdir(spool_dir):
        shutil.copy(spool_dir / name, elsewhere / name)
    conn = sqlite3.connect(elsewhere / "spool.sqlite")
    try:
        return {row[0] for row in conn.execute("SELECT record_id FROM records")}
    finally:
        conn.close()


def fill(client: Client, limit: int) -> tuple[list[str], list[str]]:
    """Send until refused; return (acknowledged ids, refusal codes)."""
    acked: list[str] = []
    refused: list[str] = []
    for i in range(limit):
        try:
            acked.append(client.send(Record("org.example/faults/disk", 2, f"{i} {PAYLOAD}")))
        except RejectedError as exc:
            refused.append(exc.code)
            if len(refused) >= 3:
                break
    return acked, refused


def test_a_full_file_system_refuses_with_spool_full_and_recovers(
    harness: DaemonHarness, small_fs: Path
) -> None:
    ballast = small_fs / "ballast"
    ballast.write_bytes(b"\0" * (1024 * 1024))  # freed later, to make room
    harness.write_config(spool_dir=str(small_fs / "spool"), spool_max_size=-1)
    harness.start()
    with harness.client() as client:
        acked, refused = fill(client, 2000)
        assert refused, "the file system never filled"
        assert set(refused) == {ErrorCode.SPOOL_FULL}, refused
        assert harness.proc is not None and harness.proc.poll() is None
        ballast.unlink()
        after: list[str] = []
        with contextlib.suppress(RejectedError):
            after = [
                client.send(Record("org.example/faults/disk", 2, f"after {i}")) for i in range(20)
            ]
    assert len(after) == 20, "intake did not resume once room was made"
    assert harness.stop() == 0
    harness.start()  # the spool opens again on the full file system
    assert harness.stop() == 0
    stored = spooled_ids(small_fs / "spool", harness.root / "copy")
    lost = len(set(acked + after) - stored)
    report(
        "full-disk/tmpfs",
        fs_size_mib=4,
        acked_before_full=len(acked),
        refusals=len(refused),
        refusal_codes=sorted(set(refused)),
        acked_after_room=len(after),
        lost=lost,
    )
    assert lost == 0


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[HttpSink]:
    server = HttpSink(tmp_path / "sink")
    yield server
    server.stop()


def test_spool_max_size_refuses_then_resumes_as_delivery_makes_room(
    harness: DaemonHarness, sink: HttpSink
) -> None:
    sink.behaviour = Behaviour(status=503)
    harness.write_config(
        server=sink.url,
        cainfo=str(sink.ca_file),
        spool_max_size=256,  # KiB
        uid_records_per_minute=-1,
        rate_limit_enabled=False,
        retry_initial=0.1,
        retry_max=0.3,
        log_level="debug",  # logs each record's fate
    )
    harness.start()
    with harness.client() as client:
        acked, refused = fill(client, 2000)
        assert refused and set(refused) == {ErrorCode.SPOOL_FULL}, refused
        sink.behaviour = Behaviour(status=201)
        assert sink.wait_for_records(len(acked), timeout=30)
        # Room is made when the fates are written and the records leave the spool.
        assert all(harness.wait_for_log(f"{record_id} delivered") for record_id in acked)
        after = [client.send(Record("org.example/faults/disk", 2, f"after {i}")) for i in range(20)]
    assert sink.wait_for_records(len(acked) + len(after), timeout=30)
    assert harness.stop() == 0
    lost = len(set(acked + after) - sink.record_ids)
    report(
        "full-disk/spool_max_size",
        spool_max_size_kib=256,
        acked_before_full=len(acked),
        refusals=len(refused),
        acked_after_drain=len(after),
        lost=lost,
    )
    assert lost == 0
