"""`telemctl journal`: the journal in Clear's columns, or as JSON lines.

Clear's line is `%-30s <Day YYYY-MM-DD HH:MM:SS TZ> record_id event_id boot_id`
(local time); telemd adds the record's fate as a last column, since its
journal holds every fate and not only deliveries. A `refused` entry (no
record id or event id: `-`) then names the sender's uid, how many refusals it
stands for and why; a `normalised` one says what was changed. `-V` adds a header line
and a closing `Total records: N`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterable
from datetime import datetime
from typing import TextIO

from telemd import journal
from telemd.cli.access import exists_readable
from telemd.config import Settings
from telemd.errors import TelemetryError

FOLLOW_INTERVAL = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--classification",
        metavar="CLASS",
        help="exact classification, or a prefix ending in /*",
    )
    parser.add_argument("-r", "--record-id", metavar="ID")
    parser.add_argument("-e", "--event-id", metavar="ID")
    parser.add_argument("-b", "--boot-id", metavar="ID")
    parser.add_argument(
        "-i",
        "--include-payload",
        action="store_true",
        help="print the retained payload after each record",
    )
    parser.add_argument(
        "-V", "--verbose", action="store_true", help="print a header line and the number of records"
    )
    parser.add_argument("--status", choices=journal.FATES, help="only records with this fate")
    parser.add_argument(
        "--since", type=parse_time, metavar="TIME", help="unix time, ISO 8601 date, or -N[smhd] ago"
    )
    parser.add_argument("--until", type=parse_time, metavar="TIME")
    parser.add_argument("-n", "--lines", type=int, metavar="N", help="only the last N records")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new records")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")  # fmt: skip


def parse_time(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    ago = text.removeprefix("-")  # "-1h" reads better, but argparse wants --since=-1h
    if ago[-1:] in units and ago[:-1].isdigit():
        return time.time() - int(ago[:-1]) * units[ago[-1]]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a unix time, an ISO 8601 date or N[smhd] ago"
        ) from None


def clear_time(stamp: float) -> str:
    """`Thu 2025-08-07 14:08:16 PDT`, in local time, as Clear prints it."""
    return time.strftime("%a %Y-%m-%d %H:%M:%S %Z", time.localtime(stamp))


def format_line(entry: journal.Entry) -> str:
    line = (
        f"{entry.classification or '-':<30} {clear_time(entry.time)} "
        f"{entry.record_id or '-'} {entry.event_id or '-'} {entry.boot_id} {entry.fate}"
    )
    if entry.fate == "refused":
        uid = "several" if entry.sender_uid is None else entry.sender_uid
        return f"{line} uid {uid}, {entry.count}x: {entry.message}"
    if entry.fate == "normalised":
        return f"{line}: {entry.message}"
    return line


def as_json(entry: journal.Entry) -> str:
    fields = {name: getattr(entry, name) for name in journal.Entry.__dataclass_fields__}
    if fields["payload"] is None:
        del fields["payload"]
    return json.dumps(fields)


def show(settings: Settings, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    path = os.path.join(settings.state_dir, journal.JOURNAL_FILE)
    if not exists_readable(path):
        print(f"telemctl: no journal at {path} yet", file=sys.stderr)
        return 1
    try:
        return _show(path, args, out)
    except sqlite3.Error as exc:  # such as its -wal or -shm file refused to this user
        raise TelemetryError(f"cannot read the journal {path}: {exc}") from None


def _show(path: str, args: argparse.Namespace, out: TextIO) -> int:
    where = journal.Filter(
        classification=args.classification,
        record_id=args.record_id,
        event_id=args.event_id,
        boot_id=args.boot_id,
        fate=args.status,
        since=args.since,
        until=args.until,
        limit=args.lines,
    )
    rows = journal.query(path, where, with_payload=args.include_payload)
    if args.verbose and not args.json:
        out.write(
            f"{'Classification':<30} {'Time stamp':<27} {'Record ID':<32} "
            f"{'Event ID':<32} {'Boot ID':<36} Fate\n"
        )
    _print(rows, args, out)
    if args.follow:
        last = rows[-1][0] if rows else 0
        try:
            while True:
                time.sleep(FOLLOW_INTERVAL)  # a follower polls, as tail -f does
                newer = journal.query(
                    path,
                    dataclasses.replace(where, after_id=last, limit=None),
                    with_payload=args.include_payload,
                )
                _print(newer, args, out)
                out.flush()
                if newer:
                    last = newer[-1][0]
        except KeyboardInterrupt:
            return 0
    if args.verbose and not args.json:
        out.write(f"Total records: {len(rows)}\n")
    return 0


def _print(
    rows: Iterable[tuple[int, journal.Entry]], args: argparse.Namespace, out: TextIO
) -> None:
    for _, entry in rows:
        if args.json:
            out.write(as_json(entry) + "\n")
            continue
        out.write(format_line(entry) + "\n")
        if args.include_payload and entry.payload is not None:
            out.write(entry.payload if entry.payload.endswith("\n") else entry.payload + "\n")
