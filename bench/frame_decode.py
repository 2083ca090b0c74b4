#!/usr/bin/env python3
"""bench/frame_decode: what normalising a frame costs the daemon's decoding.

Decodes, in one run, a frame as telemd's clients write it (the baseline),
the same frame with a space in its classification (taken as is), and frames
Clear's clients send that telemd normalises: a payload with a NUL, a Latin-1
payload, a classification ending in a tab, an event id that is replaced.
Prints the median time a frame of each and the ratio against the baseline.

usage: python bench/frame_decode.py [--quick]
"""

from __future__ import annotations

import statistics
import sys
import time

from telemd.frame import decode_frame, encode_frame
from telemd.record import Record

FRAMES = 20_000
REPEATS = 3 if "--quick" in sys.argv else 15
PAYLOAD = "Process: /usr/bin/prog\nPID: 4242\nSignal: 11\n" + "#1 f() - [/usr/bin/prog]\n" * 20
EVENT_ID = "0123456789abcdef0123456789abcdef"


CLEAN = encode_frame(
    Record("org.clearlinux/crash/clr", 3, PAYLOAD, event_id=EVENT_ID, creation_timestamp=1754600896)
)


def variant(header: tuple[bytes, bytes] = (b"", b""), payload: bytes | None = None) -> bytes:
    """The clean frame with one header value or the payload changed, sizes redone."""
    header_size = int.from_bytes(CLEAN[4:8], "little")
    head = CLEAN[8 : 8 + header_size].replace(*header, 1)
    if payload is None:
        payload = CLEAN[8 + header_size : -1]
    body = len(head).to_bytes(4, "little") + head + payload + b"\0"
    return (4 + len(body)).to_bytes(4, "little") + body


CASES = {
    "baseline (clean frame)": CLEAN,
    "space in classification": variant((b"crash/clr\n", b"crash/clr probe\n")),
    "payload with a NUL": variant(payload=PAYLOAD.encode() + b"\0" + b"x" * 100),
    "Latin-1 payload": variant(payload=PAYLOAD.encode() + "caf\u00e9\n".encode("latin-1")),
    "classification ending in a tab": variant((b"crash/clr\n", b"crash/clr\t\n")),
    "event id replaced": variant((EVENT_ID.encode(), b"not-an-event-id-of-32-characters")),
}


def per_frame(data: bytes) -> float:
    start = time.perf_counter()
    for _ in range(FRAMES):
        decode_frame(data)
    return (time.perf_counter() - start) / FRAMES


def main() -> None:
    for data in CASES.values():
        decode_frame(data)  # compile the header pattern; check every case decodes
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(REPEATS):  # interleaved, so load on the machine falls on every case alike
        for name, data in CASES.items():
            times[name].append(per_frame(data))
    baseline = statistics.median(times["baseline (clean frame)"])
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"{name:<32} {median * 1e6:6.2f} us/frame  {median / baseline:5.2f}x")


if __name__ == "__main__":
    main()
