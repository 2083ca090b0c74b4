"""Floods: one uid's thousand connections, pipelining or idle, do not silence
another uid, and a flood of bad frames does not flood the log."""

from __future__ import annotations

import asyncio
import logging
import resource
import shutil
import socket
import statistics
import threading
from pathlib import Path

import psutil
import pytest
from daemon_harness import AS_NOBODY, NOBODY_UID, DaemonHarness, directory_for_nobody
from flooders import Attacker, victim_waits
from log_capture import Clock, Lines
from processes import report

from telemd.daemon.budget import UidBudget
from telemd.daemon.intake import Intake, IntakeOptions
from telemd.daemon.loglimit import RepeatFilter, RepeatLimiter
from telemd.daemon.spool import Spool
from telemd.hostinfo import read_host_info

FLOOD_CONNECTIONS = 1000
VICTIM_RECORDS = 20
# A generous bound for a loaded 2-core machine; bench/flood.py measures the figure.
WORST_ACK_BOUND = 3.0
# The daemon's descriptor limit in the descriptor flood, far below the idle crowd.
LOW_NOFILE = 600
IDLE_CONNECTIONS = 3000


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


def _enough_descriptors(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < needed:
        pytest.skip(f"needs {needed} file descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, needed), hard))


def test_a_thousand_pipelining_connections_of_one_uid_do_not_hold_up_another(
    harness: DaemonHarness, tmp_path: Path
) -> None:
    with directory_for_nobody(tmp_path, "send as a second uid") as public:
        _enough_descriptors(FLOOD_CONNECTIONS + 200)
        harness.socket = str(public / "telem-0")
        harness.write_config(socket_path=harness.socket)
        harness.start()
        assert harness.proc is not None
        rss = PeakRss(harness.proc.pid)
        rss.start()
        attacker = Attacker("attack", harness.socket, FLOOD_CONNECTIONS)
        try:
            waits = victim_waits(harness.socket, VICTIM_RECORDS, AS_NOBODY)
        finally:
            ok, refused, closed = attacker.stop()
            rss.done.set()
        uids = {row["sender_uid"] for row in harness.records()}
        report(
            "floods-pipelining",
            attacker_connections=FLOOD_CONNECTIONS,
            attacker_acknowledged=ok,
            attacker_refused=refused,
            attacker_connections_closed=closed,
            victim_records=len(waits),
            victim_worst_ack_s=round(max(waits), 3),
            victim_median_ack_s=round(statistics.median(waits), 4),
            daemon_peak_rss_mib=round(rss.peak / 2**20, 1),
        )
        assert len(waits) == VICTIM_RECORDS
        assert max(waits) < WORST_ACK_BOUND, f"the other uid waited {max(waits):.3f} s"
        assert refused > 0  # the attacker was held to its budget
        assert {0, NOBODY_UID} <= uids
        assert rss.peak < 128 * 2**20


def test_idle_connections_beyond_the_descriptor_limit_do_not_shut_out_another_uid(
    harness: DaemonHarness, tmp_path: Path
) -> None:
    with directory_for_nobody(tmp_path, "send as a second uid") as public:
        if shutil.which("prlimit") is None:
            pytest.skip("needs prlimit to lower the daemon's descriptor limit")
        _enough_descriptors(IDLE_CONNECTIONS + 200)
        harness.socket = str(public / "telem-0")
        # max_clients above what the descriptors allow: the daemon must cap itself.
        harness.write_config(socket_path=harness.socket, max_clients=4096, log_level="info")
        harness.start(wrapper=("prlimit", f"--nofile={LOW_NOFILE}:{LOW_NOFILE}", "--"))
        assert harness.wait_for_log("needs more descriptors than RLIMIT_NOFILE leaves")
        attacker = Attacker("idle", harness.socket, IDLE_CONNECTIONS)
        try:
            waits = victim_waits(harness.socket, VICTIM_RECORDS, AS_NOBODY)
        finally:
            opened, refused, shed = attacker.stop()
        shedding = [line for line in harness.log if "closing idle ones" in line]
        report(
            "floods-descriptors",
            daemon_nofile=LOW_NOFILE,
            idle_connections_opened=opened,
            refused_with_an_error=refused,
            closed_by_the_daemon=shed,
            victim_records=len(waits),
            victim_worst_ack_s=round(max(waits), 3),
            shedding_log_lines=len(shedding),
        )
        assert len(waits) == VICTIM_RECORDS  # every record of the other uid acknowledged
        assert max(waits) < WORST_ACK_BOUND
        assert shed > 0 and shedding  # the idle crowd was shed, and the log says so
        assert len(shedding) <= 2  # once, then at most a summary: the log is not flooded
        assert harness.stop() == 0


BAD_FRAMES = 10_000


def _send_bad_frames(path: str, count: int) -> int:
    """Connect, send a frame whose size is impossible, read the error; `count` times."""
    errors = 0
    for _ in range(count):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(path)
            sock.sendall(b"\x03\x00\x00\x00")
            errors += sock.recv(256).startswith(b"ERR invalid")
    return errors


def test_ten_thousand_bad_frames_log_a_bounded_number_of_lines_with_their_count(
    tmp_path: Path,
) -> None:
    clock = Clock()
    lines = Lines()
    repeats = RepeatFilter(lines, RepeatLimiter(interval=60.0, clock=clock))
    lines.addFilter(repeats)
    intake_log = logging.getLogger("telemd.intake")
    intake_log.addHandler(lines)
    intake_log.setLevel(logging.INFO)
    path = str(tmp_path / "telem-0")
    opt_in = tmp_path / "opt-in"
    opt_in.touch()

    async def serve() -> int:
        loop = asyncio.get_running_loop()
        spool = Spool(str(tmp_path / "spool"), max_bytes=None)
        (tmp_path / "spool").mkdir()
        spool.open(loop, str(tmp_path / "journal.sqlite"))
        options = IntakeOptions(
            opt_in_file=str(opt_in), max_payload_size=8192, max_clients=64, client_timeout=5.0
        )
        host = read_host_info()
        intake = Intake(options, spool, lambda: ("0" * 32, host), UidBudget(None, loop.time))
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(128)
        listener.setblocking(False)
        await intake.start(listener)
        try:
            return await asyncio.to_thread(_send_bad_frames, path, BAD_FRAMES)
        finally:
            await intake.stop(1.0)
            spool.close()

    try:
        errors = asyncio.run(serve())
        during = list(lines.lines)
        clock.now += 60.0
        repeats.flush()
    finally:
        intake_log.removeHandler(lines)
    report("floods-log", bad_frames=BAD_FRAMES, log_lines=len(lines.lines))
    assert errors == BAD_FRAMES  # every bad frame still got its error reply
    # The first refusal, then at the stop one summary with the count (the
    # journal's refusal entries carry the same count).
    assert len(during) == 2, during
    assert "frame size 3 is smaller than the minimum" in during[0]
    assert f"refused {BAD_FRAMES - 1} more frames from uid" in during[1]
