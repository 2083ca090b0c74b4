#!/usr/bin/env python3
"""bench/intake: how fast telemd takes records durably, against baselines of the same run.

Prints, for telemd and for a bare asyncio server (bench/bare_server.py) that
answers each frame without storing it, each on both event loops (uvloop,
which telemd uses when installed, and asyncio's own):
  - legacy: 8 C processes, one connection per record, write and close (libtelemetry's way)
  - connect: 1 and 8 clients, a connection per record, each waiting for its OK
  - wait: 1 and 8 clients, one connection each, every frame waits for its OK
  - pipelined: 1 and 8 clients writing windows of 256 frames before reading replies
plus the disk's raw write+fsync rate, telem-record-gen's wall time against
`python -I -c pass`, and the daemon's peak RSS. Every telemd figure counts
records committed to the spool (fsync'd) before they were acknowledged.

All four servers run at once; each measure is taken in 3 rounds that visit
the servers in turn, and the median of the rounds is printed, so that the
machine's slow moments fall on telemd and its baselines alike.

usage: python bench/intake.py [--quick]
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
QUICK = "--quick" in sys.argv
SCALE = 0.25 if QUICK else 1.0
LEGACY_PER_SENDER = int(5000 * SCALE)
CONNECT_TOTAL = int(8000 * SCALE)
WAIT_TOTAL = int(16000 * SCALE)
PIPELINE_TOTAL = int(80000 * SCALE)
# Each measure is taken this many times, the servers in turn; the median counts.
ROUNDS = 1 if QUICK else 3


def fsync_rate(directory: str, seconds: float = 1.5) -> float:
    path = os.path.join(directory, "fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        os.write(fd, b"x" * 512)
        os.fsync(fd)
        count += 1
    os.close(fd)
    os.unlink(path)
    return count / (time.perf_counter() - start)


def compile_sender(directory: str) -> str:
    binary = os.path.join(directory, "legacy_client")
    subprocess.run(
        ["cc", "-O2", "-o", binary, str(ROOT / "tests" / "c" / "legacy_client.c")], check=True
    )
    return binary


def wait_for_socket(path: str, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"server did not start listening on {path}")
        time.sleep(0.01)


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.02):
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return


class Telemd:
    def __init__(self, directory: str, loop: str = "auto") -> None:
        os.makedirs(directory, exist_ok=True)
        self.dir = directory
        self.socket = os.path.join(directory, "telem-0")
        self.spool = os.path.join(directory, "spool", "spool.sqlite")
        opt_in = os.path.join(directory, "opt-in")
        Path(opt_in).touch()
        config = os.path.join(directory, "telemd.toml")
        Path(config).write_text(
            f'socket_path = "{self.socket}"\n'
            f'control_socket_path = "{directory}/control"\n'
            f'spool_dir = "{directory}/spool"\n'
            f'state_dir = "{directory}/state"\n'
            f'opt_in_file = "{opt_in}"\n'
            f'static_machine_id_file = "{directory}/static-id"\n'
            "spool_max_size = -1\n"
            "uid_records_per_minute = -1\n"
            'log_level = "warning"\n'
            f'event_loop = "{loop}"\n'
        )
        self.config = config
        self.proc = subprocess.Popen([PYTHON, "-m", "telemd.daemon", "-f", config])
        wait_for_socket(self.socket, self.proc)
        self.rss = RssSampler(self.proc.pid)
        self.rss.start()

    def stored(self) -> int:
        conn = sqlite3.connect(f"file:{self.spool}?mode=ro", uri=True)
        try:
            (count,) = conn.execute("SELECT count(*) FROM records").fetchone()
        finally:
            conn.close()
        return int(count)

    def stop(self) -> None:
        self.rss.stopped.set()
        self.proc.terminate()
        self.proc.wait(30)


class Bare:
    def __init__(self, directory: str, loop: str) -> None:
        self.socket = os.path.join(directory, f"bare-{loop}")
        self.proc = subprocess.Popen(
            [PYTHON, str(ROOT / "bench" / "bare_server.py"), self.socket, loop],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.proc.stdout.readline()

    def expect(self, count: int) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{count}\n")
        self.proc.stdin.flush()

    def wait_done(self) -> None:
        assert self.proc.stdout is not None
        self.proc.stdout.readline()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def legacy_run(sender: str, socket_path: str, done: callable) -> float:  # type: ignore[valid-type]
    start = time.perf_counter()
    senders = [
        subprocess.Popen(
            [
                sender,
                socket_path,
                "org.example/bench/legacy",
                "2",
                "x" * 200,
                str(LEGACY_PER_SENDER),
            ]
        )
        for _ in range(8)
    ]
    for proc in senders:
        if proc.wait() != 0:
            raise SystemExit("a legacy sender failed")
    done()
    return 8 * LEGACY_PER_SENDER / (time.perf_counter() - start)


def client_run(socket_path: str, mode: str, clients: int, total: int) -> float:
    per_client = total // clients
    workers = [
        subprocess.Popen(
            [PYTHON, str(ROOT / "bench" / "client_worker.py"), socket_path, mode, str(per_client)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(clients)
    ]
    for worker in workers:
        assert worker.stdout is not None
        worker.stdout.readline()
    start = time.perf_counter()
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    for worker in workers:
        assert worker.stdout is not None
        worker.stdout.readline()
        worker.wait()
    return per_client * clients / (time.perf_counter() - start)


def installed_venv(directory: str) -> Path:
    """A throwaway venv with telemd installed from a wheel, as users get it.

    The development venv's editable install adds an import hook to every
    start-up; a wheel install does not, so start-up is measured on one.
    """
    venv = Path(directory) / "venv"
    wheels = Path(directory) / "wheels"
    subprocess.run([PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run(
        [PYTHON, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
        check=True,
        stderr=subprocess.DEVNULL,
    )
    [wheel] = wheels.glob("telemd-*.whl")
    subprocess.run(
        [
            PYTHON,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "-q",
            "--no-deps",
            str(wheel),
        ],
        check=True,
    )
    return venv / "bin"


def median_wall(command: list[str], runs: int = 30, env: dict[str, str] | None = None) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    directory = tempfile.mkdtemp(prefix="telemd-bench-")
    try:
        run(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


LOOPS = ("uvloop", "asyncio")
MODES = (
    ("legacy", "legacy, 8 C senders, connect-write-close"),
    ("connect1", "connect, send, wait for OK, 1 client"),
    ("connect8", "connect, send, wait for OK, 8 clients"),
    ("wait1", "wait for each OK, 1 client"),
    ("wait8", "wait for each OK, 8 clients"),
    ("pipe1", "pipelined, 1 client"),
    ("pipe8", "pipelined, 8 clients"),
)


# MODES key: (client_worker.py's mode, clients, records in all).
CLIENT_RUNS = {
    "connect1": ("connect", 1, CONNECT_TOTAL),
    "connect8": ("connect", 8, CONNECT_TOTAL),
    "wait1": ("wait", 1, WAIT_TOTAL),
    "wait8": ("wait", 8, WAIT_TOTAL),
    "pipe1": ("pipeline", 1, PIPELINE_TOTAL),
    "pipe8": ("pipeline", 8, PIPELINE_TOTAL),
}


def measure_once(server: Bare | Telemd, sender: str, mode: str) -> float:
    """One run of `mode` (a MODES key) against `server`: records/s."""
    if mode == "legacy":
        expected = 8 * LEGACY_PER_SENDER
        if isinstance(server, Bare):
            server.expect(expected)
            return legacy_run(sender, server.socket, server.wait_done)
        target = server.stored() + expected

        def all_stored(daemon: Telemd = server) -> None:
            deadline = time.monotonic() + 120
            while daemon.stored() < target and time.monotonic() < deadline:
                time.sleep(0.005)

        return legacy_run(sender, server.socket, all_stored)
    worker_mode, clients, total = CLIENT_RUNS[mode]
    return client_run(server.socket, worker_mode, clients, total)


def run(directory: str) -> None:
    sender = compile_sender(directory)
    disk = fsync_rate(directory)

    # Every server runs at once (idle, each costs nothing) and each mode is
    # measured in rounds that take the servers in turn: a slow moment of the
    # machine falls on all of them alike, and the median of the rounds is kept.
    bare = {loop: Bare(directory, loop) for loop in LOOPS}
    daemons = {loop: Telemd(os.path.join(directory, loop), loop) for loop in LOOPS}
    servers: dict[str, Bare | Telemd] = {
        **{f"bare-{loop}": server for loop, server in bare.items()},
        **{f"telemd-{loop}": daemon for loop, daemon in daemons.items()},
    }
    rates: dict[str, dict[str, float]] = {name: {} for name in servers}
    for mode, _ in MODES:
        rounds: dict[str, list[float]] = {name: [] for name in servers}
        for _ in range(ROUNDS):
            for name, server in servers.items():
                rounds[name].append(measure_once(server, sender, mode))
        for name in servers:
            rates[name][mode] = statistics.median(rounds[name])
    for server in bare.values():
        server.stop()

    env = dict(os.environ, TELEMD_CONFIG=daemons["uvloop"].config)
    venv = installed_venv(directory)
    gen = median_wall(
        [str(venv / "telem-record-gen"), "-c", "org.example/bench/gen", "-p", "hi"], env=env
    )
    bare_python = median_wall([str(venv / "python"), "-I", "-c", "pass"])
    peak_rss: dict[str, int] = {}
    for loop, daemon in daemons.items():
        daemon.stop()
        peak_rss[loop] = daemon.rss.peak
    telemd = {loop: rates[f"telemd-{loop}"] for loop in LOOPS}
    bare_rates = {loop: rates[f"bare-{loop}"] for loop in LOOPS}

    print(f"disk write+fsync: {disk:,.0f}/s (one fsync per commit bounds 'wait, 1 client')")
    print()
    print(
        'telemd runs on uvloop when it is installed (event_loop = "auto"), else on'
        " asyncio's own loop;\nboth are measured, against a bare server on each loop."
    )
    print()
    print(
        "| intake (records/s, durable) | telemd (uvloop) | bare asyncio server | ratio |"
        " telemd, asyncio's loop | ratio | bare server on uvloop | ratio, both on uvloop |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for key, name in MODES:
        fast, stock = telemd["uvloop"][key], telemd["asyncio"][key]
        base, base_uv = bare_rates["asyncio"][key], bare_rates["uvloop"][key]
        print(
            f"| {name} | {fast:,.0f} | {base:,.0f} | {fast / base:.3f}x | {stock:,.0f} |"
            f" {stock / base:.3f}x | {base_uv:,.0f} | {fast / base_uv:.3f}x |"
        )
    print()
    print(
        f"telem-record-gen wall time (median of 30): {gen * 1000:.1f} ms; "
        f"python -I -c pass: {bare_python * 1000:.1f} ms; ratio {gen / bare_python:.2f}x"
    )
    print(
        f"telemd peak RSS under load: {peak_rss['uvloop'] / 2**20:.1f} MiB on uvloop,"
        f" {peak_rss['asyncio'] / 2**20:.1f} MiB on asyncio's loop"
    )


if __name__ == "__main__":
    main()
