"""SIGKILL under load, end to end: every acknowledged record reaches the
collector exactly once, whichever process dies and whenever."""

from __future__ import annotations

import random
import threading
import time

from daemon_harness import DaemonHarness, wait_until
from processes import Collector, Senders, report

from telemd import journal

RECORDS = 20_000
CLIENTS = 8
DAEMON_KILLS = 20
COLLECTOR_KILLS = 8


def deliver_to(harness: DaemonHarness, collector: Collector) -> None:
    harness.write_config(
        server=collector.batch_url,
        post_format="ndjson",
        batch_max_records=200,
        uid_records_per_minute=-1,
        spool_max_size=-1,
        rate_limit_enabled=False,  # the delivery rate limit would hold 19,000 records back
        retry_initial=0.05,
        retry_max=0.5,
        connect_timeout=1.0,
        request_timeout=5.0,
        log_level="info",
    )


def settle(collector: Collector, acked: list[str], timeout: float) -> tuple[set[str], int]:
    """Await every acknowledged id at the collector; return (lost ids, duplicated)."""
    wanted = set(acked)
    wait_until(lambda: wanted <= set(collector.stored()), timeout)
    stored = collector.stored()
    duplicated = sum(n - 1 for n in stored.values())
    return wanted - set(stored), duplicated


def whereabouts(harness: DaemonHarness, lost: set[str]) -> str:
    """Where lost records are: still spooled, or their journaled fate."""
    spooled = lost & harness.record_ids()
    path = str(harness.state_dir / journal.JOURNAL_FILE)
    fates = {
        e.record_id: e.fate for _, e in journal.query(path, journal.Filter()) if e.record_id in lost
    }
    return (
        f"{len(spooled)} still spooled; journal fates {sorted(set(fates.values()))}"
        f" for {len(fates)}; e.g. {sorted(lost)[:3]}"
    )


def test_sigkill_of_telemd_under_load_loses_and_duplicates_nothing(
    harness: DaemonHarness, collector: Collector
) -> None:
    seed = time.time_ns()
    rng = random.Random(seed)
    deliver_to(harness, collector)
    kills_done = threading.Event()
    senders = Senders(harness.socket, RECORDS, CLIENTS, until=kills_done)
    started = time.monotonic()
    harness.start()
    senders.up.set()
    senders.start()
    kills = 0
    # A random moment of the load; the senders go on until the last kill.
    while kills < DAEMON_KILLS and not senders.join(rng.uniform(0.0, 0.1)):
        senders.up.clear()
        harness.kill()
        kills += 1
        harness.start()
        senders.up.set()
    kills_done.set()
    assert senders.join(120), f"senders stalled (seed {seed})"
    acked = list(senders.acked)
    assert len(acked) == len(set(acked)) >= RECORDS, "an acknowledgement was lost or repeated"
    sent_at = time.monotonic()
    lost_ids, duplicated = settle(collector, acked, timeout=30)
    drained = time.monotonic() - sent_at
    redelivered = collector.metric("duplicate")
    assert harness.stop() == 0
    lost = len(lost_ids)
    report(
        "crash/telemd",
        seed=seed,
        records_acked=len(acked),
        telemd_kills=kills,
        client_reconnects=senders.reconnects,
        lost=lost,
        duplicated=duplicated,
        redelivered_deduplicated=redelivered,
        drain_after_last_ack_s=round(drained, 2),
        total_s=round(time.monotonic() - started, 1),
    )
    assert kills == DAEMON_KILLS
    assert lost == 0, (
        f"{lost} acknowledged records never reached the collector (seed {seed}): "
        + whereabouts(harness, lost_ids)
    )
    assert duplicated == 0


def test_sigkill_of_the_collector_during_batches_loses_and_duplicates_nothing(
    harness: DaemonHarness, collector: Collector
) -> None:
    seed = time.time_ns()
    rng = random.Random(seed)
    deliver_to(harness, collector)
    harness.start()
    kills_done = threading.Event()
    senders = Senders(harness.socket, RECORDS // 2, CLIENTS // 2, until=kills_done)
    senders.up.set()
    senders.start()
    kills = 0
    while kills < COLLECTOR_KILLS:
        # Kill while batches are in flight: once more records have landed.
        landed = len(collector.stored())
        if not wait_until(lambda n=landed: len(collector.stored()) > n, 10):
            break  # everything landed: nothing is in flight any more
        time.sleep(rng.uniform(0.0, 0.1))
        collector.kill()
        kills += 1
        collector.start()
    kills_done.set()
    assert senders.join(120), f"senders stalled (seed {seed})"
    acked = list(senders.acked)
    lost_ids, duplicated = settle(collector, acked, timeout=30)
    assert harness.stop() == 0
    lost = len(lost_ids)
    report(
        "crash/collector",
        seed=seed,
        records_acked=len(acked),
        collector_kills=kills,
        lost=lost,
        duplicated=duplicated,
    )
    assert kills >= COLLECTOR_KILLS // 2, f"the load ended before the kills (seed {seed})"
    assert lost == 0, (
        f"{lost} acknowledged records never reached the collector (seed {seed}): "
        + whereabouts(harness, lost_ids)
    )
    assert duplicated == 0
