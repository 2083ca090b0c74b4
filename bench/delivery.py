#!/usr/bin/env python3
"""bench/delivery: records/s telemd delivers over HTTPS, against a bare httpx client.

For each format (headers, json, ndjson) and 1 and 4 requests in flight:
the spool is filled while no server is configured, then telemd restarts with
the sink as its server and the clock runs until the spool is empty. In the
same run, a bare httpx.AsyncClient posts the same bodies to the same sink
with the same concurrency: the baseline. The sink (bench/https_sink.py) runs
in its own process with a trustme certificate. Also printed: CPU seconds per
10,000 records for telemd and for the bare client.

Each is measured on both event loops: uvloop, which telemd uses when it is
installed, and asyncio's own.

usage: python bench/delivery.py [--quick]
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import trustme

from telemd.client import Client
from telemd.daemon import eventloop
from telemd.daemon.spool import Spool
from telemd.daemon.transport import build_request
from telemd.frame import encode_frame
from telemd.record import Record

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
QUICK = "--quick" in sys.argv
SINGLE = 1000 if QUICK else 4000
BATCHED = 10000 if QUICK else 40000
TID = ("X-Telemetry-TID", "6907c830-eed9-4ce9-81ae-76daf8d88f0f")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Sink:
    def __init__(self, directory: Path) -> None:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        self.ca_file = directory / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        cert.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
        cert.private_key_pem.write_to_path(str(directory / "key.pem"))
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}/v2/collector"
        self.proc = subprocess.Popen(
            [PYTHON, str(ROOT / "bench" / "https_sink.py"), str(self.port),
             str(directory / "cert.pem"), str(directory / "key.pem")]
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port)).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the sink did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


class Daemon:
    def __init__(self, directory: Path, **settings: object) -> None:
        self.dir = directory
        self.socket = str(directory / "telem-0")
        (directory / "opt-in").touch()
        lines = {
            "socket_path": self.socket,
            "control_socket_path": str(directory / "control"),
            "spool_dir": str(directory / "spool"),
            "state_dir": str(directory / "state"),
            "opt_in_file": str(directory / "opt-in"),
            "static_machine_id_file": str(directory / "static-id"),
            "uid_records_per_minute": -1,
            "spool_max_size": -1,
            "rate_limit_enabled": False,
            "log_level": "warning",
            **settings,
        }
        config = directory / "telemd.toml"
        config.write_text("".join(f"{key} = {toml(value)}\n" for key, value in lines.items()))
        self._spool: sqlite3.Connection | None = None
        self.proc = subprocess.Popen([PYTHON, "-m", "telemd.daemon", "-f", str(config)])
        deadline = time.monotonic() + 20
        while not os.path.exists(self.socket):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit("telemd did not start")
            time.sleep(0.01)

    def depth(self) -> int:
        # One connection for all the polling: opening one per look costs CPU
        # the daemon and the sink are competing for.
        if self._spool is None:
            self._spool = sqlite3.connect(f"file:{self.dir}/spool/spool.sqlite?mode=ro", uri=True)
        return int(self._spool.execute("SELECT count(*) FROM records").fetchone()[0])

    def stop(self) -> None:
        if self._spool is not None:
            self._spool.close()
        self.proc.terminate()
        self.proc.wait(30)


def fill(directory: Path, count: int) -> None:
    daemon = Daemon(directory)
    frame = encode_frame(Record("org.example/bench/delivery", 2, "x" * 200 + "\n"))
    with Client(socket_path=daemon.socket, timeout=60) as client:
        for start in range(0, count, 500):
            window = min(500, count - start)
            client.write_frames([frame] * window)
            for _ in range(window):
                client.read_reply()
    daemon.stop()


def run_telemd(
    directory: Path, sink: Sink, post_format: str, in_flight: int, loop: str
) -> tuple[float, float]:
    daemon = Daemon(
        directory,
        server=sink.url,
        cainfo=str(sink.ca_file),
        post_format=post_format,
        max_in_flight=in_flight,
        event_loop=loop,
    )
    process = psutil.Process(daemon.proc.pid)
    total = daemon.depth()
    cpu = process.cpu_times()
    start = time.perf_counter()
    while daemon.depth() > 0:
        time.sleep(0.005)
    elapsed = time.perf_counter() - start
    used = process.cpu_times()
    daemon.stop()
    return total / elapsed, (used.user + used.system - cpu.user - cpu.system) / total


def bodies(directory: Path, post_format: str, count: int) -> list[tuple[bytes, dict[str, str]]]:
    """The requests telemd would send for the spooled records, built the same way."""
    spool = Spool(str(directory / "spool"), max_bytes=None)
    loop = asyncio.new_event_loop()
    spool.open(loop, str(directory / "state" / "journal.sqlite"))
    records = spool.fetch(0, count)
    spool.close()
    loop.close()
    size = 500 if post_format == "ndjson" else 1
    out = []
    for index in range(0, len(records), size):
        request = build_request(post_format, records[index : index + size])
        out.append((request.content, {**request.headers, TID[0]: TID[1]}))
    return out


async def bare_client(
    sink: Sink, requests: list[tuple[bytes, dict[str, str]]], in_flight: int
) -> float:
    context = ssl.create_default_context(cafile=str(sink.ca_file))
    queue: asyncio.Queue[tuple[bytes, dict[str, str]]] = asyncio.Queue()
    for request in requests:
        queue.put_nowait(request)
    async with httpx.AsyncClient(
        verify=context, limits=httpx.Limits(max_connections=in_flight)
    ) as client:

        async def worker() -> None:
            while not queue.empty():
                content, headers = queue.get_nowait()
                response = await client.post(sink.url, content=content, headers=headers)
                assert response.status_code == 201

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return time.perf_counter() - start


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="telemd-bench-delivery-"))
    try:
        run(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_bare(
    sink: Sink, requests: list[tuple[bytes, dict[str, str]]], count: int, in_flight: int, loop: str
) -> tuple[float, float]:
    """Records/s and CPU seconds per record of the bare httpx client on `loop`."""
    me = psutil.Process()
    before = me.cpu_times()
    elapsed = eventloop.run(bare_client(sink, requests, in_flight), loop)
    after = me.cpu_times()
    return count / elapsed, (after.user + after.system - before.user - before.system) / count


def run(root: Path) -> None:
    sink = Sink(root)
    rows = []
    try:
        for post_format in ("headers", "json", "ndjson"):
            count = BATCHED if post_format == "ndjson" else SINGLE
            for in_flight in (1, 4):
                telemd, bare = {}, {}
                for loop in ("uvloop", "asyncio"):
                    directory = root / f"{post_format}-{in_flight}-{loop}"
                    directory.mkdir()
                    fill(directory, count)
                    requests = bodies(directory, post_format, count)
                    bare[loop] = run_bare(sink, requests, count, in_flight, loop)
                    telemd[loop] = run_telemd(directory, sink, post_format, in_flight, loop)
                rows.append((post_format, in_flight, telemd, bare))
    finally:
        sink.stop()
    print(
        'telemd runs on uvloop when it is installed (event_loop = "auto"), else on'
        " asyncio's own loop;\nboth are measured, against the bare client on each loop."
    )
    print()
    print(
        "| format | in flight | telemd (uvloop) | bare httpx (asyncio) | ratio |"
        " telemd, asyncio's loop | ratio | bare httpx on uvloop | ratio, both on uvloop |"
        " telemd CPU s / 10k (uvloop; asyncio) | bare CPU s / 10k (asyncio; uvloop) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for post_format, in_flight, telemd, bare in rows:
        (fast, fast_cpu), (stock, stock_cpu) = telemd["uvloop"], telemd["asyncio"]
        (base, base_cpu), (base_uv, base_uv_cpu) = bare["asyncio"], bare["uvloop"]
        print(
            f"| {post_format} | {in_flight} | {fast:,.0f} | {base:,.0f} | {fast / base:.2f}x |"
            f" {stock:,.0f} | {stock / base:.2f}x | {base_uv:,.0f} | {fast / base_uv:.2f}x |"
            f" {fast_cpu * 10000:.2f}; {stock_cpu * 10000:.2f} |"
            f" {base_cpu * 10000:.2f}; {base_uv_cpu * 10000:.2f} |"
        )
    best = {
        fmt: max(row[2]["uvloop"][0] for row in rows if row[0] == fmt)
        for fmt in ("headers", "ndjson")
    }
    print(
        f"\nndjson / headers (best of 1 and 4 in flight, uvloop): "
        f"{best['ndjson'] / best['headers']:.1f}x"
    )


if __name__ == "__main__":
    main()
