"""telemd delivers to telemd-collector over real TLS, in each request format."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from access_tokens import make_token
from collector_proc import CollectorProcess
from daemon_harness import DaemonHarness

from telemd import journal
from telemd.record import Record


@pytest.mark.parametrize("post_format", ["headers", "json", "ndjson"])
def test_records_reach_the_collector_and_match_the_journal(
    start_collector: Callable[..., CollectorProcess],
    tls_files: tuple[str, str, str],
    tmp_path: Path,
    post_format: str,
) -> None:
    collector = start_collector(tls=tls_files)
    harness = DaemonHarness(
        tmp_path / "telemd",
        server=f"{collector.base_url}/v2/collector"
        if post_format != "ndjson"
        else f"{collector.base_url}/api/v1/records",
        cainfo=tls_files[2],
        post_format=post_format,
    )
    harness.start()
    try:
        with harness.client() as client:
            ids = [
                client.send(Record("org.clearlinux/crash/clr", 3, f"Signal: 11\nframe {i}\n"))
                for i in range(5)
            ]
        assert harness.wait_for_log(f"{ids[-1]} delivered")
        for record_id in ids[:-1]:
            assert harness.wait_for_log(f"{record_id} delivered")
    finally:
        assert harness.stop() == 0
    with collector.client() as http:
        answer = http.get("/api/records", params={"classification": "org.clearlinux/crash/clr"})
    assert answer.status_code == 200
    stored = {record["record_id"]: record for record in answer.json()["records"]}
    assert set(stored) == set(ids)
    journaled = journal.query(str(harness.state_dir / journal.JOURNAL_FILE), journal.Filter())
    assert {entry.record_id for _, entry in journaled} == set(ids)
    assert {entry.fate for _, entry in journaled} == {"delivered"}
    one = stored[ids[0]]
    assert one["severity"] == 3 and one["payload"] == "Signal: 11\nframe 0\n"
    assert len(one["machine_id"]) == 32


def test_a_collector_with_another_tid_keeps_the_records_and_says_why(
    start_collector: Callable[..., CollectorProcess],
    tls_files: tuple[str, str, str],
    tmp_path: Path,
) -> None:
    """Every record answered 400 for the telemetry id: a configuration error, not the
    records' fault; they wait in the spool and reach a collector that takes the id."""
    collector = start_collector(
        tls=tls_files, args=["--tid", "11111111-2222-4333-8444-555555555555"]
    )
    harness = DaemonHarness(
        tmp_path / "telemd",
        server=f"{collector.base_url}/v2/collector",
        cainfo=tls_files[2],
        retry_initial=0.05,
        retry_max=0.4,
    )
    harness.start()
    try:
        with harness.client() as client:
            ids = [
                client.send(Record("org.clearlinux/hello/world", 1, f"hello {n}\n"))
                for n in range(3)
            ]
        assert harness.wait_for_log("the collector refuses every request")
        assert harness.wait_for_log("is not accepted by this collector")
        assert harness.record_ids() == set(ids)
        good = start_collector(tls=tls_files)
        harness.write_config(server=f"{good.base_url}/v2/collector")
        harness.signal(signal.SIGHUP)
        for record_id in ids:
            assert harness.wait_for_log(f"{record_id} delivered")
    finally:
        harness.stop()
    journaled = journal.query(str(harness.state_dir / journal.JOURNAL_FILE), journal.Filter())
    assert {entry.fate for _, entry in journaled} == {"delivered"}


def test_with_ingest_auth_token_the_daemon_delivers_with_its_token_file(
    start_collector: Callable[..., CollectorProcess],
    tls_files: tuple[str, str, str],
    tmp_path: Path,
) -> None:
    collector = start_collector(tls=tls_files, args=["--ingest-auth", "token"])
    token_file = tmp_path / "collector.token"
    token_file.write_text(make_token(collector.db_url, "fleet", ["ingest"]) + "\n")
    token_file.chmod(0o600)
    # First without the token: refused with 401, the record waits in the spool.
    harness = DaemonHarness(
        tmp_path / "telemd",
        server=f"{collector.base_url}/v2/collector",
        cainfo=tls_files[2],
        retry_initial=0.05,
    )
    harness.start()
    try:
        with harness.client() as client:
            waiting = client.send(Record("org.clearlinux/hello/world", 1, "hello\n"))
        assert harness.wait_for_log("HTTP 401: this collector takes records only with an ingest")
    finally:
        assert harness.stop() == 0
    assert waiting in harness.record_ids()
    # With the token file the spooled record and a new one are delivered.
    harness.write_config(collector_token_file=str(token_file))
    harness.start()
    try:
        with harness.client() as client:
            fresh = client.send(Record("org.clearlinux/hello/world", 1, "hello again\n"))
        for record_id in (waiting, fresh):
            assert harness.wait_for_log(f"{record_id} delivered")
    finally:
        assert harness.stop() == 0
    with collector.client() as http:
        answer = http.get("/api/records", params={"classification": "org.clearlinux/hello/world"})
    assert {r["record_id"] for r in answer.json()["records"]} == {waiting, fresh}
    assert token_file.read_text().strip() not in "\n".join(harness.log)
