"""What each collector answer does to the records: kept, rejected or delivered once.

A real daemon posts to the real HTTPS sink; the sink answers as the
collectors users run do (telemetrics-backend, generic NDJSON endpoints, a
server answering with a plain count).
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trustme
from daemon_harness import DaemonHarness, command
from http_sink import Behaviour, HttpSink

from telemd import journal
from telemd.frame import encode_frame
from telemd.record import Record


def send(harness: DaemonHarness, count: int) -> list[str]:
    frames = [encode_frame(Record("org.example/test/answers", 2, f"n{i}\n")) for i in range(count)]
    with harness.client() as client:
        client.write_frames(frames)
        return [client.read_reply() for _ in frames]


def fates(harness: DaemonHarness) -> dict[str, str]:
    path = harness.state_dir / journal.JOURNAL_FILE
    return {entry.record_id: entry.fate for _, entry in journal.query(str(path), journal.Filter())}


def status(harness: DaemonHarness, *args: str) -> str:
    result = subprocess.run(
        [command("telemctl"), "-f", str(harness.config), "status", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.stdout


def status_json(harness: DaemonHarness) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(status(harness, "--json"))
    return state


def posted_ids(sink: HttpSink, start: int = 0) -> list[str]:
    """Record ids of every request the sink saw from `start` on, in order."""
    ids = []
    for seen in sink.seen[start:]:
        if seen.headers.get("content-type") == "application/x-ndjson":
            ids += [json.loads(line)["record_id"] for line in seen.body.splitlines()]
        else:
            ids.append(seen.headers["x-telemetry-record-id"])
    return ids


def assert_kept_then_delivered(harness: DaemonHarness, sink: HttpSink, ids: list[str]) -> None:
    """While the collector refuses: nothing settled, all spooled, the error shown;
    once it takes records again, every one is delivered."""
    assert fates(harness) == {}
    assert harness.record_ids() == set(ids)
    text = status(harness)
    assert "Last error:      none" not in text
    assert "configuration error" in text
    sink.behaviour = Behaviour(status=201)
    for record_id in ids:
        assert harness.wait_for_log(f"{record_id} delivered")
    assert set(fates(harness).values()) == {"delivered"}


@pytest.mark.parametrize("status_code", [401, 403, 404, 405, 407, 411, 415, 421, 426])
def test_a_4xx_about_the_request_keeps_the_record(
    delivering: DaemonHarness, sink: HttpSink, status_code: int
) -> None:
    sink.behaviour = Behaviour(status=status_code)
    delivering.start()
    ids = send(delivering, 1)
    assert sink.wait_for_requests(3)  # retried with backoff, not rejected
    assert delivering.wait_for_log("the collector refuses every request")
    assert_kept_then_delivered(delivering, sink, ids)


def test_413_to_a_batch_keeps_the_records(delivering: DaemonHarness, sink: HttpSink) -> None:
    delivering.write_config(post_format="ndjson", max_in_flight=1)
    sink.behaviour = Behaviour(status=503)
    delivering.start()
    ids = send(delivering, 5)
    assert sink.wait_for_requests(1)
    sink.behaviour = Behaviour(status=413)
    assert delivering.wait_for_log("the collector refuses every request")
    assert_kept_then_delivered(delivering, sink, ids)


def test_the_same_400_for_different_records_is_a_configuration_error(
    delivering: DaemonHarness, sink: HttpSink
) -> None:
    """telemetrics-backend with another tidheader: 400 Telemetry ID mismatch to each record."""
    sink.behaviour = Behaviour(status=400, body=b'{"message": "Telemetry ID mismatch"}')
    delivering.start()
    ids = send(delivering, 3)
    assert sink.wait_for_requests(6)
    assert delivering.wait_for_log("Telemetry ID mismatch): check server, tidheader")
    assert "Telemetry ID mismatch" in status_json(delivering)["delivery"]["last_error"]
    assert_kept_then_delivered(delivering, sink, ids)


def test_a_400_for_one_record_rejects_only_that_record(
    delivering: DaemonHarness, sink: HttpSink
) -> None:
    sink.behaviour = Behaviour(status=400, body=b'{"message": "arch: not allowed"}')
    delivering.start()
    [bad] = send(delivering, 1)
    assert sink.wait_for_requests(1)
    sink.behaviour = Behaviour(status=201)
    [good] = send(delivering, 1)
    assert delivering.wait_for_log(f"{bad} rejected")
    assert delivering.wait_for_log(f"{good} delivered")
    assert fates(delivering) == {bad: "rejected", good: "delivered"}
    assert posted_ids(sink).count(bad) == 1


def test_records_refused_alike_do_not_hold_back_the_others(
    delivering: DaemonHarness, sink: HttpSink
) -> None:
    """Two records the collector refuses with one message look like a configuration
    error; the records behind them are still tried, and once one is delivered the
    two are rejected as the records' own fault."""
    delivering.write_config(max_in_flight=1)
    refusal = Behaviour(status=400, body=b'{"message": "payload: forbidden word"}')

    def answer(seen: Any) -> Behaviour | None:
        return refusal if b"forbidden" in seen.body else None

    sink.behaviour = Behaviour(status=503)
    delivering.start()
    frames = [
        encode_frame(Record("org.example/test/answers", 2, payload))
        for payload in ("forbidden 1\n", "forbidden 2\n", "fine 3\n", "fine 4\n")
    ]
    with delivering.client() as client:
        client.write_frames(frames)
        bad1, bad2, good3, good4 = (client.read_reply() for _ in frames)
    assert sink.wait_for_requests(1)
    sink.behaviour_for = answer
    sink.behaviour = Behaviour(status=201)
    for record_id in (good3, good4):
        assert delivering.wait_for_log(f"{record_id} delivered")
    for record_id in (bad1, bad2):
        assert delivering.wait_for_log(f"{record_id} rejected")
    assert fates(delivering) == {
        bad1: "rejected",
        bad2: "rejected",
        good3: "delivered",
        good4: "delivered",
    }


@pytest.mark.parametrize(
    "answer", [b"", b"OK\n", b'{"accepted": true}'], ids=["empty", "text", "json-without-results"]
)
def test_ndjson_2xx_without_results_delivers_the_batch_once(
    delivering: DaemonHarness, sink: HttpSink, answer: bytes
) -> None:
    delivering.write_config(post_format="ndjson")
    sink.behaviour = Behaviour(status=200, body=answer or b" ")
    delivering.start()
    ids = send(delivering, 30)
    for record_id in ids:
        assert delivering.wait_for_log(f"{record_id} delivered")
    assert sorted(posted_ids(sink)) == sorted(ids)  # each posted once: no resend loop


def test_ndjson_plain_count_delivers_the_first_n(delivering: DaemonHarness, sink: HttpSink) -> None:
    delivering.write_config(post_format="ndjson", max_in_flight=1)
    sink.behaviour = Behaviour(status=503)
    delivering.start()
    ids = send(delivering, 8)
    assert sink.wait_for_requests(1)
    mark = len(sink.seen)
    sink.behaviour = Behaviour(status=200, body=b"3\n")
    for record_id in ids:
        assert delivering.wait_for_log(f"{record_id} delivered")
    counted = [
        json.loads(line)["record_id"]
        for seen in sink.seen[mark:]
        for line in seen.body.splitlines()[:3]
    ]
    assert sorted(counted) == sorted(ids)  # each counted once, the rest posted again


def test_failed_attempts_do_not_spend_the_rate_limit(
    delivering: DaemonHarness, sink: HttpSink
) -> None:
    delivering.write_config(record_burst_limit=1000)
    sink.behaviour = Behaviour(status=503)
    delivering.start()
    send(delivering, 1)
    assert sink.wait_for_requests(6)
    assert status_json(delivering)["rate_limit"]["records"] == [0, 1000]
    sink.behaviour = Behaviour(status=201)
    assert sink.wait_for_records(1)
    assert delivering.wait_for_log(" delivered")
    assert status_json(delivering)["rate_limit"]["records"] == [1, 1000]


def test_sighup_rebuilds_delivery(delivering: DaemonHarness, sink: HttpSink) -> None:
    delivering.write_config(server="")
    delivering.start()
    ids = send(delivering, 2)
    assert delivering.wait_for_log("no server configured")
    delivering.write_config(server=sink.url, post_format="json", event_loop="asyncio")
    mark = len(delivering.log)
    delivering.signal(signal.SIGHUP)
    assert delivering.wait_for_log("configuration reloaded", after=mark)
    assert delivering.wait_for_log("event_loop changed; it takes effect at the next restart")
    for record_id in ids:
        assert delivering.wait_for_log(f"{record_id} delivered")
    assert all(seen.headers["content-type"] == "application/json" for seen in sink.seen)


def test_sighup_rebuilds_tls(delivering: DaemonHarness, sink: HttpSink, tmp_path: Path) -> None:
    other_ca = trustme.CA()
    wrong = tmp_path / "other-ca.pem"
    other_ca.cert_pem.write_to_path(str(wrong))
    delivering.write_config(cainfo=str(wrong))
    delivering.start()
    [record_id] = send(delivering, 1)
    assert delivering.wait_for_log("CERTIFICATE_VERIFY_FAILED")
    assert sink.seen == []
    delivering.write_config(cainfo=str(sink.ca_file))
    delivering.signal(signal.SIGHUP)
    assert delivering.wait_for_log(f"{record_id} delivered")
    assert sink.record_ids == {record_id}


def test_a_refusal_from_the_server_before_a_reload_is_not_held_against_the_record(
    tmp_path: Path, sink: HttpSink
) -> None:
    """A request in flight when SIGHUP points the daemon at another server: the former
    server's 400 for its telemetry id, arriving after the reload, once made the record
    a suspect of the new configuration, rejected when nothing contradicted it."""
    former = HttpSink(tmp_path / "former", behaviour=Behaviour(hang=True))
    harness = DaemonHarness(
        tmp_path / "telemd",
        server=former.url,
        cainfo=str(former.ca_file),
        post_format="json",
        retry_initial=0.05,
        retry_max=0.4,
        request_timeout=30.0,
        uid_records_per_minute=-1,
    )
    try:
        harness.start()
        [record_id] = send(harness, 1)
        assert former.wait_for_requests(1)
        harness.write_config(server=sink.url, cainfo=str(sink.ca_file))
        mark = len(harness.log)
        harness.signal(signal.SIGHUP)
        assert harness.wait_for_log("configuration reloaded", after=mark)
        former.behaviour = Behaviour(status=400, body=b'{"message": "Telemetry ID mismatch"}')
        former.release()
        assert harness.wait_for_log("the former server answered 400", after=mark)
        assert harness.wait_for_log(f"{record_id} delivered", after=mark)
    finally:
        harness.stop()
        former.stop()
    assert sink.record_ids == {record_id}
    assert fates(harness) == {record_id: "delivered"}
