"""Floods: 1,000 idle connections and one uid sending flat out do not silence another uid."""

from __future__ import annotations

import resource
import socket
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest
from daemon_harness import AS_NOBODY, NOBODY_UID, DaemonHarness, directory_for_nobody
from processes import report

IDLE_CONNECTIONS = 1000
FLOOD_SECONDS = 3.0
# Sends records one at a time as uid 65534 and prints each acknowledgement's latency.
OTHER_UID = """
import sys, time
from telemd.client import Client
from telemd.record import Record
latencies = []
for i in range(10):
    start = time.perf_counter()
    with Client(socket_path=sys.argv[1], timeout=10) as client:
        client.send(Record("org.example/other/uid", 2, f"record {i}"))
    latencies.append(time.perf_counter() - start)
print(max(latencies))
"""
# Pipelines records as fast as the daemon answers, for FLOOD_SECONDS.
FLOODER = """
import sys, time
from telemd.client import Client
from telemd.errors import RejectedError
from telemd.frame import encode_frame
from telemd.record import Record
frame = encode_frame(Record("org.example/flood/root", 1, "x" * 500))
ok = refused = 0
deadline = time.monotonic() + float(sys.argv[2])
with Client(socket_path=sys.argv[1], timeout=30) as client:
    while time.monotonic() < deadline:
        client.write_frames([frame] * 64)
        for _ in range(64):
            try:
                client.read_reply()
                ok += 1
            except RejectedError:
                refused += 1
print(ok, refused)
"""


class PeakRss(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.02):
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return


def test_another_uid_is_served_within_a_second_through_a_flood(
    harness: DaemonHarness, tmp_path: Path
) -> None:
    with directory_for_nobody(tmp_path, "send as a second uid") as public:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard < IDLE_CONNECTIONS + 200:
            pytest.skip(
                f"needs {IDLE_CONNECTIONS + 200} file descriptors, the hard limit is {hard}"
            )
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, IDLE_CONNECTIONS + 200), hard))
        idle: list[socket.socket] = []
        try:
            harness.socket = str(public / "telem-0")
            harness.write_config(socket_path=harness.socket)
            harness.start()
            assert harness.proc is not None
            rss = PeakRss(harness.proc.pid)
            rss.start()
            for _ in range(IDLE_CONNECTIONS):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(harness.socket)
                idle.append(sock)
            flooder = subprocess.Popen(
                [sys.executable, "-c", FLOODER, harness.socket, str(FLOOD_SECONDS)],
                stdout=subprocess.PIPE,
                text=True,
            )
            other = subprocess.run(
                [*AS_NOBODY, sys.executable, "-c", OTHER_UID, harness.socket],
                capture_output=True,
                text=True,
                timeout=60,
            )
            flood_out, _ = flooder.communicate(timeout=60)
            rss.done.set()
            assert other.returncode == 0, other.stderr
            worst = float(other.stdout)
            ok, refused = (int(n) for n in flood_out.split())
            uids = {row["sender_uid"] for row in harness.records()}
            report(
                "floods",
                idle_connections=IDLE_CONNECTIONS,
                flood_acknowledged=ok,
                flood_throttled=refused,
                other_uid_worst_ack_s=round(worst, 3),
                daemon_peak_rss_mib=round(rss.peak / 2**20, 1),
            )
            assert worst < 1.0, f"the other uid waited {worst:.3f} s for an acknowledgement"
            assert refused > 0  # the flooder was held to its budget
            assert {0, NOBODY_UID} <= uids
            assert rss.peak < 128 * 2**20
        finally:
            for sock in idle:
                sock.close()
            if harness.proc is not None and harness.proc.poll() is None:
                harness.stop()
