"""Delivery to a real HTTPS server: formats, failures, limits, expiry, local-only, kills."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import psutil
import pytest
import trustme
from connect_proxy import ConnectProxy
from daemon_harness import DaemonHarness
from http_sink import Behaviour, HttpSink

from telemd import journal
from telemd.daemon.transport import HTTP_HEADER_NAMES
from telemd.frame import encode_frame
from telemd.record import HEADER_NAMES, Record

TID = "6907c830-eed9-4ce9-81ae-76daf8d88f0f"


def send(harness: DaemonHarness, count: int = 1, payload: str = "hello") -> list[str]:
    with harness.client() as client:
        return [
            client.send(Record("org.example/test/delivery", 2, f"{payload} {i}\n"))
            for i in range(count)
        ]


def fates(harness: DaemonHarness) -> dict[str, str]:
    path = harness.state_dir / journal.JOURNAL_FILE
    return {entry.record_id: entry.fate for _, entry in journal.query(str(path), journal.Filter())}


def entries(harness: DaemonHarness) -> list[journal.Entry]:
    path = harness.state_dir / journal.JOURNAL_FILE
    return [entry for _, entry in journal.query(str(path), journal.Filter(), with_payload=True)]


def settled(harness: DaemonHarness, record_id: str, fate: str, after: int = 0) -> bool:
    return harness.wait_for_log(f"{record_id} {fate}", after=after)


def test_headers_format_carries_every_header_and_the_record_id(
    delivering: DaemonHarness, sink: HttpSink
) -> None:
    delivering.start()
    [record_id] = send(delivering)
    assert settled(delivering, record_id, "delivered")
    [seen] = sink.seen
    assert seen.method == "POST" and seen.path == "/v2/collector"
    for name in HEADER_NAMES:
        assert HTTP_HEADER_NAMES[name].lower() in seen.headers
    assert seen.headers["classification"] == "org.example/test/delivery"
    assert seen.headers["x-telemetry-tid"] == TID
    assert seen.headers["user-agent"].startswith("telemd/")
    assert seen.headers["x-telemetry-record-id"] == record_id
    assert seen.body == b"hello 0\n"
    assert fates(delivering) == {record_id: "delivered"}
    assert delivering.records() == []


def test_json_format_is_one_object_of_strings(delivering: DaemonHarness, sink: HttpSink) -> None:
    delivering.write_config(post_format="json")
    delivering.start()
    [record_id] = send(delivering)
    assert settled(delivering, record_id, "delivered")
    body = sink.seen[0].json()
    assert set(body) == {*HEADER_NAMES, "payload"}
    assert all(isinstance(value, str) for value in body.values())
    assert body["severity"] == "2" and body["payload"] == "hello 0\n"
    assert sink.seen[0].headers["x-telemetry-record-id"] == record_id


def test_ndjson_batches_many_records_per_request(delivering: DaemonHarness, sink: HttpSink) -> None:
    delivering.write_config(post_format="ndjson", batch_max_records=100)
    delivering.start()
    frames = [encode_frame(Record("a/b/c", 1, f"n{i}")) for i in range(300)]
    with delivering.client() as client:
        client.write_frames(frames)
        ids = [client.read_reply() for _ in frames]
    assert sink.wait_for_records(300)
    assert sink.record_ids == set(ids)
    assert len(sink.seen) < 300 // 2
    first_line = sink.seen[0].body.decode().splitlines()[0]
    assert '"record_id"' in first_line
    assert delivering.wait_for_log(f"{ids[-1]} delivered")


def test_a_4xx_answer_rejects_the_record_with_the_servers_message(
    delivering: DaemonHarness, sink: HttpSink
) -> None:
    sink.behaviour = Behaviour(status=400, body=b'{"message": "classification not allowed"}')
    delivering.start()
    [record_id] = send(delivering)
    assert settled(delivering, record_id, "rejected")
    [entry] = entries(delivering)
    assert entry.http_status == 400
    assert "classification not allowed" in entry.message
    assert delivering.records() == []


@pytest.mark.parametrize(
    "failure",
    [Behaviour(status=500), Behaviour(status=503), Behaviour(status=408), Behaviour(drop=True)],
    ids=["500", "503", "408", "dropped-connection"],
)
def test_transient_failures_are_retried_until_delivered(
    delivering: DaemonHarness, sink: HttpSink, failure: Behaviour
) -> None:
    sink.behaviour = failure
    delivering.start()
    [record_id] = send(delivering)
    assert sink.wait_for_requests(3)
    assert delivering.records() != []  # still spooled while failing
    sink.behaviour = Behaviour(status=201)
    assert settled(delivering, record_id, "delivered")
    [entry] = entries(delivering)
    assert entry.attempts >= 4  # three failures, then the success
    assert sink.record_ids == {record_id}


def test_retry_after_is_honoured(delivering: DaemonHarness, sink: HttpSink) -> None:
    sink.behaviour = Behaviour(status=429, retry_after="1")
    delivering.start()
    [record_id] = send(delivering)
    assert sink.wait_for_requests(1)
    first = time.monotonic()
    sink.behaviour = Behaviour(status=201)
    assert settled(delivering, record_id, "delivered")
    # retry_max is 0.4 s: only the server's Retry-After explains this wait.
    assert time.monotonic() - first >= 0.9


def test_a_hanging_server_times_out_and_the_record_waits(
    delivering: DaemonHarness, sink: HttpSink
) -> None:
    sink.behaviour = Behaviour(hang=True)
    delivering.start()
    [record_id] = send(delivering)
    assert sink.wait_for_requests(2)  # the first timed out (request_timeout 1 s) and was retried
    sink.behaviour = Behaviour(status=201)
    sink.release()
    assert settled(delivering, record_id, "delivered")
    assert delivering.wait_for_log("ReadTimeout")


def test_an_untrusted_certificate_is_not_delivered_to(
    delivering: DaemonHarness, sink: HttpSink, tmp_path: Path
) -> None:
    other_file = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_file))
    delivering.write_config(cainfo=str(other_file))
    delivering.start()
    send(delivering)
    assert delivering.wait_for_log("CERTIFICATE_VERIFY_FAILED")
    assert sink.seen == []
    assert len(delivering.records()) == 1


def test_mutual_tls_presents_the_client_certificate(tmp_path: Path) -> None:
    sink = HttpSink(tmp_path / "mtls", client_ca=True)
    try:
        client_cert = sink.ca.issue_cert("telemd-client")
        cert_file = tmp_path / "client.pem"
        key_file = tmp_path / "client.key"
        client_cert.cert_chain_pems[0].write_to_path(str(cert_file))
        client_cert.private_key_pem.write_to_path(str(key_file))
        harness = DaemonHarness(
            tmp_path / "telemd",
            server=sink.url,
            cainfo=str(sink.ca_file),
            tls_client_cert=str(cert_file),
            tls_client_key=str(key_file),
        )
        harness.start()
        [record_id] = send(harness)
        assert settled(harness, record_id, "delivered")
        assert harness.stop() == 0
    finally:
        sink.stop()


def test_without_a_client_certificate_mutual_tls_fails(tmp_path: Path) -> None:
    sink = HttpSink(tmp_path / "mtls", client_ca=True)
    try:
        harness = DaemonHarness(
            tmp_path / "telemd", server=sink.url, cainfo=str(sink.ca_file), retry_initial=0.05
        )
        harness.start()
        send(harness)
        assert harness.wait_for_log("delivery failed")
        assert sink.record_ids == set()
        assert len(harness.records()) == 1
        harness.kill()
    finally:
        sink.stop()


def test_plain_http_is_used_only_when_asked_and_warned_about(tmp_path: Path) -> None:
    sink = HttpSink(tmp_path / "plain", tls=False)
    try:
        harness = DaemonHarness(tmp_path / "telemd", server=sink.url)
        harness.start()
        assert harness.wait_for_log("plain http: records travel unencrypted")
        [record_id] = send(harness)
        assert settled(harness, record_id, "delivered")
        harness.stop()
    finally:
        sink.stop()


def without_proxies() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.lower().endswith("proxy")}


def test_an_https_proxy_from_the_environment_carries_the_records(
    delivering: DaemonHarness, sink: HttpSink
) -> None:
    proxy = ConnectProxy()
    try:
        delivering.start(env={**without_proxies(), "HTTPS_PROXY": proxy.url})
        [record_id] = send(delivering)
        assert settled(delivering, record_id, "delivered")
        assert proxy.targets == [f"127.0.0.1:{sink.port}"]
        assert sink.seen[0].headers["x-telemetry-record-id"] == record_id
    finally:
        proxy.stop()


def test_no_proxy_exempts_the_collector(delivering: DaemonHarness, sink: HttpSink) -> None:
    proxy = ConnectProxy()
    try:
        environment = {**without_proxies(), "https_proxy": proxy.url, "no_proxy": "127.0.0.1"}
        delivering.start(env=environment)
        [record_id] = send(delivering)
        assert settled(delivering, record_id, "delivered")
        assert proxy.targets == []
    finally:
        proxy.stop()


def test_rate_limit_spool_keeps_records_for_later(
    delivering: DaemonHarness, sink: HttpSink
) -> None:
    delivering.write_config(record_burst_limit=2, record_window_length=1)
    delivering.start()
    ids = send(delivering, 3)
    assert settled(delivering, ids[1], "delivered")
    assert delivering.wait_for_log("rate limit reached")
    assert sink.record_ids == set(ids[:2])
    assert [row["record_id"] for row in delivering.records()] == [ids[2]]


def test_an_ndjson_batch_never_exceeds_the_record_limit(
    delivering: DaemonHarness, sink: HttpSink
) -> None:
    delivering.write_config(post_format="ndjson", record_burst_limit=5, record_window_length=1)
    delivering.start()
    ids = send(delivering, 12)
    assert delivering.wait_for_log("rate limit reached")
    assert settled(delivering, ids[4], "delivered")
    assert sink.record_ids == set(ids[:5])
    assert [row["record_id"] for row in delivering.records()] == ids[5:]


def test_rate_limit_drop_journals_dropped(delivering: DaemonHarness, sink: HttpSink) -> None:
    delivering.write_config(record_burst_limit=2, rate_limit_strategy="drop")
    delivering.start()
    ids = send(delivering, 3)
    assert settled(delivering, ids[2], "dropped")
    assert settled(delivering, ids[1], "delivered")
    assert fates(delivering) == {ids[0]: "delivered", ids[1]: "delivered", ids[2]: "dropped"}
    assert sink.record_ids == set(ids[:2])


def test_the_byte_limit_counts_the_bytes_posted(delivering: DaemonHarness, sink: HttpSink) -> None:
    # One request of this daemon's headers format posts about 700 bytes.
    delivering.write_config(byte_burst_limit=1000, rate_limit_strategy="drop")
    delivering.start()
    ids = send(delivering, 2)
    assert settled(delivering, ids[1], "dropped")
    assert settled(delivering, ids[0], "delivered")
    assert fates(delivering) == {ids[0]: "delivered", ids[1]: "dropped"}


def test_old_records_expire_and_are_journaled(delivering: DaemonHarness, sink: HttpSink) -> None:
    delivering.write_config(record_server_delivery_enabled=True, server="")
    delivering.start()
    old, young = send(delivering, 2)
    assert delivering.stop() == 0
    spool = sqlite3.connect(delivering.spool_dir / "spool.sqlite")
    with spool:
        spool.execute(
            "UPDATE records SET received_at = received_at - 7200 WHERE record_id = ?", (old,)
        )
    spool.close()
    delivering.write_config(record_expiry=60)  # minutes: the old record is two hours old
    delivering.start()
    assert settled(delivering, old, "expired")
    assert [row["record_id"] for row in delivering.records()] == [young]
    assert sink.seen == []


def test_local_only_mode_sends_nothing_and_retains_payloads(
    delivering: DaemonHarness, sink: HttpSink
) -> None:
    delivering.write_config(
        record_server_delivery_enabled=False, record_retention_enabled=True, retention_count=2
    )
    delivering.start()
    ids = send(delivering, 3, payload="local")
    assert settled(delivering, ids[2], "kept-local")
    assert sink.seen == []
    assert fates(delivering) == dict.fromkeys(ids, "kept-local")
    retained = {entry.record_id: entry.payload for entry in entries(delivering)}
    assert retained[ids[0]] is None  # only the last retention_count payloads are kept
    assert retained[ids[1]] == "local 1\n" and retained[ids[2]] == "local 2\n"
    assert delivering.records() == []


def test_the_journal_is_bounded(delivering: DaemonHarness, sink: HttpSink) -> None:
    delivering.write_config(journal_max_entries=100, post_format="ndjson")
    delivering.start()
    ids = send(delivering, 250)
    assert settled(delivering, ids[-1], "delivered")
    kept = entries(delivering)
    assert 100 <= len(kept) <= 110
    assert kept[-1].record_id == ids[-1]


def test_kill_9_during_delivery_loses_nothing_and_dedup_makes_it_exactly_once(
    delivering: DaemonHarness, sink: HttpSink
) -> None:
    delivering.write_config(post_format="ndjson", batch_max_records=20, max_in_flight=2)
    acked: list[str] = []
    for _ in range(4):
        delivering.start()
        acked += send(delivering, 150)
        delivering.kill()  # delivery of these is under way, or just done
    delivering.start()
    assert sink.wait_for_records(len(acked))
    assert set(acked) <= sink.record_ids
    assert len(sink.record_ids) == len(acked)  # exactly once after dedup
    assert delivering.wait_for_log(f"{acked[-1]} delivered") or acked[-1] in fates(delivering)


def test_sigterm_waits_a_bounded_time_and_keeps_what_was_not_delivered(
    delivering: DaemonHarness, sink: HttpSink
) -> None:
    sink.behaviour = Behaviour(hang=True)
    delivering.start()
    [record_id] = send(delivering)
    assert sink.wait_for_requests(1)
    started = time.monotonic()
    assert delivering.stop() == 0
    assert time.monotonic() - started < 8
    assert [row["record_id"] for row in delivering.records()] == [record_id]
    sink.behaviour = Behaviour(status=201)
    sink.release()
    delivering.start()
    assert settled(delivering, record_id, "delivered")
    assert sink.record_ids == {record_id}


def test_an_idle_daemon_sleeps(delivering: DaemonHarness, sink: HttpSink) -> None:
    delivering.start()
    [record_id] = send(delivering)
    assert settled(delivering, record_id, "delivered")
    assert delivering.proc is not None
    process = psutil.Process(delivering.proc.pid)
    before = process.cpu_times()
    time.sleep(1.0)  # measuring idleness takes time passing
    after = process.cpu_times()
    busy = (after.user + after.system) - (before.user + before.system)
    assert busy < 0.05, f"idle daemon used {busy:.3f} s of CPU in 1 s"
