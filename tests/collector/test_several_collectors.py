"""Two collector processes on one database, ingesting the same records at once.

Every count must be exact: the summary's rollups are upserts that add, so
no update is lost between processes, and a record sent to both is counted once.
"""

from __future__ import annotations

import concurrent.futures
import random
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from collector_proc import BATCH_HEADERS, CollectorProcess, ndjson, new_id, record

SENDERS_PER_PROCESS = 3
BATCHES = 12
BATCH = 150


def make_batches(seed: int) -> list[list[dict[str, Any]]]:
    rng = random.Random(seed)
    machines = [new_id() for _ in range(40)]
    return [
        [
            record(
                classification=f"org.test/c{rng.randrange(5)}/x",
                severity=str(rng.randint(1, 4)),
                machine_id=rng.choice(machines),
            )
            for _ in range(BATCH)
        ]
        for _ in range(BATCHES)
    ]


def send_all(proc: CollectorProcess, batches: list[list[dict[str, Any]]]) -> int:
    accepted = 0
    with proc.client() as client:
        for batch in batches:
            response = client.post("/api/v1/records", headers=BATCH_HEADERS, content=ndjson(batch))
            assert response.status_code == 200, response.text
            accepted += response.json()["accepted"]
    return accepted


def database_records(proc: CollectorProcess) -> dict[str, int]:
    with proc.client() as client:
        text = client.get("/metrics").text
    return dict(re.findall(r'telemd_collector_database_records\{severity="(\d)"\} (\d+)', text))


def test_two_processes_count_exactly(start_collector: Callable[..., CollectorProcess]) -> None:
    first = start_collector()
    second = start_collector(db_url=first.db_url)
    batches = make_batches(seed=7)
    # Each batch goes to both processes, twice to each, by senders running at once.
    jobs = [(proc, batches[i::SENDERS_PER_PROCESS]) for proc in (first, second)
            for i in range(SENDERS_PER_PROCESS)] * 2  # fmt: skip
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        accepted = sum(pool.map(lambda job: send_all(*job), jobs))
    records = [rec for batch in batches for rec in batch]
    assert accepted == len(records)  # each stored once, the other copies duplicates

    by_class = Counter((r["classification"], r["severity"]) for r in records)
    by_machine = Counter(r["machine_id"] for r in records)
    for proc in (first, second):
        with proc.client() as client:
            report = client.get("/api/v1/summary").json()
            exported = client.get("/api/records", params={"format": "ndjson"}).text
        assert {
            (entry["classification"], severity): n
            for entry in report["classifications"]
            for severity, n in entry["by_severity"].items()
        } == by_class
        assert {m["machine_id"]: m["count"] for m in report["machines"]} == by_machine
        assert len(exported.splitlines()) == len(records)
        by_severity = Counter(r["severity"] for r in records)
        assert database_records(proc) == {s: str(n) for s, n in by_severity.items()}
