"""What the daemon says about itself: the STATUS= line and `telemctl status`'s text,
for a writer that runs and one that has failed."""

from __future__ import annotations

from typing import Any

import pytest

from telemd.cli.status_view import render
from telemd.daemon.status import status_line


def state(writer: str) -> dict[str, Any]:
    return {
        "running": True,
        "pid": 4242,
        "opted_in": True,
        "server": "https://collector.example/v2/collector",
        "spool": {"writer": writer, "records": 3, "bytes": 300, "oldest_age": 1.0},
        "intake": {"accepted": 3, "refused": {}, "connections": 0},
        "delivery": {
            "fates": {"delivered": 7},
            "in_flight": 0,
            "consecutive_failures": 0,
            "last_error": None,
            "last_error_at": None,
            "last_delivery_at": None,
            "retry_at": None,
        },
        "rate_limit": {
            "enabled": False,
            "strategy": "spool",
            "records": [0, 1000],
            "bytes": [0, None],
        },
    }


@pytest.mark.parametrize(
    ("writer", "line", "shown"),
    [
        ("running", "3 records spooled; 7 delivered", "Spool writer:    running"),
        (
            "failed: SystemExit: gone",
            "3 records spooled; 7 delivered; spool writer failed: SystemExit: gone",
            "Spool writer:    failed: SystemExit: gone",
        ),
    ],
)
def test_the_writers_state_is_shown(writer: str, line: str, shown: str) -> None:
    assert status_line(state(writer)) == line
    assert shown in render(state(writer)).splitlines()


def test_status_counts_what_intake_refused_and_normalised() -> None:
    quiet = render(state("running"))
    assert "Intake:          3 accepted, none refused" in quiet
    busy = state("running")
    busy["intake"] = {
        "accepted": 12,
        "normalised": 2,
        "refused": {"throttled": 1, "invalid": 2},
        "connections": 0,
    }
    assert (
        "Intake:          12 accepted (2 normalised), 3 refused "
        "(invalid 2, throttled 1; telemctl journal --status refused)"
    ) in render(busy)
