"""A machine that never reaches the collector: `telemctl spool export --ndjson FILE`
on it, `telemd-collector import FILE` where the collector's database is.

(A machine that gets a network later sets `server` and reloads: see
test_delivery_answers.py::test_sighup_rebuilds_delivery.)
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from daemon_harness import DaemonHarness, command

from telemd.record import Record

pytest.importorskip("starlette", reason="the collector extra is not installed")

from telemd.collector.store.base import Store, open_engine


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def export(daemon: DaemonHarness, path: Path) -> subprocess.CompletedProcess[str]:
    return run(
        command("telemctl"), "-f", str(daemon.config), "spool", "export", "--ndjson", str(path)
    )


def stored_records(db_url: str) -> list[tuple[str, str]]:
    store = Store(open_engine(db_url))
    try:
        with store.reading() as session:
            rows = session.fetch("SELECT record_id, payload FROM records ORDER BY id")
    finally:
        store.close()
    return [(str(a), str(b)) for a, b in rows]


def test_export_then_import_twice_stores_each_record_once(
    daemon: DaemonHarness, tmp_path: Path
) -> None:
    with daemon.client() as client:
        ids = [client.send(Record("org.example/test/offline", 2, f"p{n}\n")) for n in range(3)]
    exported = tmp_path / "spool.ndjson"
    result = run(
        command("telemctl"), "-f", str(daemon.config), "spool", "export", "--ndjson", str(exported)
    )
    assert result.returncode == 0, result.stderr
    assert "Exported 3 records" in result.stdout
    assert stat.S_IMODE(os.stat(exported).st_mode) == 0o600
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    assert [line["record_id"] for line in lines] == ids
    assert lines[0]["classification"] == "org.example/test/offline"
    assert len(daemon.records()) == 3  # the spool is left as it was

    db_url = f"sqlite:///{tmp_path / 'collector.db'}"
    first = run(command("telemd-collector"), "import", str(exported), "--db", db_url)
    assert first.returncode == 0, first.stderr
    assert "imported 3 records, 0 already stored, 0 rejected" in first.stdout
    again = run(command("telemd-collector"), "import", str(exported), "--db", db_url)
    assert "imported 0 records, 3 already stored, 0 rejected" in again.stdout
    assert stored_records(db_url) == [(i, f"p{n}\n") for n, i in enumerate(ids)]


def test_a_bad_line_is_named_and_the_others_are_stored(
    tmp_path: Path, daemon: DaemonHarness
) -> None:
    with daemon.client() as client:
        record_id = client.send(Record("org.example/test/offline", 2, "kept\n"))
    exported = tmp_path / "spool.ndjson"
    export(daemon, exported)
    good = exported.read_text()
    bad = json.loads(good)
    bad["severity"] = "9"
    bad["record_id"] = "f" * 32
    exported.write_text('{"not": json\n' + json.dumps(bad) + "\n" + good)
    db_url = f"sqlite:///{tmp_path / 'collector.db'}"
    result = run(command("telemd-collector"), "import", str(exported), "--db", db_url)
    assert result.returncode == 1
    assert f"{exported}:1: line: is not valid JSON" in result.stderr
    assert f"{exported}:2: " in result.stderr and "severity" in result.stderr
    assert "imported 1 records, 0 already stored, 2 rejected" in result.stdout
    assert stored_records(db_url) == [(record_id, "kept\n")]
