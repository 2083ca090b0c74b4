"""`telemctl spool list`, `show` and `export`: read the spool without disturbing it.

Opens the spool database read-only; the daemon keeps writing meanwhile (WAL
lets readers and the writer proceed together).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
from typing import Any, TextIO

from telemd.cli.access import exists_readable
from telemd.cli.journal_view import clear_time
from telemd.config import Settings
from telemd.daemon.spool import SPOOL_FILE
from telemd.errors import TelemetryError

_COLUMNS = (
    "r.seq, r.record_id, r.received_at, r.classification, r.severity, r.size, r.attempts,"
    " r.last_error, r.event_id, r.payload, r.sender_uid, r.sender_pid, h.machine_id, h.boot_id"
)
_NAMES = [column.strip().split(".")[1] for column in _COLUMNS.split(",")]


def spool_path(settings: Settings) -> str:
    return os.path.join(settings.spool_dir, SPOOL_FILE)


def _rows(settings: Settings, where: str = "", args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    path = spool_path(settings)
    if not exists_readable(path):
        return []
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM records r JOIN hosts h ON h.id = r.host_id {where}"
                " ORDER BY r.seq",
                args,
            ).fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:  # such as its -wal or -shm file refused to this user
        raise TelemetryError(f"cannot read the spool {path}: {exc}") from None
    return [dict(zip(_NAMES, row, strict=True)) for row in rows]


def list_records(settings: Settings, as_json: bool, out: TextIO = sys.stdout) -> int:
    rows = _rows(settings)
    for row in rows:
        if as_json:
            out.write(json.dumps({k: v for k, v in row.items() if k != "payload"}) + "\n")
            continue
        error = f"  last error: {row['last_error']}" if row["last_error"] else ""
        out.write(
            f"{row['record_id']}  {clear_time(row['received_at'])}  {row['classification']:<30}"
            f"  sev {row['severity']}  {row['size']:>6} B  attempts {row['attempts']}{error}\n"
        )
    if not as_json:
        out.write(f"{len(rows)} records, {sum(row['size'] for row in rows)} bytes\n")
    return 0


def show_record(settings: Settings, record_id: str, as_json: bool, out: TextIO = sys.stdout) -> int:
    rows = _rows(settings, "WHERE r.record_id = ?", (record_id,))
    if not rows:
        print(f"telemctl: no record {record_id} in the spool", file=sys.stderr)
        return 1
    [row] = rows
    if as_json:
        out.write(json.dumps(row) + "\n")
        return 0
    for name in _NAMES:
        if name != "payload":
            out.write(f"{name}: {row[name]}\n")
    out.write("payload:\n" + row["payload"] + ("" if row["payload"].endswith("\n") else "\n"))
    return 0


def export_records(settings: Settings, path: str, out: TextIO = sys.stdout) -> int:
    """`spool export --ndjson FILE`: what waits, as delivery's ndjson lines ("-": stdout).

    The file is written whole or not at all (a temporary file renamed into
    place), readable by its owner only: payloads may be private. The spool
    is left as it is; `telemd-collector import FILE` loads the file.
    """
    from telemd.daemon.spool import waiting_records
    from telemd.daemon.transport import ndjson_line

    source = spool_path(settings)
    if not exists_readable(source):
        records: list[str] = []
    else:
        try:
            conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
            try:
                records = [ndjson_line(record) + "\n" for record in waiting_records(conn)]
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise TelemetryError(f"cannot read the spool {source}: {exc}") from None
    if path == "-":
        out.writelines(records)
        return 0
    temporary = f"{path}.tmp-{os.getpid()}"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w", encoding="utf-8") as file:
            file.writelines(records)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise TelemetryError(f"cannot write {path}: {exc.strerror}") from None
    print(f"Exported {len(records)} records to {path}.", file=out)
    return 0
