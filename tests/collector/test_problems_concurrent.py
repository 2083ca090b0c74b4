"""Two collector processes on one PostgreSQL database count the same problems exactly.

Both ingest records of the same problems, machines, builds and day at the
same time, in batches that overlap in every key; afterwards every count
must equal what the records add up to, as no upsert may lose another's
update and no machine may be counted twice.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from collector_proc import BATCH_HEADERS, CollectorProcess, ndjson, new_id, record

SENDERS_PER_COLLECTOR = 3
BATCHES_PER_SENDER = 12
RECORDS_PER_BATCH = 40
BUILDS = ("200", "201")


def crash_payload(function: str, crashes: int) -> str:
    return (
        f"Process: /usr/bin/prog\nPID: 7\nSignal: 6\nName: prog\nCrashes: {crashes}\n\n"
        "Backtrace (TID 7):\n#0 raise() - [libc.so.6] +0x10\n#1 abort() - [libc.so.6] +0x20\n"
        f"#2 {function}() - [libfoo.so.1] +0x30\n#3 main() - [/usr/bin/prog] +0x40\n"
    )


def make_batch(machines: list[str], seed: int) -> list[dict[str, Any]]:
    """RECORDS_PER_BATCH records over every problem, machine and build."""
    records = []
    for i in range(RECORDS_PER_BATCH):
        n = seed * RECORDS_PER_BATCH + i
        records.append(
            record(
                classification="org.clearlinux/crash/clr",
                payload=crash_payload(f"fail_{n % 5}", 1 + n % 3),
                machine_id=machines[n % len(machines)],
                build=BUILDS[n % 2],
            )
        )
    return records


def test_two_collectors_count_every_problem_exactly(
    engine: str, start_collector: Callable[..., CollectorProcess], new_db_url: Callable[[str], str]
) -> None:
    if engine != "postgresql":
        pytest.skip("several collector processes share a database on PostgreSQL")
    db_url = new_db_url(engine)
    collectors = [start_collector(db_url=db_url), start_collector(db_url=db_url)]
    machines = [new_id() for _ in range(7)]
    jobs = [
        (collectors[s % 2], make_batch(machines, s * BATCHES_PER_SENDER + b))
        for s in range(2 * SENDERS_PER_COLLECTOR)
        for b in range(BATCHES_PER_SENDER)
    ]
    start = threading.Barrier(2 * SENDERS_PER_COLLECTOR)

    def send(sender: int) -> None:
        proc = collectors[sender % 2]
        mine = jobs[sender * BATCHES_PER_SENDER : (sender + 1) * BATCHES_PER_SENDER]
        with proc.client() as client:
            start.wait()
            for _, batch in mine:
                post(client, batch)

    with concurrent.futures.ThreadPoolExecutor(2 * SENDERS_PER_COLLECTOR) as pool:
        list(pool.map(send, range(2 * SENDERS_PER_COLLECTOR)))

    sent = [r for _, batch in jobs for r in batch]
    occurrences: Counter[str] = Counter()
    problem_machines: dict[str, set[str]] = {}
    build_records: Counter[str] = Counter()
    build_crashes: Counter[str] = Counter()
    for r in sent:
        function = r["payload"].split("#2 ", 1)[1].split("(", 1)[0]
        crashes = int(r["payload"].split("Crashes: ", 1)[1].split("\n", 1)[0])
        title = f"SIGABRT in {function}() [libfoo.so.1]"
        occurrences[title] += crashes
        problem_machines.setdefault(title, set()).add(r["machine_id"])
        build_records[r["build"]] += 1
        build_crashes[r["build"]] += crashes

    with collectors[1].client() as client:
        problems = get(client, "/api/v1/problems")["problems"]
        assert {p["title"]: p["occurrences"] for p in problems} == dict(occurrences)
        assert {p["title"]: p["machines"] for p in problems} == {
            t: len(m) for t, m in problem_machines.items()
        }
        assert {p["title"]: p["builds"] for p in problems} == {t: 2 for t in occurrences}
        for p in problems:
            detail = get(client, f"/api/v1/problems/{p['id']}")
            assert sum(d["occurrences"] for d in detail["days"]) == p["occurrences"]
            assert sum(b["occurrences"] for b in detail["builds"]) == p["occurrences"]
            assert sum(m["occurrences"] for m in detail["machines"]) == p["occurrences"]
        builds = {b["build"]: b for b in get(client, "/api/v1/builds")["builds"]}
        assert {b: builds[b]["records"] for b in BUILDS} == dict(build_records)
        assert {b: builds[b]["crashes"] for b in BUILDS} == dict(build_crashes)
        assert {b: builds[b]["machines"] for b in BUILDS} == {b: len(machines) for b in BUILDS}
        assert {b: builds[b]["problems"] for b in BUILDS} == {b: 5 for b in BUILDS}
        today = get(client, "/api/v1/overview")["days"][-1]
        assert today["machines"] == len(machines)
        assert today["records"] == {"crash": len(sent)}


def post(client: httpx.Client, records: list[dict[str, Any]]) -> None:
    response = client.post("/api/v1/records", headers=BATCH_HEADERS, content=ndjson(records))
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == len(records)


def get(client: httpx.Client, path: str) -> dict[str, Any]:
    response = client.get(path)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
