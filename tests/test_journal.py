"""The journal: append inside a transaction, bound, retain, query with Clear's filters."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from telemd import journal


def entry(
    number: int, fate: str = "delivered", classification: str = "org.clearlinux/crash/clr"
) -> journal.Entry:
    return journal.Entry(
        time=1000.0 + number,
        fate=fate,
        record_id=f"{number:032x}",
        classification=classification,
        severity=3,
        event_id=f"{number % 3:032x}",
        boot_id="boot-a" if number < 5 else "boot-b",
        creation_timestamp=900 + number,
        http_status=201 if fate == "delivered" else None,
        attempts=1,
        message="",
    )


def open_journal(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("ATTACH DATABASE ? AS journal", (str(path),))
    conn.executescript(journal.SCHEMA)
    return conn


def test_append_then_query_with_each_filter(tmp_path: Path) -> None:
    path = tmp_path / journal.JOURNAL_FILE
    conn = open_journal(path)
    entries = [entry(n, "delivered" if n % 2 else "rejected") for n in range(10)]
    entries.append(entry(10, classification="org.clearlinux/hello/world"))
    conn.execute("BEGIN")
    journal.append(conn, entries, max_entries=1000)
    conn.execute("COMMIT")
    conn.close()

    def ids(where: journal.Filter) -> list[int]:
        return [int(e.record_id, 16) for _, e in journal.query(str(path), where)]

    assert ids(journal.Filter()) == list(range(11))
    assert ids(journal.Filter(classification="org.clearlinux/hello/world")) == [10]
    assert ids(journal.Filter(classification="org.clearlinux/*")) == list(range(11))
    assert ids(journal.Filter(classification="org.clearlinux/crash")) == []
    assert ids(journal.Filter(record_id=f"{4:032x}")) == [4]
    assert ids(journal.Filter(event_id=f"{1:032x}")) == [1, 4, 7, 10]
    assert ids(journal.Filter(boot_id="boot-a")) == [0, 1, 2, 3, 4]
    assert ids(journal.Filter(fate="rejected")) == [0, 2, 4, 6, 8]
    assert ids(journal.Filter(since=1003, until=1005)) == [3, 4, 5]
    assert ids(journal.Filter(limit=3)) == [8, 9, 10]
    assert ids(journal.Filter(after_id=9)) == [9, 10]


def test_the_journal_stays_near_its_bound(tmp_path: Path) -> None:
    path = tmp_path / journal.JOURNAL_FILE
    conn = open_journal(path)
    for number in range(500):
        journal.append(conn, [entry(number)], max_entries=100)
    count = conn.execute("SELECT count(*) FROM journal.entries").fetchone()[0]
    assert 100 <= count <= 110
    newest = conn.execute("SELECT max(record_id) FROM journal.entries").fetchone()[0]
    assert newest == f"{499:032x}"


def test_retained_payloads_keep_the_latest(tmp_path: Path) -> None:
    path = tmp_path / journal.JOURNAL_FILE
    conn = open_journal(path)
    for number in range(5):
        journal.append(
            conn,
            [entry(number)],
            max_entries=100,
            retained=[(f"{number:032x}", 1000.0 + number, f"payload {number}")],
            retention_count=2,
        )
    conn.close()
    found = {
        int(e.record_id, 16): e.payload
        for _, e in journal.query(str(path), journal.Filter(), with_payload=True)
    }
    assert found == {0: None, 1: None, 2: None, 3: "payload 3", 4: "payload 4"}


def test_a_journal_of_an_older_daemon_gets_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / journal.JOURNAL_FILE
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE entries (id INTEGER PRIMARY KEY, time REAL NOT NULL, fate TEXT NOT NULL,"
        " record_id TEXT NOT NULL, classification TEXT NOT NULL, severity INTEGER NOT NULL,"
        " event_id TEXT NOT NULL, boot_id TEXT NOT NULL, creation_timestamp INTEGER NOT NULL,"
        " http_status INTEGER, attempts INTEGER NOT NULL, message TEXT NOT NULL DEFAULT '');"
        "INSERT INTO entries VALUES (1, 1000.0, 'delivered', 'r', 'a/b/c', 1, 'e', 'b', 9,"
        " 201, 1, '');"
    )
    old.close()
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("ATTACH DATABASE ? AS journal", (str(path),))
    journal.prepare(conn)
    journal.prepare(conn)  # and again: nothing to add
    refused = journal.Entry(
        time=1001.0,
        fate="refused",
        record_id="",
        classification="a/b/c",
        severity=0,
        event_id="",
        boot_id="b",
        creation_timestamp=0,
        http_status=None,
        attempts=0,
        message="invalid severity: severity: must be in 1..4",
        sender_uid=1000,
        count=12,
    )
    journal.append(conn, [refused], max_entries=100)
    conn.close()
    [(_, kept), (_, added)] = journal.query(str(path), journal.Filter())
    assert (kept.fate, kept.sender_uid, kept.count) == ("delivered", None, 1)
    assert added == refused
    assert [e for _, e in journal.query(str(path), journal.Filter(fate="refused"))] == [refused]
