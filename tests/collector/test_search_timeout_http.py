"""A search past its time limit, through a real collector on PostgreSQL: 400 with the reason.

The search is held behind another transaction's lock on its table (as in
test_search_timeout.py, which shortens the limit at the Store level); here the
collector runs as its own process with the limit it ships with, so the test
waits SEARCH_TIMEOUT_MS.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
import pytest
from collector_proc import BATCH_HEADERS, CollectorProcess, ndjson, new_id, record

from telemd.collector.store.search import SEARCH_TIMEOUT_MS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine() -> str:
    """SQLite's FTS5 search needs no limit: PostgreSQL alone."""
    return "postgresql"


def test_a_search_past_its_limit_answers_400_with_how_to_narrow_it(
    start_collector: Callable[..., CollectorProcess],
) -> None:
    server = start_collector()
    tag = new_id()[:12]
    with server.client() as client:
        stored = client.post(
            "/api/v1/records",
            headers=BATCH_HEADERS,
            content=ndjson([record(payload=f"usr bin signal {tag}")]),
        )
        assert stored.status_code == 200 and stored.json()["accepted"] == 1, stored.text
        search = {"q": f"signal {tag}"}
        with psycopg.connect(server.db_url) as locker:
            locker.execute("LOCK TABLE records IN ACCESS EXCLUSIVE MODE")
            began = time.monotonic()
            held = client.get("/api/records", params=search, timeout=SEARCH_TIMEOUT_MS / 1000 + 30)
            waited = time.monotonic() - began
            locker.rollback()
        assert held.status_code == 400, held.text
        message = held.json()["message"]
        assert f"took longer than {SEARCH_TIMEOUT_MS / 1000:g} s" in message, message
        assert "narrow it" in message, message
        assert waited >= SEARCH_TIMEOUT_MS / 1000 * 0.9
        # The lock gone, the same collector answers the same search.
        found = client.get("/api/records", params=search)
        assert found.status_code == 200, found.text
        assert [r["payload"] for r in found.json()["records"]] == [f"usr bin signal {tag}"]
        assert client.get("/healthz").status_code == 200
    assert "Traceback" not in server.log(), server.log()
