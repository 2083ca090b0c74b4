"""`telemctl opt-in` and `opt-out`: the opt-in file, the services, the spool.

Opting out removes the opt-in file first, so the daemon refuses new records
at once; then stops the services; then purges what was waiting, so nothing
pending leaves the machine afterwards (`--keep-spool` keeps it).
"""

from __future__ import annotations

import os
import sys
import time

from telemd.cli import control_client, services
from telemd.cli.access import exists_readable
from telemd.config import Settings
from telemd.daemon.spool import SPOOL_FILE, purge_offline
from telemd.errors import DaemonUnavailable, TelemetryError
from telemd.journal import JOURNAL_FILE


def opt_in(settings: Settings, config_file: str | None, start: bool) -> int:
    path = settings.opt_in_file
    if os.path.exists(path):
        print("Already opted in.")
    else:
        try:
            os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
            with open(path, "x"):
                pass
        except OSError as exc:
            raise TelemetryError(f"cannot create {path}: {exc.strerror} (run as root)") from None
        print(f"Opted in ({path} created).")
    if start:
        return _services("start", config_file)
    return 0


def opt_out(settings: Settings, config_file: str | None, stop: bool, keep_spool: bool) -> int:
    path = settings.opt_in_file
    try:
        os.unlink(path)
        print(f"Opted out ({path} removed).")
    except FileNotFoundError:
        print("Already opted out.")
    except OSError as exc:
        raise TelemetryError(f"cannot remove {path}: {exc.strerror} (run as root)") from None
    status = _services("stop", config_file) if stop else 0
    if not keep_spool:
        purged = purge(settings)
        forget_retained(settings)
        print(f"Purged {purged} spooled records and the retained payloads.")
    return status


def purge(settings: Settings) -> int:
    """Purge through the running daemon, or directly when none runs."""
    try:
        return int(control_client.request(settings.control_socket_path, "purge")["purged"])
    except DaemonUnavailable:
        # A spool this user cannot see is not an empty one.
        exists_readable(os.path.join(settings.spool_dir, SPOOL_FILE))
        journal_path = os.path.join(settings.state_dir, JOURNAL_FILE)
        return purge_offline(
            settings.spool_dir, journal_path, settings.journal_max_entries, time.time()
        )


def forget_retained(settings: Settings) -> None:
    import sqlite3

    path = os.path.join(settings.state_dir, JOURNAL_FILE)
    if not os.path.exists(path):
        return
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute("DELETE FROM retained")
    finally:
        conn.close()


def _services(verb: str, config_file: str | None) -> int:
    try:
        failures = services.control(verb, config_file)
    except services.NoSystemd as exc:
        print(f"telemctl: {exc.message}", file=sys.stderr)
        return 1
    for failure in failures:
        print(f"telemctl: {failure}", file=sys.stderr)
    return 1 if failures else 0
