"""What storing the payload's words costs PostgreSQL's ingest (migration 8).

    python bench/pg_words.py [--rows 20000] [--rounds 4]

Two databases on one throwaway server: one at schema 7 (the words only in
an expression GIN index) and one at schema 8 (the words stored in
`payload_words`, the GIN index on that column). Each round writes --rows
records into each through `Store.write`, the collector writer's path (5,000
rows a transaction at most, rollups and problems included), the two
alternating so that the machine's load weighs on both alike. Records are
bench/queries.py's: the probes' payloads, Zipf-drawn problems. Prints each
round's rows/s with the load average, then the means and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import queries

from telemd.collector.store.base import Store, open_engine

EXPRESSION_INDEX = 7
STORED_WORDS = 8


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    reason = queries.collector_pg.missing_reason()
    if reason:
        print(f"postgresql skipped: {reason}")
        return 0
    server = queries.collector_pg.start(durable=True)
    try:
        loaders: dict[str, queries.Loader] = {}
        for name, version in (("schema 7", EXPRESSION_INDEX), ("schema 8", STORED_WORDS)):
            store = Store(open_engine(server.create_database(name.replace(" ", ""))))
            store.migrate(version)
            loaders[name] = queries.Loader(store, 5000, 30, args.rows * args.rounds)
        rates: dict[str, list[float]] = {name: [] for name in loaders}
        for round_ in range(args.rounds):
            for name, loader in loaders.items():
                rate = loader.load_to(loader.loaded + args.rows)
                rates[name].append(rate)
                load = os.getloadavg()[0]
                print(f"round {round_}: {name} {rate:>9,.0f} rows/s (load {load:.1f})", flush=True)
        before, after = (statistics.mean(rates[name]) for name in loaders)
        ratio = after / before
        print(f"mean: schema 7 {before:,.0f} rows/s, schema 8 {after:,.0f} rows/s, {ratio:.2f}x")
        for loader in loaders.values():
            loader.store.close()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
