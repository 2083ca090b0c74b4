"""`telemd-collector events`: list, search and tail stored events.

Reads the database directly, as `query` does. `--follow` prints the latest
events oldest first, then polls for newer ones (keyset on id, so nothing is
printed twice or skipped) until interrupted.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any, TextIO

from telemd.collector.events.query import EventQuery, find_events, parse_event_query
from telemd.collector.ingest.records import FieldError
from telemd.collector.store.base import Store

# Command-line flag -> filter name of GET /api/v1/events.
FLAGS = {
    "source": "source",
    "app": "app",
    "scenario": "scenario",
    "event": "event",
    "context_id": "context_id",
    "level": "level",
    "since": "since",
    "until": "until",
    "search": "q",
    "limit": "limit",
    "before": "before",
}
FORMATS = ("table", "json", "jsonl")
DEFAULT_INTERVAL = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for flag in FLAGS:
        parser.add_argument("--" + flag.replace("_", "-"), metavar=flag.upper())
    parser.add_argument("--format", choices=FORMATS, default="table")
    parser.add_argument(
        "--follow", action="store_true", help="keep printing new events until interrupted"
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL,
        help="seconds between looks for new events with --follow (default 1)",
    )


def parse_args(args: argparse.Namespace) -> EventQuery:
    params = {
        name: str(getattr(args, flag))
        for flag, name in FLAGS.items()
        if getattr(args, flag) is not None
    }
    try:
        return parse_event_query(params)
    except FieldError as exc:
        flag = next(f for f, n in FLAGS.items() if n == exc.field)
        raise FieldError(flag, exc.message.removeprefix(exc.field + ": ")) from None


def row_of(event: dict[str, Any]) -> tuple[object, ...]:
    return (
        event["id"],
        event["timestamp"],
        event["source"],
        event["app"] or "-",
        event["event"] or "-",
        event["level"] or "-",
        event["context_id"] or "-",
    )


HEADER = ("ID", "TIME", "SOURCE", "APP", "EVENT", "LEVEL", "CONTEXT")


def _table(rows: Sequence[Sequence[object]], header: Sequence[str] | None) -> str:
    cells = [[str(v) for v in row] for row in ((header,) if header else ()) + tuple(rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def run(
    store: Store,
    args: argparse.Namespace,
    failures: Collection[str],
    out: TextIO,
    wait: Callable[[float], None] = time.sleep,
) -> None:
    query = parse_args(args)
    if not 0 < args.interval <= 3600:
        raise FieldError("interval", f"must be in 0..3600 seconds, got {args.interval}")
    events = find_events(store, query, failures)
    if not args.follow:
        more = events[-1]["id"] if len(events) == query.limit else None
        if args.format == "json":
            print(json.dumps({"events": events, "before": more}, indent=1), file=out)
        elif args.format == "jsonl":
            for event in events:
                print(json.dumps(event), file=out)
        elif events:
            print(_table([row_of(e) for e in events], HEADER), file=out)
            if more is not None:
                print(f"(more: --before {more})", file=out)
        return
    last = events[0]["id"] if events else 0
    _emit(list(reversed(events)), args.format, out, header=True)
    while True:
        wait(args.interval)
        newer = find_events(
            store,
            EventQuery(**{**_fields(query), "after": last, "before": None}),
            failures,
        )
        if newer:
            last = newer[-1]["id"]
            _emit(newer, args.format, out, header=False)


def _fields(query: EventQuery) -> dict[str, Any]:
    return {name: getattr(query, name) for name in EventQuery.__slots__}


def _emit(events: list[dict[str, Any]], fmt: str, out: TextIO, header: bool) -> None:
    if fmt == "table":
        if events or header:
            print(_table([row_of(e) for e in events], HEADER if header else None), file=out)
    else:
        for event in events:
            print(json.dumps(event), file=out)
    out.flush()
