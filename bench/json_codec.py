#!/usr/bin/env python3
"""bench/json_codec: the collector's JSON fallback against orjson, the fast path.

Parses a batch of 1000 ndjson records (the largest batch telemd sends) line
by line, as the collector's batch route does, with orjson and with the
standard library's json held to orjson's rules (what runs where orjson is
not installed, as on Debian 12); then writes a batch answer with each.
Prints the median of each and the ratio against orjson of the same run.

usage: python bench/json_codec.py [--quick]
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from telemd.collector import json_codec

RECORDS = 1000
REPEATS = 5 if "--quick" in sys.argv else 30


def batch() -> list[bytes]:
    record = {
        "record_format_version": "4", "classification": "org.clearlinux/crash/clr",
        "severity": "2", "machine_id": "0123456789abcdef0123456789abcdef",
        "creation_timestamp": "1700000000", "arch": "x86_64", "host_type": "QEMU|pc|q35",
        "build": "40000", "kernel_version": "6.1.0-13-amd64", "payload_format_version": "1",
        "system_name": "debian", "board_name": "b|v", "cpu_model": "Intel(R) Xeon(R) CPU",
        "bios_version": "1.16.2", "event_id": "eb4d9b1a19f24311b83dfd56717c5910",
        "payload": "Process: /usr/bin/x\nSignal: 11\n" + "#0 0x0000 in f () from /lib/x.so\n" * 40,
    }  # fmt: skip
    return [json.dumps({**record, "record_id": uuid.uuid4().hex}).encode() for _ in range(RECORDS)]


def median_ms(work: Callable[[], Any]) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    lines = batch()
    answer = {"accepted": RECORDS, "rejected": [{"line": n, "message": "x"} for n in range(100)]}
    rows = [
        (
            "parse a batch of 1000 records",
            lambda: [orjson.loads(line) for line in lines],
            lambda: [json_codec.stdlib_loads(line) for line in lines],
        ),
        (
            "write 100 batch answers",
            lambda: [orjson.dumps(answer) for _ in range(100)],
            lambda: [json_codec.stdlib_dumps(answer) for _ in range(100)],
        ),
    ]
    print(f"{'measure':32} {'orjson ms':>10} {'json ms':>10} {'ratio':>7}")
    for name, with_orjson, with_json in rows:
        fast, slow = median_ms(with_orjson), median_ms(with_json)
        print(f"{name:32} {fast:10.2f} {slow:10.2f} {slow / fast:6.1f}x")


if __name__ == "__main__":
    main()
