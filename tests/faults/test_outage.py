"""A collector outage in four acts: down, 503 with Retry-After, hanging,
back. Nothing acknowledged is lost, the daemon idles while it waits, and
the backlog drains within retry_max plus the drain time."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import uvicorn
from daemon_harness import DaemonHarness
from http_sink import Behaviour, HttpSink
from processes import report

from telemd.record import Record

RECORDS = 2_000
RETRY_MAX = 1.0
REQUEST_TIMEOUT = 1.0
RETRY_AFTER = 2
PHASE = 3.0  # seconds each act of the outage lasts
IDLE_CPU = 0.05  # share of one core the daemon may use while it waits


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[HttpSink]:
    server = HttpSink(tmp_path / "sink")
    yield server
    server.stop()


def bring_up(sink: HttpSink) -> None:
    """Serve again on the same port after `stop()`: the collector comes back."""
    sink._release.clear()
    sink._server = uvicorn.Server(sink._server.config)
    sink._thread = threading.Thread(target=sink._server.run, daemon=True)
    sink._thread.start()
    deadline = time.monotonic() + 10
    while not sink._server.started:  # uvicorn offers no event for this
        assert time.monotonic() < deadline, "the sink did not come back"
        time.sleep(0.01)


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def test_down_then_503_then_hanging_then_back_loses_nothing_and_idles(
    harness: DaemonHarness, sink: HttpSink
) -> None:
    sink.stop()  # act 1: nothing listens on the collector's port
    harness.write_config(
        server=sink.url,
        cainfo=str(sink.ca_file),
        post_format="ndjson",
        batch_max_records=250,
        max_in_flight=1,
        uid_records_per_minute=-1,
        rate_limit_enabled=False,
        retry_initial=0.1,
        retry_max=RETRY_MAX,
        connect_timeout=0.5,
        request_timeout=REQUEST_TIMEOUT,
        log_level="info",
    )
    harness.start()
    assert harness.proc is not None
    daemon = psutil.Process(harness.proc.pid)
    with harness.client() as client:
        acked = [
            client.send(Record("org.example/faults/outage", 2, f"n{i}")) for i in range(RECORDS)
        ]
    busy: dict[str, float] = {}

    before = cpu_seconds(daemon)
    time.sleep(PHASE)  # the outage is time passing; the daemon must spend none of it busy
    busy["down"] = cpu_seconds(daemon) - before

    sink.behaviour = Behaviour(status=503, retry_after=str(RETRY_AFTER))  # act 2
    bring_up(sink)
    assert sink.wait_for_requests(1, timeout=RETRY_MAX + 5)
    first_503 = time.monotonic()
    before = cpu_seconds(daemon)
    assert sink.wait_for_requests(2, timeout=RETRY_AFTER + 5)
    retry_gap = time.monotonic() - first_503
    time.sleep(max(0.0, PHASE - retry_gap))
    busy["503"] = cpu_seconds(daemon) - before
    requests_503 = len(sink.seen)

    sink.behaviour = Behaviour(hang=True)  # act 3
    hung_from = len(sink.seen)
    assert sink.wait_for_requests(hung_from + 1, timeout=RETRY_AFTER + 5)
    before = cpu_seconds(daemon)
    time.sleep(PHASE)
    busy["hang"] = cpu_seconds(daemon) - before
    assert sink.record_ids == set()

    sink.behaviour = Behaviour(status=201)  # act 4: back
    sink.release()
    back = time.monotonic()
    assert sink.wait_for_records(RECORDS, timeout=RETRY_MAX + REQUEST_TIMEOUT + 30)
    drain = time.monotonic() - back
    assert harness.stop() == 0
    lost = len(set(acked) - sink.record_ids)
    cpu_share = {act: round(seconds / PHASE, 4) for act, seconds in busy.items()}
    report(
        "outage",
        records=RECORDS,
        lost=lost,
        redelivered_deduplicated=sink.duplicates,
        retry_after_gap_s=round(retry_gap, 2),
        requests_during_503_act=requests_503,
        cpu_share_of_one_core=cpu_share,
        drain_after_recovery_s=round(drain, 2),
        bound_s=RETRY_MAX + REQUEST_TIMEOUT + 2.0,
    )
    assert lost == 0
    assert retry_gap >= RETRY_AFTER - 0.1, "Retry-After was not honoured"
    assert requests_503 <= 4, "503s were retried in a loop"
    for act, share in cpu_share.items():
        assert share < IDLE_CPU, (
            f"the daemon used {share:.1%} of a core while the collector was {act}"
        )
    # The hanging request times out within REQUEST_TIMEOUT, the backoff is at
    # most RETRY_MAX, and 2,000 records take well under 2 s to post.
    assert drain <= RETRY_MAX + REQUEST_TIMEOUT + 2.0
