"""Benchmark what access control costs the collector: ingest with and without a token.

    python bench/collector_access.py [--records 4000] [--senders 8] [--rounds 3]

Two real collectors on SQLite (subprocesses, plain HTTP on 127.0.0.1), fed
the single-record "headers" format, where a check per request weighs most:
the baseline is open ingest without a token (Clear's backend's rule), the
measure `--ingest-auth token` with every request carrying an ingest token
(looked up by hash, cached for a second, its use noted once a minute).
Rounds alternate between the two; prints the median records/s of each and
the ratio. No per-client rate limit in either: one address sends it all.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests"), str(ROOT / "tests" / "collector")]

from access_tokens import make_token  # noqa: E402
from collector import make_records, send_all, single_requests  # noqa: E402
from collector_proc import CollectorProcess  # noqa: E402


def rate(proc: CollectorProcess, records: int, senders: int, token: str | None) -> float:
    requests = single_requests(make_records(records), "headers")
    if token is not None:
        auth = {"Authorization": f"Bearer {token}"}
        requests = [(path, {**headers, **auth}, body, n) for path, headers, body, n in requests]
    return records / send_all(proc.port, requests, senders)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=4000)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="telemd-bench-access-")
    unlimited = ["--ingest-rate-limit", "0"]
    open_ingest = CollectorProcess(f"sqlite:///{workdir}/open.db", workdir, args=unlimited)
    token_db = f"sqlite:///{workdir}/token.db"
    token = make_token(token_db, "bench", ["ingest"])
    with_token = CollectorProcess(token_db, workdir, args=[*unlimited, "--ingest-auth", "token"])
    baseline: list[float] = []
    measure: list[float] = []
    try:
        open_ingest.wait_ready()
        with_token.wait_ready()
        for _ in range(args.rounds):
            baseline.append(rate(open_ingest, args.records, args.senders, None))
            measure.append(rate(with_token, args.records, args.senders, token))
    finally:
        open_ingest.stop()
        with_token.stop()
    base, got = statistics.median(baseline), statistics.median(measure)
    print(f"collector access: {args.senders} senders, {args.records} records a round")
    print("| measure | records/s | baseline (open ingest) | ratio |")
    print("|---|---|---|---|")
    print(f"| headers format with an ingest token | {got:,.0f} | {base:,.0f} | {got / base:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
