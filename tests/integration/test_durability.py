"""Acknowledged means on disk: kill -9 under load, and SIGTERM mid-stream."""

from __future__ import annotations

import random
import shutil
import signal
import threading
import time

import psutil
import pytest
from daemon_harness import DaemonHarness

from telemd.client import Client
from telemd.errors import DaemonUnavailable, ErrorCode, RejectedError
from telemd.frame import encode_frame
from telemd.record import Record

ROUNDS = 8
SENDERS = 4
WINDOW = 32


class Senders:
    """Clients that pipeline records and remember every acknowledged id."""

    def __init__(self, socket_path: str, kill_after: int) -> None:
        self.socket_path = socket_path
        self.kill_after = kill_after
        self.acked: list[str] = []
        self.lock = threading.Lock()
        self.enough = threading.Event()
        self.threads = [threading.Thread(target=self._send, args=(n,)) for n in range(SENDERS)]

    def _send(self, number: int) -> None:
        frame = encode_frame(Record("org.example/test/durability", 2, f"sender {number}\n"))
        try:
            with Client(socket_path=self.socket_path, timeout=10) as client:
                while True:
                    client.write_frames([frame] * WINDOW)
                    for _ in range(WINDOW):
                        record_id = client.read_reply()
                        with self.lock:
                            self.acked.append(record_id)
                            if len(self.acked) >= self.kill_after:
                                self.enough.set()
        except (DaemonUnavailable, RejectedError):
            return  # the daemon died under us: what was acknowledged is what counts

    def __enter__(self) -> Senders:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        for thread in self.threads:
            thread.join(30)


def test_acknowledged_records_survive_kill_9_at_random_moments(harness: DaemonHarness) -> None:
    harness.write_config(uid_records_per_minute=-1, spool_max_size=-1, log_level="info")
    seed = time.time_ns()
    rng = random.Random(seed)
    acked: list[str] = []
    for _ in range(ROUNDS):
        harness.start()
        with Senders(harness.socket, kill_after=rng.randint(1, 3000)) as senders:
            assert senders.enough.wait(60), f"no progress (seed {seed})"
            harness.kill()
        acked.extend(senders.acked)
    harness.start()  # recovers the WAL like any restart would
    assert harness.stop() == 0
    stored = harness.record_ids()
    lost = set(acked) - stored
    assert len(acked) == len(set(acked)), "a record id was handed out twice"
    assert len(acked) >= ROUNDS
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged records lost (seed {seed})"


def test_sigterm_acknowledges_what_it_took_and_loses_nothing(harness: DaemonHarness) -> None:
    harness.write_config(uid_records_per_minute=-1)
    harness.start()
    daemon = harness
    frames = [encode_frame(Record("a/b/c", 1, f"n{i}")) for i in range(3000)]
    ok: list[str] = []
    refused: list[str] = []
    with Client(socket_path=daemon.socket, timeout=30) as client:
        client.write_frames(frames)
        ok.append(client.read_reply())
        daemon.signal(signal.SIGTERM)
        for _ in frames[1:]:
            try:
                ok.append(client.read_reply())
            except RejectedError as exc:
                refused.append(exc.code)
            except DaemonUnavailable:
                break  # frames never read stay with the client, unacknowledged
    assert daemon.stop() == 0
    assert set(refused) <= {ErrorCode.SHUTTING_DOWN}
    assert set(ok) <= daemon.record_ids()
    assert len(ok) + len(refused) <= len(frames)


def test_no_acknowledgement_leaves_before_the_wal_is_synced(harness: DaemonHarness) -> None:
    """What power loss would test: the OK is written only after an fsync.

    kill -9 leaves the page cache intact, so it cannot catch a missing fsync;
    the system-call trace can. A client that waits for each OK forces one
    commit per record, so a WAL sync must stand between any two OK replies.
    """
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("needs strace to watch the daemon's system calls")
    trace = harness.root / "trace.txt"
    harness.start(
        timeout=60,
        wrapper=(
            strace,
            "-f",
            "-qq",
            "-y",
            "-s",
            "64",
            "-o",
            str(trace),
            "-e",
            "trace=fsync,fdatasync,write,sendto,sendmsg",
        ),
    )
    with Client(socket_path=harness.socket, timeout=30) as client:
        ids = [client.send(Record("a/b/c", 1, f"n{i}")) for i in range(5)]
    assert harness.proc is not None
    [daemon] = psutil.Process(harness.proc.pid).children()
    daemon.terminate()  # strace itself does not pass SIGTERM on
    assert harness.proc.wait(30) == 0
    events = []
    for line in trace.read_text().splitlines():
        if ("fsync(" in line or "fdatasync(" in line) and "spool.sqlite-wal" in line:
            events.append("sync")
        elif '"OK ' in line:
            events.append("ok")
    assert events.count("ok") == len(ids)
    replies = [index for index, event in enumerate(events) if event == "ok"]
    previous = -1
    for index in replies:
        assert "sync" in events[previous + 1 : index], (
            f"an OK was written before a WAL sync: {events}"
        )
        previous = index
