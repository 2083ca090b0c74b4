"""Real processes the fault tests break: a collector that can be killed and
restarted on the same port, senders that remember what was acknowledged,
and the figures each test reports.

Figures go to stdout and, when TELEMD_FAULTS_FIGURES names a file, to that
file as JSON lines (docs/reliability.md is filled from it).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from access_tokens import make_token
from ports import free_port

from telemd.client import Client
from telemd.errors import DaemonUnavailable, RejectedError
from telemd.frame import encode_frame
from telemd.record import Record

READY_DEADLINE = 30.0


def report(test: str, **figures: Any) -> None:
    """Publish a test's measured figures."""
    line = json.dumps({"test": test, **figures}, sort_keys=True)
    print(f"FIGURES {line}")
    target = os.environ.get("TELEMD_FAULTS_FIGURES")
    if target:
        with open(target, "a") as out:
            out.write(line + "\n")


class Collector:
    """`python -m telemd.collector serve` on SQLite, on one port across restarts."""

    def __init__(self, workdir: Path, args: Sequence[str] = ()) -> None:
        """`args`: more `serve` options."""
        self.args = list(args)
        self.db = workdir / "collector.sqlite"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.batch_url = f"{self.base_url}/api/v1/records"
        self.log_path = workdir / "collector.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.read_token = make_token(f"sqlite:///{self.db}", "faults", ["read"])
        # Every scope: hostile requests must reach each route's own checks.
        self.all_token = make_token(f"sqlite:///{self.db}", "faults-all")

    def start(self) -> None:
        argv = [
            sys.executable, "-m", "telemd.collector", "serve",
            "--db", f"sqlite:///{self.db}", "--host", "127.0.0.1", "--port", str(self.port),
            "--log-level", "warning", *self.args,
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMD_COLLECTOR")}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.starts += 1
        deadline = time.monotonic() + READY_DEADLINE
        with httpx.Client(base_url=self.base_url, timeout=2) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"collector exited:\n{self.log_path.read_text()}")
                try:
                    if http.get("/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)  # bounded by the deadline; /healthz is the only event
        raise RuntimeError(f"collector not ready:\n{self.log_path.read_text()}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def stored(self) -> Counter[str]:
        """How many rows each record id has in the collector's database."""
        if not self.db.exists():
            return Counter()
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            return Counter(row[0] for row in conn.execute("SELECT record_id FROM records"))
        except sqlite3.OperationalError:
            return Counter()  # the schema is not there yet
        finally:
            conn.close()

    def metric(self, result: str) -> int:
        """Records the running collector answered with `result` (stored, duplicate)."""
        auth = {"Authorization": f"Bearer {self.read_token}"}
        with httpx.Client(base_url=self.base_url, timeout=5, headers=auth) as http:
            text = http.get("/metrics").text
        total = 0
        for line in text.splitlines():
            if line.startswith("telemd_collector_records_total") and f'result="{result}"' in line:
                total += int(float(line.rsplit(" ", 1)[1]))
        return total


class Senders:
    """Threads that pipeline records, survive the daemon's death and keep every ack.

    Each sender waits on `up` (set by whoever restarts the daemon) before
    connecting again, so no thread spins while the daemon is down.
    """

    def __init__(
        self,
        socket_path: str,
        count: int,
        senders: int,
        window: int = 32,
        until: threading.Event | None = None,
    ) -> None:
        """Send `count` records over `senders` threads; with `until`, go on
        sending past `count` until it is set, so the load outlasts what the
        test does meanwhile however fast the daemon has become."""
        self.socket_path = socket_path
        self._until = until
        self.up = threading.Event()
        self.acked: list[str] = []
        self.refused: Counter[str] = Counter()
        self.reconnects = 0
        self._lock = threading.Lock()
        self._window = window
        per_sender = count // senders
        self._threads = [
            threading.Thread(target=self._send, args=(n, per_sender), daemon=True)
            for n in range(senders)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def _more(self, done: int, count: int) -> bool:
        return done < count or (self._until is not None and not self._until.is_set())

    def _send(self, number: int, count: int) -> None:
        done = 0
        while self._more(done, count):
            self.up.wait()
            try:
                with Client(socket_path=self.socket_path, timeout=10) as client:
                    while self._more(done, count):
                        batch = min(self._window, count - done) if done < count else self._window
                        client.write_frames(
                            [
                                encode_frame(
                                    Record("org.example/faults/load", 2, f"s{number} n{done + i}")
                                )
                                for i in range(batch)
                            ]
                        )
                        for _ in range(batch):
                            record_id = client.read_reply()
                            with self._lock:
                                self.acked.append(record_id)
                            done += 1
            except (DaemonUnavailable, RejectedError, OSError) as exc:
                # Unacknowledged frames are simply sent again as new records.
                with self._lock:
                    self.reconnects += 1
                    if isinstance(exc, RejectedError):
                        self.refused[exc.code] += 1
