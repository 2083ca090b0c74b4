"""Benchmark telemd-collector beside TLS handshakes that never end: /healthz latency, and how
long the collector holds them.

    python bench/tls_handshakes.py [--connections 1000] [--probes 200] [--header-timeout 10]
                                   [--max-connections N]

A real collector (subprocess, SQLite, HTTPS with trustme certificates on
127.0.0.1). First the baseline: PROBES requests to /healthz over HTTPS, each
on a new connection, handshake included, with nothing else going on. Then,
in the same run and on the same collector, CONNECTIONS TCP connections that
never finish their handshake (one in ten sends half a ClientHello, the rest
nothing) while the same PROBES run again. Prints /healthz latency (median,
p99, max) for both and the ratio, then waits for the collector to close the
connections and prints how long each was held against header_timeout. With
--max-connections below CONNECTIONS, the longest handshakes are shed for the
newer ones instead.
"""

from __future__ import annotations

import argparse
import ssl
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / name) for name in ("", "collector", "faults")]

from collector_proc import CollectorProcess  # noqa: E402
from slow_clients import Closings, healthz_latencies, open_slow  # noqa: E402
from slowloris import quantiles, raise_descriptor_limit  # noqa: E402
from tls_hello import client_hello  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--header-timeout", type=float, default=10.0)
    parser.add_argument("--max-connections", type=int, default=4096)
    args = parser.parse_args()

    raise_descriptor_limit(args.connections)

    with tempfile.TemporaryDirectory() as tmp:
        return measure(args, Path(tmp))


def measure(args: argparse.Namespace, workdir: Path) -> int:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    tls_files = tuple(str(workdir / name) for name in ("cert.pem", "key.pem", "ca.pem"))
    cert.cert_chain_pems[0].write_to_path(tls_files[0])
    cert.private_key_pem.write_to_path(tls_files[1])
    ca.cert_pem.write_to_path(tls_files[2])
    context = ssl.create_default_context(cafile=tls_files[2])
    server = CollectorProcess(
        f"sqlite:///{workdir / 'collector.db'}",
        str(workdir),
        tls=(tls_files[0], tls_files[1], tls_files[2]),
        args=[
            "--header-timeout",
            str(args.header_timeout),
            "--max-connections",
            str(args.max_connections),
        ],
    ).wait_ready()
    try:
        baseline = healthz_latencies(server.base_url, args.probes, context)
        hello = client_hello()
        half = open_slow(server.port, args.connections // 10, hello[: len(hello) // 2])
        silent = open_slow(server.port, args.connections - len(half), b"")
        closings = Closings({**half, **silent}, timeout=args.header_timeout + 60)
        closings.start()
        attacked = healthz_latencies(server.base_url, args.probes, context)
        closed_while_probing = len(closings.held)
        held = sorted(closings.wait().values())
        for sock in closings.opened:
            sock.close()
    finally:
        server.stop()

    base, under = quantiles(baseline), quantiles(attacked)
    print(f"## /healthz over HTTPS, {args.probes} requests on new connections\n")
    print("| measure | no attack (ms) | during the attack (ms) | ratio |")
    print("|---|---|---|---|")
    for name, b, u in zip(("median", "p99", "max"), base, under, strict=True):
        print(f"| {name} | {b:.1f} | {u:.1f} | {u / b:.2f}x |")
    print(
        f"\n{args.connections} unfinished handshakes ({len(half)} half a ClientHello, "
        f"max_connections {args.max_connections}); closed while /healthz was probed: "
        f"{closed_while_probing}; closed by the collector: {len(held)}, held "
        + (f"{held[0]:.2f}-{held[-1]:.2f} s" if held else "-")
        + f" (header_timeout {args.header_timeout:g} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
