"""What the running daemon reports about itself: `telemctl status`, sd_notify STATUS=.

Pure assembly of numbers the stages already keep; reading the oldest spooled
record is the only query, on the spool's read connection.
"""

from __future__ import annotations

import os
import time
from typing import Any

from telemd import __version__
from telemd.config import Settings
from telemd.daemon.delivery import Delivery
from telemd.daemon.intake import Intake
from telemd.daemon.spool import Spool


def snapshot(
    settings: Settings, intake: Intake, spool: Spool, delivery: Delivery, started: float
) -> dict[str, Any]:
    now = time.time()
    oldest = spool.oldest_received()
    counters = delivery.counters
    limiter = delivery.limiter
    return {
        "version": __version__,
        "pid": os.getpid(),
        "uptime": round(now - started, 1),
        "opted_in": os.path.exists(settings.opt_in_file),
        "server": settings.server,
        "delivery_enabled": settings.record_server_delivery_enabled,
        "post_format": settings.post_format,
        "spool": {
            "writer": spool.writer_state,
            "records": spool.depth,
            "bytes": spool.bytes,
            "limit_bytes": spool.max_bytes,
            "oldest_age": None if oldest is None else round(now - oldest, 1),
        },
        "intake": {
            "accepted": intake.accepted,
            "normalised": intake.journal.normalised,
            "refused": dict(intake.errors),
            "connections": intake.connections,
        },
        "delivery": {
            "fates": dict(counters.by_fate),
            "in_flight": delivery.in_flight,
            "consecutive_failures": counters.failures,
            "last_error": counters.last_error or None,
            "last_error_at": counters.last_error_at or None,
            "last_delivery_at": counters.last_delivery_at or None,
            "retry_at": counters.paused_until if counters.paused_until > now else None,
        },
        "rate_limit": {
            "enabled": settings.rate_limit_enabled,
            "strategy": settings.rate_limit_strategy,
            "records": [limiter.records.used, limiter.records.limit],
            "bytes": [limiter.bytes.used, limiter.bytes.limit],
        },
    }


def status_line(state: dict[str, Any]) -> str:
    """The one line systemd shows in `systemctl status telemd`."""
    spool = state["spool"]
    delivery = state["delivery"]
    delivered = delivery["fates"].get("delivered", 0)
    text = f"{spool['records']} records spooled; {delivered} delivered"
    if spool["writer"] != "running":
        text += f"; spool writer {spool['writer']}"
    if delivery["last_error"] and delivery["consecutive_failures"]:
        text += f"; last delivery failed: {delivery['last_error']}"
    return text
