"""server/connections.py: the descriptor limit fitted to max_connections.

Each case runs in a child process, whose limits the test may lower for good.
The deadlines and the cap themselves are tested against a running collector
in tests/faults/test_slowloris.py.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import subprocess
import sys

import pytest

FIT = """
import logging, resource, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(message)s")
resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard}))
from telemd.collector.server.connections import fit_descriptor_limit
print(fit_descriptor_limit({wanted}))
print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


def fit(soft: int, hard: int, wanted: int) -> list[str]:
    code = FIT.format(soft=soft, hard=hard, wanted=wanted)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return result.stdout.splitlines()


def hard_limit() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 1 << 20 if hard == resource.RLIM_INFINITY else hard


def test_the_soft_limit_is_raised_to_what_the_connections_need() -> None:
    from telemd.collector.server.connections import DESCRIPTOR_RESERVE

    wanted = 4096 + DESCRIPTOR_RESERVE
    if hard_limit() < wanted:
        pytest.skip(f"needs a hard descriptor limit of {wanted}; it is {hard_limit()}")
    assert fit(256, hard_limit(), 4096) == ["4096", str(wanted)]


def test_a_hard_limit_too_low_lowers_the_cap_and_says_so() -> None:
    from telemd.collector.server.connections import DESCRIPTOR_RESERVE

    *warning, cap, soft = fit(256, 1024, 4096)
    assert (cap, soft) == (str(1024 - DESCRIPTOR_RESERVE), "1024")
    assert warning == [
        "max_connections 4096 does not fit the descriptor limit 1024 (LimitNOFILE=); "
        f"serving {1024 - DESCRIPTOR_RESERVE}"
    ]


def test_closings_are_logged_once_then_counted_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from telemd.collector.server.connections import ClosingLog

    async def scenario() -> list[str]:
        summary: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        class Watch(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if "more connections" in record.getMessage() and not summary.done():
                    summary.set_result(None)

        watch = Watch()
        logging.getLogger("telemd.collector").addHandler(watch)
        try:
            closing = ClosingLog(interval=0.05)
            for port in range(1000, 1004):
                closing.closed("request head not complete within 10 s", ("192.0.2.1", port))
            closing.closed("shed to stay within 5 connections", ("192.0.2.2", 1))
            await asyncio.wait_for(summary, 10)
        finally:
            logging.getLogger("telemd.collector").removeHandler(watch)
        return [r.getMessage() for r in caplog.records if r.name == "telemd.collector"]

    with caplog.at_level(logging.WARNING, "telemd.collector"):
        lines = asyncio.run(scenario())
    assert lines[:3] == [
        "closed a connection from ('192.0.2.1', 1000): request head not complete within 10 s",
        "closed a connection from ('192.0.2.2', 1): shed to stay within 5 connections",
        "closed 3 more connections in 0.05 s: request head not complete within 10 s",
    ]
