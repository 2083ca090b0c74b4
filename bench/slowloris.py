"""Benchmark telemd-collector under slowloris: /healthz latency and how long slow connections stay.

    python bench/slowloris.py [--connections 1000] [--probes 500] [--header-timeout 10]

A real collector (subprocess, SQLite, plain HTTP on 127.0.0.1). First the
baseline: PROBES requests to /healthz, each on a new connection, with
nothing else going on. Then, in the same run and on the same collector,
CONNECTIONS connections open and trickle a request head one byte every
0.5 s (a tenth send nothing at all) while the same PROBES run again. Prints
/healthz latency (median, p99, max) for both and the ratio, then waits for
the collector to close the slow connections and prints how long each was
held against header_timeout.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / name) for name in ("", "collector", "faults")]

from collector_proc import CollectorProcess  # noqa: E402
from slow_clients import HEAD_START, Closings, Trickle, healthz_latencies, open_slow  # noqa: E402


def quantiles(latencies: list[float]) -> tuple[float, float, float]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return ordered[len(ordered) // 2] * 1000, p99 * 1000, ordered[-1] * 1000


def raise_descriptor_limit(connections: int) -> None:
    """Room for `connections` held open by this process and as many in the server's."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * connections + 512
    if hard != resource.RLIM_INFINITY and hard < wanted:
        raise SystemExit(f"needs {wanted} file descriptors; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--probes", type=int, default=500)
    parser.add_argument("--header-timeout", type=float, default=10.0)
    args = parser.parse_args()

    raise_descriptor_limit(args.connections)

    with tempfile.TemporaryDirectory() as tmp:
        return measure(args, Path(tmp))


def measure(args: argparse.Namespace, workdir: Path) -> int:
    server = CollectorProcess(
        f"sqlite:///{workdir / 'collector.db'}",
        str(workdir),
        args=["--header-timeout", str(args.header_timeout)],
    ).wait_ready()
    try:
        baseline = healthz_latencies(server.base_url, args.probes)
        silent = open_slow(server.port, args.connections // 10, b"")
        trickling = open_slow(server.port, args.connections - len(silent), HEAD_START)
        closings = Closings({**silent, **trickling}, timeout=args.header_timeout + 60)
        closings.start()
        trickle = Trickle(list(trickling))
        trickle.start()
        attacked = healthz_latencies(server.base_url, args.probes)
        closed_while_probing = len(closings.held)
        held = sorted(closings.wait().values())
        answered_408 = sum(data.startswith(b"HTTP/1.1 408 ") for data in closings.received.values())
        trickle.halt.set()
        trickle.join(10)
        for sock in closings.opened:
            sock.close()
    finally:
        server.stop()

    base, under = quantiles(baseline), quantiles(attacked)
    print(f"## /healthz, {args.probes} requests on new connections\n")
    print("| measure | no attack (ms) | during the attack (ms) | ratio |")
    print("|---|---|---|---|")
    for name, b, u in zip(("median", "p99", "max"), base, under, strict=True):
        print(f"| {name} | {b:.1f} | {u:.1f} | {u / b:.2f}x |")
    print(
        f"\n{args.connections} slow connections ({len(silent)} silent); closed while "
        f"/healthz was probed: {closed_while_probing}; closed by the collector: {len(held)} "
        f"({answered_408} answered 408), held "
        + (f"{held[0]:.2f}-{held[-1]:.2f} s" if held else "-")
        + f" (header_timeout {args.header_timeout:g} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
