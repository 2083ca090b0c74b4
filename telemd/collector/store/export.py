"""A query's whole result as CSV or NDJSON, one page of rows at a time.

Pure formatting: the caller fetches pages (keyset, newest first) and writes
what `encode` returns, so an export of any size holds one page in memory.
CSV has one header line, then one line per record with the API's field
names and values; a payload's line breaks stay inside its quoted field.
CSV is what spreadsheets open, and any machine may send a payload that
reads `=HYPERLINK(...)`: a text cell that a spreadsheet would take for a
formula (first character = + - @, tab or carriage return) gets a leading
`'`, as OWASP advises. NDJSON has one record JSON per line, every value
exactly as stored.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from telemd.collector import json_codec
from telemd.collector.store.query import SELECT_COLUMNS, RecordQuery, record_json

EXPORT_FORMATS = ("csv", "ndjson")
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "ndjson": "application/x-ndjson"}
PAGE_ROWS = 1000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def first_page(query: RecordQuery) -> RecordQuery:
    return replace(query, limit=PAGE_ROWS)


def next_page(query: RecordQuery, rows: Sequence[Sequence[Any]]) -> RecordQuery | None:
    """The query of the page after `rows`, or None when `rows` was the last."""
    if len(rows) < query.limit:
        return None
    return replace(query, before=int(rows[-1][0]))


def header(fmt: str) -> bytes:
    return _csv_lines([SELECT_COLUMNS]) if fmt == "csv" else b""


def encode(fmt: str, rows: Sequence[Sequence[Any]]) -> bytes:
    records = [record_json(row) for row in rows]
    if fmt == "csv":
        return _csv_lines([[_cell(record[name]) for name in SELECT_COLUMNS] for record in records])
    return b"".join(json_codec.dumps(record) + b"\n" for record in records)


def _cell(value: Any) -> Any:
    """A value as a spreadsheet cell that is never a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _csv_lines(rows: Sequence[Sequence[Any]]) -> bytes:
    text = io.StringIO()
    csv.writer(text, lineterminator="\r\n").writerows(rows)
    return text.getvalue().encode("utf-8")
