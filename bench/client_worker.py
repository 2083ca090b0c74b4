"""A sending process for bench/intake.

usage: client_worker.py SOCKET MODE COUNT
MODE `connect`: a connection per record, each waits for its OK (telem-record-gen's way).
MODE `wait`: one connection, each frame waits for its OK before the next.
MODE `pipeline`: one connection, frames written in windows of 256, replies read after.
Prints "ready", waits for a line on stdin, sends, prints the seconds taken.
"""

from __future__ import annotations

import sys
import time

from telemd.client import Client
from telemd.frame import encode_frame
from telemd.record import Record

WINDOW = 256


def main() -> None:
    path, mode, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    frame = encode_frame(Record("org.example/bench/intake", 2, "x" * 200 + "\n"))
    client = Client(socket_path=path, timeout=60)
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.perf_counter()
    if mode == "connect":
        for _ in range(count):
            with Client(socket_path=path, timeout=60) as one:
                one.write_frames([frame])
                one.read_reply()
    elif mode == "wait":
        for _ in range(count):
            client.write_frames([frame])
            client.read_reply()
    else:
        sent = 0
        while sent < count:
            window = min(WINDOW, count - sent)
            client.write_frames([frame] * window)
            for _ in range(window):
                client.read_reply()
            sent += window
    print(f"{time.perf_counter() - start:.6f}", flush=True)
    client.close()


if __name__ == "__main__":
    main()
