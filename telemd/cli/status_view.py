"""`telemctl status`: the daemon's own account, or what the files say when it is down."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from typing import Any, TextIO

from telemd.cli import control_client
from telemd.cli.journal_view import clear_time
from telemd.cli.spool_view import spool_path
from telemd.config import Settings
from telemd.errors import DaemonUnavailable


def offline_state(settings: Settings) -> dict[str, Any]:
    """What can be known without the daemon: opt-in and the spool on disk."""
    records, size, oldest = 0, 0, None
    path = spool_path(settings)
    if os.path.exists(path):
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            records, size, oldest = conn.execute(
                "SELECT count(*), coalesce(sum(size), 0), min(received_at) FROM records"
            ).fetchone()
        finally:
            conn.close()
    return {
        "running": False,
        "opted_in": os.path.exists(settings.opt_in_file),
        "server": settings.server,
        "spool": {
            "records": records,
            "bytes": size,
            "oldest_age": None if oldest is None else round(time.time() - oldest, 1),
        },
    }


def show(settings: Settings, as_json: bool, out: TextIO = sys.stdout) -> int:
    try:
        state = control_client.request(settings.control_socket_path, "status")
        state.pop("ok", None)
        state["running"] = True
    except DaemonUnavailable:
        state = offline_state(settings)
    if as_json:
        out.write(json.dumps(state) + "\n")
        return 0
    out.write(render(state))
    return 0


def _when(stamp: float | None) -> str:
    return clear_time(stamp) if stamp else "never"


def _intake(intake: dict[str, Any]) -> str:
    """`12 accepted (2 normalised), 3 refused (invalid 2, throttled 1)`."""
    text = f"{intake['accepted']} accepted"
    if intake.get("normalised"):
        text += f" ({intake['normalised']} normalised)"
    refused = intake["refused"]
    if not refused:
        return text + ", none refused"
    counts = ", ".join(f"{code} {count}" for code, count in sorted(refused.items()))
    return f"{text}, {sum(refused.values())} refused ({counts}; telemctl journal --status refused)"


def render(state: dict[str, Any]) -> str:
    spool = state["spool"]
    daemon = f"running, pid {state['pid']}" if state["running"] else "not running"
    lines = [
        f"Opted in:        {'yes' if state['opted_in'] else 'no'}",
        f"Daemon:          {daemon}",
        f"Server:          {state['server'] or '(none: records stay in the spool)'}",
        f"Spool:           {spool['records']} records, {spool['bytes']} bytes"
        + (f", oldest {spool['oldest_age']:.0f} s old" if spool["oldest_age"] is not None else ""),
    ]
    if state["running"]:
        lines.append(f"Spool writer:    {spool.get('writer', 'unknown')}")
        delivery = state["delivery"]
        fates = delivery["fates"]
        counts = ", ".join(
            f"{fate} {fates.get(fate, 0)}"
            for fate in ("delivered", "rejected", "dropped", "expired", "kept-local")
        )
        limit = state["rate_limit"]
        lines += [
            f"Since start:     {counts}",
            f"Intake:          {_intake(state['intake'])}",
            f"Last delivery:   {_when(delivery['last_delivery_at'])}",
            f"Last error:      {delivery['last_error'] or 'none'}"
            + (f" ({_when(delivery['last_error_at'])})" if delivery["last_error"] else ""),
            f"Next retry:      {_when(delivery['retry_at']) if delivery['retry_at'] else 'now'}",
            "Rate limit:      "
            + (
                f"{limit['records'][0]}/{limit['records'][1] or 'unlimited'} records, "
                f"{limit['bytes'][0]}/{limit['bytes'][1] or 'unlimited'} bytes, "
                f"strategy {limit['strategy']}"
                if limit["enabled"]
                else "off"
            ),
        ]
    return "\n".join(lines) + "\n"
