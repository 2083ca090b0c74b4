"""Clients that attack telemd's intake, and the victim whose waits they measure.

Run as scripts, so that the attacker and the victim are processes of their
own (and the victim may run as another uid):

  python flooders.py attack SOCKET CONNECTIONS   pipeline records over CONNECTIONS
      connections; print "ready" once all are open, stop at EOF on stdin and
      print "<acknowledged> <refused> <connections the daemon closed>"
  python flooders.py idle SOCKET CONNECTIONS     open CONNECTIONS and send nothing;
      "ready" once open (or once connecting fails), then at EOF on stdin
      "<opened> <refused with an error> <closed without one>"
  python flooders.py victim SOCKET COUNT         send COUNT records one at a time,
      each on a connection of its own; print each acknowledgement's wait in seconds

bench/flood.py and tests/faults/test_floods.py share them.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WINDOW = 64


def _frame() -> bytes:
    from telemd.frame import encode_frame
    from telemd.record import Record

    return encode_frame(Record("org.example/flood/attack", 1, "x" * 200))


async def _attack(path: str, connections: int) -> None:
    frames = _frame() * WINDOW
    counts = {"OK": 0, "ERR": 0, "closed": 0}
    stop = asyncio.Event()

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while not stop.is_set():
                writer.write(frames)
                for _ in range(WINDOW):
                    line = await reader.readline()
                    if not line:
                        raise ConnectionResetError
                    counts["OK" if line.startswith(b"OK") else "ERR"] += 1
        except (ConnectionError, OSError):
            counts["closed"] += 1
        finally:
            writer.close()

    opened = []
    for _ in range(connections):
        try:
            opened.append(await asyncio.open_unix_connection(path))
        except OSError:
            break
    tasks = [asyncio.create_task(one(r, w)) for r, w in opened]
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    stop.set()
    await asyncio.wait(tasks, timeout=30) if tasks else None
    print(counts["OK"], counts["ERR"], counts["closed"], flush=True)


def _idle(path: str, connections: int) -> None:
    held = []
    for _ in range(connections):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # A blocking connect waits for room in a full listen queue (up to 5 s);
        # a non-blocking one would fail at once.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 5, 0))
        try:
            sock.connect(path)
        except OSError:
            sock.close()
            break
        held.append(sock)
    print("ready", flush=True)
    sys.stdin.read()
    refused = shed = 0
    for sock in held:
        sock.setblocking(False)
        try:
            first = sock.recv(4096)
        except BlockingIOError:
            first = None  # still open
        except OSError:
            first = b""  # reset
        refused += bool(first and first.startswith(b"ERR"))
        shed += first == b""
        sock.close()
    print(len(held), refused, shed, flush=True)


def _victim(path: str, count: int) -> None:
    from telemd.client import Client
    from telemd.record import Record

    for n in range(count):
        start = time.perf_counter()
        with Client(socket_path=path, timeout=30) as client:
            client.send(Record("org.example/flood/victim", 2, f"record {n}"))
        print(f"{time.perf_counter() - start:.6f}", flush=True)


class Attacker:
    """A flooding process (`attack` or `idle`), started and stopped by the caller."""

    def __init__(self, kind: str, socket_path: str, connections: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "flooders.py"), kind, socket_path, str(connections)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            self.proc.kill()
            raise RuntimeError(f"the {kind} flooder did not start")

    def stop(self) -> list[int]:
        """End the flood; the counts the flooder printed."""
        out, _ = self.proc.communicate("", timeout=60)
        return [int(n) for n in out.split()]


def victim_waits(socket_path: str, count: int, as_user: list[str]) -> list[float]:
    """Run the victim (under `as_user`, such as setpriv) and return its waits."""
    result = subprocess.run(
        [*as_user, sys.executable, str(HERE / "flooders.py"), "victim", socket_path, str(count)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the victim failed: {result.stderr}")
    return [float(line) for line in result.stdout.split()]


def main(argv: list[str]) -> None:
    kind, path, number = argv[0], argv[1], int(argv[2])
    if kind == "attack":
        asyncio.run(_attack(path, number))
    elif kind == "idle":
        _idle(path, number)
    else:
        _victim(path, number)


if __name__ == "__main__":
    main(sys.argv[1:])
