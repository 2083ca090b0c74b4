"""The collector's read side and its robustness, over real HTTPS on both engines.

Query filters and keyset pages, the summary, /healthz and /metrics; hostile
HTTP that must get a 4xx and never a 500; eight concurrent senders; TLS.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import socket
import ssl
import time
from typing import Any

import httpx
import pytest
from collector_proc import BATCH_HEADERS, CollectorProcess, json_request, ndjson, new_id, record

MiB = 1024 * 1024


@pytest.fixture
def client(server: CollectorProcess) -> Any:
    with server.client() as client:
        yield client


def store(client: httpx.Client, records: list[dict[str, Any]]) -> None:
    response = client.post("/api/v1/records", headers=BATCH_HEADERS, content=ndjson(records))
    assert response.status_code == 200 and response.json()["accepted"] == len(records)


def fetch(client: httpx.Client, **params: Any) -> dict[str, Any]:
    response = client.get("/api/records", params=params)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_filters_of_telemetrics_backend(client: httpx.Client) -> None:
    machine = new_id()
    klass = f"org.test/{machine[:8]}/q"
    store(
        client,
        [
            record(machine_id=machine, classification=klass, severity="1", build="10"),
            record(machine_id=machine, classification=klass, severity="4", build="11"),
            record(machine_id=machine, severity="4", build="10"),
        ],
    )
    assert len(fetch(client, machine_id=machine)["records"]) == 3
    assert len(fetch(client, machine_id=machine, severity=4)["records"]) == 2
    assert len(fetch(client, classification=klass)["records"]) == 2
    both = fetch(client, classification=klass, severity=4, build="11")["records"]
    assert [r["build"] for r in both] == ["11"]
    assert len(fetch(client, machine_id=machine, created_in_sec=3600)["records"]) == 3
    assert len(fetch(client, machine_id=machine, created_in_days=1)["records"]) == 3
    assert fetch(client, machine_id=new_id())["records"] == []


def test_keyset_pages_newest_first(client: httpx.Client) -> None:
    machine = new_id()
    for _ in range(3):  # three requests, so three distinct received_at
        store(client, [record(machine_id=machine) for _ in range(5)])
    seen: list[int] = []
    page = fetch(client, machine_id=machine, limit=4)
    while True:
        ids = [r["id"] for r in page["records"]]
        assert ids == sorted(ids, reverse=True)
        seen += ids
        if page["next"] is None:
            break
        page = fetch(client, machine_id=machine, limit=4, before=page["next"])
    assert len(seen) == len(set(seen)) == 15
    assert seen == sorted(seen, reverse=True)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "1001"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"severity": "5"}, "severity"),
        ({"severity": "-1"}, "severity"),
        ({"created_in_days": "x"}, "created_in_days"),
        ({"created_in_sec": "1.5"}, "created_in_sec"),
        ({"before": "abc"}, "before"),
        ({"color": "red"}, "color"),
    ],
)
def test_bad_query_parameters_are_400(
    client: httpx.Client, params: dict[str, str], field: str
) -> None:
    response = client.get("/api/records", params=params)
    assert response.status_code == 400
    assert response.json()["field"] == field


def test_summary(client: httpx.Client) -> None:
    machine = new_id()
    klass = f"org.test/{machine[:8]}/summary"
    records = [
        record(machine_id=machine, classification=klass, severity=str(s)) for s in (1, 3, 4, 4)
    ]
    store(client, records)
    report = client.get("/api/v1/summary").json()
    entry = next(c for c in report["classifications"] if c["classification"] == klass)
    assert entry["total"] == 4
    assert entry["by_severity"] == {"1": 1, "3": 1, "4": 2}
    assert entry["last_seen"].endswith("Z")
    severe = entry["recent_severe"]
    assert [r["severity"] for r in severe] == [4, 4, 3]
    assert {r["record_id"] for r in severe} == {r["record_id"] for r in records[1:]}
    assert {"machine_id": machine, "count": 4} in report["machines"]
    later = client.get("/api/v1/summary", params={"since": "2999-01-01T00:00:00Z"}).json()
    assert later["classifications"] == [] and later["machines"] == []
    assert later["since"] == "2999-01-01T00:00:00.000Z"
    assert client.get("/api/v1/summary", params={"since": "soon"}).status_code == 400
    assert client.get("/api/v1/summary", params={"until": "1"}).status_code == 400


def test_healthz_and_metrics(client: httpx.Client) -> None:
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    store(client, [record(machine_id=new_id())])
    headers, body = json_request(record(severity="9"))
    client.post("/", headers=headers, content=body)
    text = client.get("/metrics").text
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")
    assert 'telemd_collector_records_total{format="ndjson",result="stored"}' in text
    assert 'telemd_collector_records_total{format="json",result="rejected"}' in text
    assert (
        'telemd_collector_request_duration_seconds_bucket{method="POST",route="/api/v1/records",le="+Inf"}'
        in text
    )
    assert "telemd_collector_storage_errors_total 0" in text


def raw_http(server: CollectorProcess, data: bytes) -> bytes:
    """Send bytes over TLS as they are; return whatever comes back."""
    context = ssl.create_default_context(cafile=server.tls[2] if server.tls else None)
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname="127.0.0.1") as tls,
    ):
        # The server may answer and close before the end: then read the answer.
        with contextlib.suppress(ssl.SSLError, OSError):
            tls.sendall(data)
        chunks = []
        while chunk := tls.recv(65536):
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks):
                break
        return b"".join(chunks)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"H%d: v\r\n" % i for i in range(5000))
        + b"\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nSeverity: \xff\xfe\r\nContent-Length: 0\r\n\r\n",
    ],
    ids=["request-line", "content-length", "huge-header", "many-headers", "binary-header"],
)
def test_malformed_http_gets_4xx(server: CollectorProcess, request_bytes: bytes) -> None:
    status = status_of(raw_http(server, request_bytes))
    assert 400 <= status < 500


@pytest.mark.parametrize(
    ("path", "headers", "body"),
    [
        ("/", {"Content-Type": "application/json"}, b"{not json"),
        ("/", {"Content-Type": "application/json"}, b"[]"),
        ("/", {"Content-Type": "application/json"}, b'{"severity": {"a": []}}'),
        ("/", {"Content-Type": "application/json"}, b"\xff\xfe\x00"),
        ("/", {"Content-Type": "application/json"}, b"[" * 50_000 + b"]" * 50_000),
        ("/", {"Content-Type": "application/json"}, b'{"payload": "\\ud800"}'),
        ("/", {}, b"\x00\x01\x02"),
        ("/api/v1/records", {"Content-Type": "application/json"}, b'{"a": 1}'),
        ("/api/v1/records", {"Content-Type": "application/json"}, b"[" * 50_000),
        ("/api/v1/records", {"Content-Type": "application/x-ndjson"}, b"\xff\n[1,\n"),
        ("/api/v1/records", {"Content-Type": "application/x-ndjson"}, b"1e999999\n"),
    ],
)
def test_hostile_bodies_never_500(
    client: httpx.Client, path: str, headers: dict[str, str], body: bytes
) -> None:
    headers = {"X-Telemetry-TID": BATCH_HEADERS["X-Telemetry-TID"], **headers}
    response = client.post(path, headers=headers, content=body)
    assert response.status_code < 500, response.text
    if path == "/":
        assert response.status_code == 400
        assert "message" in response.json()


def test_hostile_record_values_never_500(client: httpx.Client) -> None:
    hostile = [
        record(payload="\ud800"),
        record(machine_id="\udc80"),
        record(severity=10**30),
        record(creation_timestamp=str(10**30)),
        record(classification="a/b/" + "\u0000"),
        record(host_type="x" * 100_000),
    ]
    response = client.post("/api/v1/records", headers=BATCH_HEADERS, content=ndjson(hostile))
    assert response.status_code == 200, response.text
    assert [r["status"] for r in response.json()["results"]] == ["rejected"] * len(hostile)


def test_methods_and_paths(client: httpx.Client) -> None:
    assert client.get("/").status_code == 405
    assert client.get("/api/v1/records").status_code == 405
    assert client.post("/api/records").status_code == 405
    assert client.get("/nowhere").status_code == 404


def test_eight_concurrent_senders_lose_nothing(
    client: httpx.Client, server: CollectorProcess
) -> None:
    machine = new_id()
    batches = [[record(machine_id=machine) for _ in range(100)] for _ in range(32)]

    def send(batch: list[dict[str, Any]]) -> int:
        with server.client() as own:
            body = ndjson(batch)
            first = own.post("/api/v1/records", headers=BATCH_HEADERS, content=body).json()
            # Every batch is also retried at once: still stored only once.
            again = own.post("/api/v1/records", headers=BATCH_HEADERS, content=body).json()
            assert again["accepted"] == 0 and again["duplicates"] == len(batch)
            return int(first["accepted"])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        accepted = sum(pool.map(send, batches))
    assert accepted == 3200
    total = 0
    page = fetch(client, machine_id=machine, limit=1000)
    while True:
        total += len(page["records"])
        if page["next"] is None:
            break
        page = fetch(client, machine_id=machine, limit=1000, before=page["next"])
    assert total == 3200


def test_tls_requires_a_trusted_certificate(server: CollectorProcess) -> None:
    assert server.base_url.startswith("https://")
    with httpx.Client(base_url=server.base_url) as untrusting, pytest.raises(httpx.ConnectError):
        untrusting.get("/healthz")
    plain = server.base_url.replace("https://", "http://")
    with httpx.Client(base_url=plain) as cleartext, pytest.raises(httpx.HTTPError):
        cleartext.get("/healthz")


def test_plain_http_when_no_certificate(start_collector: Any) -> None:
    proc = start_collector()
    with proc.client() as client:
        assert client.get("/healthz").json()["status"] == "ok"


def test_storage_outage_is_503_and_counted(postgres: Any, new_db_url: Any, tmp_path: Any) -> None:
    """PostgreSQL only: a SQLite file cannot be taken away from a process that has it open."""
    url = new_db_url("postgresql")
    name = url.rsplit("/", 1)[1]
    import psycopg

    proc = CollectorProcess(url, str(tmp_path)).wait_ready()
    with (
        psycopg.connect(postgres.url(), autocommit=True) as admin,
        proc.client() as client,
        contextlib.closing(proc),
    ):
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        assert client.get("/healthz").status_code == 503
        headers, body = json_request(record())
        response = client.post("/", headers=headers, content=body)
        assert response.status_code == 503 and "storage" in response.json()["message"]
        assert "telemd_collector_storage_errors_total 0" not in client.get("/metrics").text
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        deadline = time.monotonic() + 10
        while client.get("/healthz").status_code != 200:
            assert time.monotonic() < deadline, "collector did not reconnect"
        assert client.post("/", headers=headers, content=body).status_code == 201
    assert proc.proc.returncode == 0


def test_retention_is_purged_on_schedule(
    start_collector: Any, engine: str, new_db_url: Any
) -> None:
    from telemd.collector.ingest import records as ingest
    from telemd.collector.store.base import Store, open_engine

    url = new_db_url(engine)
    seed = Store(open_engine(url))
    seed.migrate()
    tid = BATCH_HEADERS["X-Telemetry-TID"]
    rules = ingest.Rules(frozenset({tid}), 32768)
    expired, kept = record(), record(classification="org.test/kept/long")
    rows = [
        ingest.validate_record(r, r["payload"], tid=tid, record_id=r["record_id"], rules=rules)
        for r in (expired, kept)
    ]
    seed.write([rows], time.time() - 3 * 86400)  # received three days ago
    seed.close()
    proc = start_collector(
        db_url=url,
        args=[
            "--retention-days",
            "2",
            "--retention",
            "org.test/kept/long=5",
            "--purge-interval",
            "1",
        ],
    )
    with proc.client() as client:
        deadline = time.monotonic() + 10
        while fetch(client, classification=str(expired["classification"]))["records"]:
            assert time.monotonic() < deadline, "expired record not purged"
        (left,) = fetch(client, classification="org.test/kept/long")["records"]
        assert left["record_id"] == kept["record_id"]
    assert proc.stop() == 0  # SIGTERM drains and exits 0


def test_settings_from_a_toml_file_and_the_environment(start_collector: Any, tmp_path: Any) -> None:
    other = "22222222-3333-4444-8555-666666666666"
    config_file = tmp_path / "collector.toml"
    config_file.write_text(f'tid = ["{other}"]\nmax_payload_size = 10\n')
    proc = start_collector(
        env={"TELEMD_COLLECTOR_CONFIG": str(config_file), "TELEMD_COLLECTOR_LOG_LEVEL": "error"}
    )
    with proc.client() as client:
        headers, body = json_request(record(payload="short"), tid=other)
        assert client.post("/", headers=headers, content=body).status_code == 201
        headers, body = json_request(record(payload="far too long"), tid=other)
        response = client.post("/", headers=headers, content=body)
        assert response.status_code == 413 and response.json()["field"] == "payload"
        headers, body = json_request(record())  # Clear's id is no longer accepted
        assert client.post("/", headers=headers, content=body).status_code == 400
