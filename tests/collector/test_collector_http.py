"""The collector over real HTTPS, on SQLite and on PostgreSQL: ingest and limits.

One collector per engine serves the module (fixture `server`); each test
keeps to records it made (its own machine id), so tests do not see each other.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from collector_proc import (
    BATCH_HEADERS,
    CLEAR_TID,
    SECOND_TID,
    CollectorProcess,
    headers_request,
    json_request,
    ndjson,
    new_id,
    record,
)
from test_collector_ingest import BAD_FIELDS

MiB = 1024 * 1024


@pytest.fixture
def client(server: CollectorProcess) -> Any:
    with server.client() as client:
        yield client


def mine(**overrides: Any) -> dict[str, Any]:
    """A record of this test's own machine (ids are unique per call of `machine`)."""
    return record(**overrides)


def count(client: httpx.Client, machine_id: str) -> int:
    response = client.get("/api/records", params={"machine_id": machine_id, "limit": 1000})
    assert response.status_code == 200
    return len(response.json()["records"])


@pytest.mark.parametrize("path", ["/", "/v2/collector"])
def test_headers_format_is_stored_and_echoed(client: httpx.Client, path: str) -> None:
    rec = mine(machine_id=new_id(), severity="2", payload="crash\nPID: 1\n")
    headers, body = headers_request(rec)
    response = client.post(path, headers=headers, content=body)
    assert response.status_code == 201, response.text
    stored = response.json()
    assert isinstance(stored["id"], int)
    assert stored["record_id"] == rec["record_id"]
    assert stored["tid"] == CLEAR_TID
    assert stored["severity"] == 2 and stored["creation_timestamp"] == 1700000000
    assert stored["record_format_version"] == 4 and stored["payload_format_version"] == 1
    assert stored["payload"] == "crash\nPID: 1\n"
    assert stored["received_at"].endswith("Z")
    assert stored["build"] == '"12"'
    listed = client.get("/api/records", params={"machine_id": rec["machine_id"]}).json()
    assert listed["records"] == [stored]


@pytest.mark.parametrize("path", ["/", "/v2/collector"])
def test_json_format_is_stored(client: httpx.Client, path: str) -> None:
    rec = mine(machine_id=new_id(), severity=3, creation_timestamp=1700000123)
    headers, body = json_request(rec)
    response = client.post(path, headers=headers, content=body)
    assert response.status_code == 201, response.text
    assert response.json()["severity"] == 3
    assert response.json()["creation_timestamp"] == 1700000123


def test_single_record_retried_is_stored_once(client: httpx.Client) -> None:
    rec = mine(machine_id=new_id())
    first = client.post("/", headers=headers_request(rec)[0], content=b"hello\n")
    again = client.post("/", headers=json_request(rec)[0], content=json_request(rec)[1])
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert count(client, rec["machine_id"]) == 1


def test_record_id_in_the_json_body_counts_too(client: httpx.Client) -> None:
    rec = mine(machine_id=new_id())
    headers, _ = json_request(rec)
    del headers["X-Telemetry-Record-Id"]
    body = json.dumps(rec).encode()  # record_id as a field
    assert client.post("/", headers=headers, content=body).status_code == 201
    assert client.post("/", headers=headers, content=body).status_code == 200
    assert count(client, rec["machine_id"]) == 1


@pytest.mark.parametrize(("field", "value", "words"), BAD_FIELDS)
def test_every_rule_rejects_over_http(
    client: httpx.Client, field: str, value: Any, words: str
) -> None:
    rec = mine(machine_id=new_id())
    if value is None:
        del rec[field]
    else:
        rec[field] = value
    headers, body = json_request(rec)
    response = client.post("/", headers=headers, content=body)
    assert response.status_code in (400, 413), response.text
    assert response.json()["field"] == field
    assert response.json()["message"].startswith(field)


def test_headers_format_names_the_bad_header(client: httpx.Client) -> None:
    headers, body = headers_request(mine(severity="7"))
    response = client.post("/", headers=headers, content=body)
    assert response.status_code == 400
    assert response.json() == {"message": "severity: must be in 1..4, got 7", "field": "severity"}
    headers, body = headers_request(mine())
    del headers["Kernel-Version"]
    response = client.post("/", headers=headers, content=body)
    assert response.status_code == 400 and response.json()["field"] == "kernel_version"


@pytest.mark.parametrize("tid", [None, "00000000-0000-4000-8000-000000000000", "nonsense"])
def test_tid_not_accepted_is_refused(client: httpx.Client, tid: str | None) -> None:
    rec = mine(machine_id=new_id())
    for make in (headers_request, json_request):
        headers, body = make(rec)
        headers.pop("X-Telemetry-TID")
        if tid:
            headers["X-Telemetry-TID"] = tid
        response = client.post("/", headers=headers, content=body)
        assert response.status_code == 400 and response.json()["field"] == "tid"
    batch_headers = {k: v for k, v in BATCH_HEADERS.items() if k != "X-Telemetry-TID"}
    if tid:
        batch_headers["X-Telemetry-TID"] = tid
    response = client.post("/api/v1/records", headers=batch_headers, content=ndjson([rec]))
    assert response.status_code == 400 and response.json()["field"] == "tid"
    assert count(client, rec["machine_id"]) == 0


def test_every_configured_tid_is_accepted(client: httpx.Client) -> None:
    rec = mine(machine_id=new_id())
    headers, body = headers_request(rec, tid=SECOND_TID)
    response = client.post("/", headers=headers, content=body)
    assert response.status_code == 201 and response.json()["tid"] == SECOND_TID


def test_bad_record_id_header_is_refused(client: httpx.Client) -> None:
    headers, body = headers_request(mine(record_id="NOT-HEX"))
    response = client.post("/", headers=headers, content=body)
    assert response.status_code == 400 and response.json()["field"] == "record_id"


def post_batch(client: httpx.Client, body: bytes, **headers: str) -> httpx.Response:
    return client.post("/api/v1/records", headers={**BATCH_HEADERS, **headers}, content=body)


def test_batch_reports_each_line(client: httpx.Client) -> None:
    machine = new_id()
    good = [mine(machine_id=machine) for _ in range(3)]
    no_time = mine(machine_id=machine)
    del no_time["creation_timestamp"]
    bad = mine(machine_id=machine, arch="pdp11")
    body = ndjson([good[0], bad, good[1]]) + b"{oops\n\n" + ndjson([good[2], good[0], no_time])
    response = post_batch(client, body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["accepted"] == 4 and answer["duplicates"] == 1
    assert [r["line"] for r in answer["rejected"]] == [2, 4]
    assert "arch" in answer["rejected"][0]["message"]
    statuses = [(r["line"], r["status"]) for r in answer["results"]]
    assert statuses == [
        (1, "stored"), (2, "rejected"), (3, "stored"), (4, "rejected"),
        (6, "stored"), (7, "duplicate"), (8, "stored"),
    ]  # fmt: skip
    assert answer["results"][1]["record_id"] == bad["record_id"]
    assert answer["results"][3]["record_id"] is None
    assert answer["results"][0]["record_id"] == good[0]["record_id"]
    stored = client.get("/api/records", params={"machine_id": machine}).json()["records"]
    assert len(stored) == 4
    filled = next(r for r in stored if r["record_id"] == no_time["record_id"])
    assert filled["creation_timestamp"] > 1700000000


def test_batch_retried_stores_nothing_twice(client: httpx.Client) -> None:
    machine = new_id()
    body = ndjson([mine(machine_id=machine) for _ in range(50)])
    first = post_batch(client, body).json()
    second = post_batch(client, body).json()
    assert (first["accepted"], first["duplicates"]) == (50, 0)
    assert (second["accepted"], second["duplicates"]) == (0, 50)
    assert {r["status"] for r in second["results"]} == {"duplicate"}
    assert count(client, machine) == 50


def test_batch_as_json_array(client: httpx.Client) -> None:
    machine = new_id()
    body = json.dumps([mine(machine_id=machine), mine(machine_id=machine, event_id="x")])
    answer = post_batch(client, body.encode(), **{"Content-Type": "application/json"}).json()
    assert answer["accepted"] == 1 and answer["rejected"][0]["line"] == 2


def test_batch_needs_a_batch_content_type(client: httpx.Client) -> None:
    response = post_batch(client, ndjson([mine()]), **{"Content-Type": "text/plain"})
    assert response.status_code == 415


def test_body_of_4_mib_plus_one_is_413(client: httpx.Client) -> None:
    body = b" " * (4 * MiB + 1)
    assert post_batch(client, body).status_code == 413
    headers, _ = headers_request(mine())
    assert client.post("/", headers=headers, content=body).status_code == 413
    # Without a Content-Length (chunked), the limit holds all the same.
    chunked = client.post("/api/v1/records", headers=BATCH_HEADERS, content=iter([body]))
    assert chunked.status_code == 413
    assert client.get("/healthz").status_code == 200


def test_body_of_exactly_4_mib_is_taken(client: httpx.Client) -> None:
    machine = new_id()
    body = ndjson([mine(machine_id=machine, payload="p" * 30000) for _ in range(130)])
    body += b" " * (4 * MiB - len(body))
    response = post_batch(client, body)
    assert response.status_code == 200 and response.json()["accepted"] == 130


def test_batch_of_too_many_records_is_413(client: httpx.Client) -> None:
    response = post_batch(client, b"{}\n" * 10_001)
    assert response.status_code == 413
