"""`telemd-collector import FILE`: load records exported by `telemctl spool export`.

For machines that never reach the collector: the file is what their spool
held, one record a line in the ndjson format. Each line is judged by the
same rules as a posted batch (ingest/records.py); a record id stored before
is skipped, so a file may be imported twice. The file is read a batch at a
time, never whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from telemd.collector import json_codec
from telemd.collector.ingest.records import FieldError, Row, Rules, parse_batch_line
from telemd.collector.store.base import Store

BATCH_LINES = 1000
# A record's payload is at most 8 KiB of text; a line this long is no record.
MAX_LINE = 1024 * 1024


@dataclass
class ImportReport:
    stored: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line, why)


def _lines(file: BinaryIO) -> Iterator[tuple[int, object]]:
    """(line number, decoded JSON or FieldError) of each line that is not blank."""
    for number, line in enumerate(iter(lambda: file.readline(MAX_LINE + 1), b""), 1):
        if len(line) > MAX_LINE:
            yield number, FieldError("line", f"is longer than {MAX_LINE} bytes")
            while line and not line.endswith(b"\n"):  # the rest of that line
                line = file.readline(MAX_LINE)
            continue
        if not line.strip():
            continue
        try:
            yield number, json_codec.loads(line)
        except ValueError as exc:
            yield number, FieldError("line", f"is not valid JSON: {exc}")


def import_records(
    store: Store, file: BinaryIO, *, tid: str, rules: Rules, now: float
) -> ImportReport:
    report = ImportReport()
    batch: dict[str, Row] = {}

    def flush() -> None:
        if batch:
            [stored] = store.write([list(batch.values())], now)
            report.stored += len(stored)
            report.duplicates += len(batch) - len(stored)
            batch.clear()

    for number, item in _lines(file):
        line = parse_batch_line(number, item, tid=tid, rules=rules, now=int(now))
        if line.row is None:
            report.rejected.append((number, line.message or "rejected"))
            continue
        record_id = str(line.record_id)
        if record_id in batch:
            report.duplicates += 1
            continue
        batch[record_id] = line.row
        if len(batch) >= BATCH_LINES:
            flush()
    flush()
    return report
