#!/usr/bin/env python3
"""bench/flood: how long one uid waits for its acknowledgements while another floods.

uid 65534 (the victim, through setpriv) sends records one at a time, a
connection each, while root holds 0, 100 or 1,000 connections that pipeline
records in windows of 64 as fast as the daemon answers; then while root
holds 3,000 idle connections against a daemon whose descriptor limit is
600. Prints the victim's worst and median acknowledgement wait for each,
and the ratio of each to the no-flood baseline of the same run. The flood
runs with the default per-uid budget (root is throttled, as an attacker
would be) and with the budget off (every frame root sends is stored).

Needs root and setpriv (a second uid is the point) and prlimit.

usage: python bench/flood.py [--quick]
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "faults")]

from daemon_harness import AS_NOBODY, DaemonHarness  # noqa: E402
from flooders import Attacker, victim_waits  # noqa: E402

QUICK = "--quick" in sys.argv
VICTIM_RECORDS = 30 if QUICK else 100
FLOODS = (0, 100, 1000)
IDLE_CROWD = 3000
LOW_NOFILE = 600


def measure(harness: DaemonHarness, kind: str, connections: int) -> list[float]:
    attacker = Attacker(kind, harness.socket, connections) if connections else None
    try:
        return victim_waits(harness.socket, VICTIM_RECORDS, AS_NOBODY)
    finally:
        if attacker is not None:
            attacker.stop()


def daemon(
    public: Path, name: str, wrapper: tuple[str, ...] = (), **settings: object
) -> DaemonHarness:
    directory = public / name
    harness = DaemonHarness(directory)
    directory.chmod(0o755)  # the victim reaches the socket through it
    harness.socket = str(directory / "telem-0")
    harness.write_config(
        socket_path=harness.socket, log_level="info", spool_max_size=-1, **settings
    )
    harness.start(wrapper=wrapper)
    return harness


def row(name: str, waits: list[float], baseline: list[float]) -> str:
    worst, median = max(waits), statistics.median(waits)
    return (
        f"| {name} | {worst * 1000:.1f} | {median * 1000:.2f} "
        f"| {worst / max(baseline):.1f}x | {median / statistics.median(baseline):.1f}x |"
    )


def main() -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None or shutil.which("prlimit") is None:
        raise SystemExit("bench/flood.py needs root, setpriv and prlimit (to act as a second uid)")
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, IDLE_CROWD + 500)), hard))
    public = Path(tempfile.mkdtemp(prefix="telemd-flood-", dir="/tmp"))
    public.chmod(0o755)
    print(f"victim: {VICTIM_RECORDS} records from uid 65534, one connection each, one at a time")
    print("| flood | victim worst ack (ms) | median (ms) | worst / no flood | median / no flood |")
    print("|---|---|---|---|---|")
    try:
        for budget in (1000, -1):
            harness = daemon(public, f"budget{budget}", uid_records_per_minute=budget)
            try:
                label = "budget 1000/min" if budget > 0 else "budget off"
                baseline = measure(harness, "attack", 0)
                for connections in FLOODS:
                    waits = measure(harness, "attack", connections) if connections else baseline
                    print(row(f"{connections} pipelining connections, {label}", waits, baseline))
            finally:
                harness.stop()
        harness = daemon(
            public,
            "descriptors",
            wrapper=("prlimit", f"--nofile={LOW_NOFILE}:{LOW_NOFILE}", "--"),
            max_clients=4096,
        )
        try:
            baseline = measure(harness, "idle", 0)
            waits = measure(harness, "idle", IDLE_CROWD)
            name = f"{IDLE_CROWD} idle connections, RLIMIT_NOFILE {LOW_NOFILE}"
            print(row(name, waits, baseline))
        finally:
            harness.stop()
    finally:
        shutil.rmtree(public, ignore_errors=True)


if __name__ == "__main__":
    main()
