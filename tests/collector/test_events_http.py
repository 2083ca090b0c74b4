"""The events routes over real HTTPS, on SQLite and PostgreSQL: shuttle, Vrooli, any app.

One collector per engine serves the module; each test keeps to its own
context ids, scenarios and apps, so tests do not see each other's events.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from access_tokens import make_token
from collector_proc import CollectorProcess
from events_clients import go_request, send_raw, shuttle_file

from telemd.collector.store.base import Store, open_engine

MiB = 1024 * 1024


@pytest.fixture
def client(server: CollectorProcess) -> Any:
    with server.client() as client:
        yield client


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def events(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/api/v1/events", params={"limit": 1000, **params})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["events"]
    return found


def host(server: CollectorProcess) -> str:
    return f"127.0.0.1:{server.port}"


# -- shuttle -----------------------------------------------------------------


def test_shuttle_availability_check_needs_nothing(server: CollectorProcess) -> None:
    status, _ = send_raw(server, go_request("GET", "/publish", host(server)))
    assert status == 200


def test_shuttle_upload_is_stored_and_listed_by_context(
    server: CollectorProcess, client: httpx.Client
) -> None:
    context = str(uuid.uuid4())
    body = shuttle_file(context)
    request = go_request("POST", "/publish", host(server), body, "application/json")
    status, answer = send_raw(server, request)
    assert status == 200, answer
    stored = events(client, context_id=context)
    assert [e["payload"] for e in reversed(stored)] == json.loads(body)
    assert {e["source"] for e in stored} == {"shuttle"}
    assert [e["timestamp"] for e in reversed(stored)] == [
        "2026-12-07T10:00:00.123456Z",
        "2026-12-07T09:00:01.500000Z",
    ]
    headers = client.get("/api/v1/events", params={"context_id": context}).json()
    assert headers["before"] is None


def test_a_nested_run_is_listed_with_its_parent(
    server: CollectorProcess, client: httpx.Client
) -> None:
    context = str(uuid.uuid4())
    for _ in range(2):  # the parent's file and the child's, posted in parallel by the uploader
        body = shuttle_file(context)
        status, _ = send_raw(
            server, go_request("POST", "/publish", host(server), body, "application/json")
        )
        assert status == 200
    runs = {e["payload"]["properties"]["shuttle.runID"] for e in events(client, context_id=context)}
    assert len(runs) == 2


def test_a_file_posted_twice_is_stored_once(server: CollectorProcess, client: httpx.Client) -> None:
    context = str(uuid.uuid4())
    body = shuttle_file(context)
    answers = [
        send_raw(server, go_request("POST", "/publish", host(server), body, "application/json"))
        for _ in range(2)
    ]
    assert [status for status, _ in answers] == [200, 200]
    assert json.loads(answers[1][1])["duplicates"] == 2
    assert len(events(client, context_id=context)) == 2


def test_shuttle_docs_single_object_is_taken(client: httpx.Client) -> None:
    context = str(uuid.uuid4())
    one = json.loads(shuttle_file(context))[0]
    response = client.post("/publish", json=one)
    assert response.status_code == 200, response.text
    assert len(events(client, context_id=context)) == 1


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'[{"app":"shuttle","timestamp":"x","properties":{}', "not valid JSON"),
        (b'[{"app":"shuttle","properties":"phase=start"}]', "'properties' must be an object"),
        (b'[{"app":7,"properties":{}}]', "'app' must be a string"),
        (b"[1]", "must be a JSON object"),
        (b'"x"', "JSON array of objects or one object"),
    ],
)
def test_bad_shuttle_bodies_are_refused_and_lose_nothing(
    client: httpx.Client, body: bytes, says: str
) -> None:
    context = str(uuid.uuid4())
    assert client.post("/publish", content=shuttle_file(context)).status_code == 200
    good_then_bad = body.replace(
        b'"properties":{}', f'"properties":{{"shuttle.contextID":"{context}"}}'.encode()
    )
    response = client.post("/publish", content=good_then_bad)
    assert response.status_code == 400
    assert says in response.json()["message"]
    assert len(events(client, context_id=context)) == 2


def test_a_bad_event_after_good_ones_stores_none_of_them(client: httpx.Client) -> None:
    context = str(uuid.uuid4())
    good = json.loads(shuttle_file(context))
    response = client.post("/publish", json=[*good, {"app": ["x"]}])
    assert response.status_code == 400
    assert response.json()["message"].startswith("event 3: ")
    assert events(client, context_id=context) == []


# -- Vrooli ------------------------------------------------------------------


def vrooli_summary(client: httpx.Client, scenario: str) -> dict[str, Any]:
    response = client.get("/api/v1/telemetry")
    assert response.status_code == 200, response.text
    summary = response.json()
    assert summary["total_scenarios"] == len(summary["scenarios"])
    (mine,) = [s for s in summary["scenarios"] if s["scenario"] == scenario]
    return dict(mine)


def test_vrooli_wrapper_with_query_is_accepted_and_filled(
    server: CollectorProcess, client: httpx.Client
) -> None:
    scenario = unique("picker-wheel")
    body = json.dumps(
        {
            "events": [
                {"event": "app_start", "timestamp": "2025-01-15T12:00:00Z", "details": {"v": "1"}},
                {"event": "migration_failed", "details": {"error": "disk full"}},
            ],
            "scenario_name": "ignored-the-query-wins",
            "deployment_mode": "bundled",
            "source": "desktop",
        }
    ).encode()
    target = f"/api/v1/telemetry/upload?scenario={scenario}&mode=desktop&source=runtime"
    status, answer = send_raw(
        server, go_request("POST", target, host(server), body, "application/json")
    )
    assert status == 200, answer
    assert json.loads(answer) == {"status": "accepted", "events_received": 2, "events_stored": 2}
    stored = {e["event"]: e["payload"] for e in events(client, scenario=scenario)}
    assert stored["app_start"]["timestamp"] == "2025-01-15T12:00:00Z"
    assert stored["migration_failed"]["timestamp"].endswith("Z")  # filled by the server
    assert {p["scenario_name"] for p in stored.values()} == {scenario}
    assert {p["deployment_mode"] for p in stored.values()} == {"desktop"}  # the query wins
    assert {p["source"] for p in stored.values()} == {"runtime"}


def test_vrooli_runtime_jsonl_and_its_summary(
    server: CollectorProcess, client: httpx.Client
) -> None:
    scenario = unique("shared-auth")
    lines = [
        {"ts": "2025-01-15T14:00:00Z", "event": "app_start", "details": {"version": "1.0.0"}},
        {"ts": "2025-01-15T14:25:00Z", "event": "dependency_unreachable",
         "details": {"service": "sqlite", "reason": "connection timeout"}},
        {"ts": "2025-01-15T14:30:00Z", "event": "ready", "details": {"startup_ms": 5000}},
    ]  # fmt: skip
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    target = f"/api/v1/telemetry/upload?scenario={scenario}"
    status, answer = send_raw(server, go_request("POST", target, host(server), body))
    assert status == 200, answer
    assert json.loads(answer)["events_stored"] == 3
    assert vrooli_summary(client, scenario) == {
        "scenario": scenario,
        "total_events": 3,
        "last_event": "2025-01-15T14:30:00Z",
        "failure_counts": {"dependency_unreachable": 1},
        "recent_failures": [
            {
                "timestamp": "2025-01-15T14:25:00Z",
                "event": "dependency_unreachable",
                "details": {"service": "sqlite", "reason": "connection timeout"},
            }
        ],
    }
    failures = events(client, scenario=scenario, level="error")
    assert [e["event"] for e in failures] == ["dependency_unreachable"]


def test_vrooli_docs_array_and_ndjson(client: httpx.Client) -> None:
    scenario = unique("docs")
    array = [{"scenario": scenario, "event": "app_start", "timestamp": "2025-01-15T12:00:00Z"}]
    assert client.post("/api/v1/telemetry/upload", json=array).status_code == 200
    line = json.dumps({"scenario": scenario, "event": "ready"}).encode() + b"\n"
    response = client.post(
        "/api/v1/telemetry/upload",
        content=line,
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert response.json() == {"status": "accepted", "events_received": 1, "events_stored": 1}
    assert vrooli_summary(client, scenario)["total_events"] == 2


def test_vrooli_body_over_4_mib_is_413_and_stores_nothing(client: httpx.Client) -> None:
    scenario = unique("big")
    line = json.dumps({"event": "x", "details": "y" * 1000}).encode() + b"\n"
    body = line * (4 * MiB // len(line) + 1)
    response = client.post(f"/api/v1/telemetry/upload?scenario={scenario}", content=body)
    assert response.status_code == 413
    assert "larger than" in response.json()["message"]
    assert events(client, scenario=scenario) == []


def test_vrooli_line_over_1_mib_is_refused(client: httpx.Client) -> None:
    line = json.dumps({"event": "x", "details": "y" * MiB}).encode()
    response = client.post("/api/v1/telemetry/upload", content=line + b"\n{}\n")
    assert response.status_code == 400
    assert "longer than 1048576 bytes" in response.json()["message"]


def test_vrooli_unknown_query_parameter_is_named(client: httpx.Client) -> None:
    response = client.post("/api/v1/telemetry/upload?scenaro=x", content=b"{}")
    assert response.status_code == 400
    assert response.json()["field"] == "scenaro"


# -- any app, and reading ----------------------------------------------------


def chaos_logbook(operations: int, failed: int) -> dict[str, Any]:
    history = [
        {"operation": f"Ensure rule {i}", "changed": i % 2 == 0, "success": i >= failed,
         "duration": 0.5, "stdout": "ok " * 40, "stderr": "", "retry_statistics": {
             "stdout": "", "stderr": "", "retry_attempts": 0, "max_retries": 0,
             "retry_succeeded": None}}
        for i in range(operations)
    ]  # fmt: skip
    counts = {
        "total_operations": operations,
        "changed_operations": operations // 2,
        "successful_operations": operations - failed,
        "failed_operations": failed,
    }
    return {
        "summary": {**counts, "status": "failed" if failed else "success", "total_duration": 3.7},
        "hosts": {"@local": {**counts, "duration": 3.7, "history": history}},
    }


def test_a_chaos_logbook_is_one_event_found_by_its_summary(client: httpx.Client) -> None:
    marker = unique("hostname")
    logbook = chaos_logbook(60, failed=2)
    logbook["hosts"] = {marker: logbook["hosts"]["@local"]}
    body = json.dumps(logbook, indent=4).encode()
    assert 10 * 1024 < len(body) < 100 * 1024
    # curl --data-binary @chaos_logbook.json sends form data's content type.
    response = client.post(
        "/api/v1/events",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["received"] == 1
    (found,) = events(client, q=marker)
    assert found["app"] == "chaos" and found["event"] == "logbook" and found["level"] == "error"
    assert found["payload"] == logbook
    assert found["payload"]["summary"]["failed_operations"] == 2


def test_app_events_ndjson_with_optional_fields_and_filters(client: httpx.Client) -> None:
    app = unique("myapp")
    lines = [
        {"app": app, "event": "login", "timestamp": "2026-01-01T00:00:00Z", "level": "INFO",
         "context_id": "ctx-1", "user": "ann"},
        {"app": app, "event": "crash", "timestamp": 1767225600.5, "level": "error",
         "trace": "boom"},
        {"app": app, "msg": "no other field", "timestamp": "2025-06-01T00:00:00Z"},
    ]  # fmt: skip
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    response = client.post(
        "/api/v1/events", content=body, headers={"Content-Type": "application/x-ndjson"}
    )
    assert response.json() == {"received": 3, "stored": 3, "duplicates": 0}
    assert [e["payload"] for e in reversed(events(client, app=app))] == lines
    assert [e["event"] for e in events(client, app=app, level="error")] == ["crash"]
    assert [e["level"] for e in events(client, app=app, context_id="ctx-1")] == ["info"]
    assert [e["event"] for e in events(client, app=app, since="2026-01-01T00:00:00.25Z")] == [
        "crash"
    ]
    assert [e["event"] for e in events(client, app=app, until="2026-01-01T00:00:00.25Z")] == [
        None,
        "login",
    ]
    assert [e["event"] for e in events(client, app=app, q="boom")] == ["crash"]


def test_keyset_pages_cover_everything_once(client: httpx.Client) -> None:
    app = unique("pages")
    body = json.dumps([{"app": app, "n": i} for i in range(25)]).encode()
    assert (
        client.post(
            "/api/v1/events", content=body, headers={"Content-Type": "application/json"}
        ).status_code
        == 200
    )
    seen: list[int] = []
    params: dict[str, Any] = {"app": app, "limit": 10}
    while True:
        page = client.get("/api/v1/events", params=params).json()
        seen += [e["payload"]["n"] for e in page["events"]]
        if page["before"] is None:
            break
        params["before"] = page["before"]
    assert seen == list(reversed(range(25)))
    tail = client.get("/api/v1/events", params={"app": app, "after": 0, "limit": 5}).json()
    assert [e["payload"]["n"] for e in tail["events"]] == [0, 1, 2, 3, 4]
    assert tail["after"] == tail["events"][-1]["id"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("since=yesterday", "since"),
        ("colour=red", "colour"),
        ("before=1&after=1", "after"),
        ("q=%ff", "q"),
    ],
)
def test_bad_filters_are_named(client: httpx.Client, query: str, field: str) -> None:
    response = client.get(f"/api/v1/events?{query}")
    assert response.status_code == 400
    assert response.json()["field"] == field


@pytest.mark.parametrize("text", ['"', "a OR", "NEAR(", "*", "x:y", "^a", "-b", "'"])
def test_search_text_is_words_never_syntax(client: httpx.Client, text: str) -> None:
    response = client.get("/api/v1/events", params={"q": text})
    assert response.status_code == 200, response.text


def test_reading_needs_a_token_and_wrong_types_are_refused(server: CollectorProcess) -> None:
    with server.client(token=None) as anonymous:
        assert anonymous.get("/api/v1/events").status_code == 401
        assert anonymous.get("/api/v1/telemetry").status_code == 401
        response = anonymous.post("/api/v1/events", json=[{"app": "a", "level": 3}])
        assert response.status_code == 400
        assert response.json()["message"] == "event 1: 'level' must be a string, got int"


@pytest.mark.parametrize(
    ("content_type", "body", "says"),
    [
        ("application/json", b'{"events": [', "not valid JSON"),
        ("application/json", b'{"events": {"event": "x"}}', "'events' must be a JSON array"),
        ("application/json", b'{"events": [], "scenario_name": 5}', "'scenario_name' must be"),
        ("application/json", b'[{"event": "x", "timestamp": {}}]', "'timestamp' must be"),
        ("application/x-ndjson", b'{"event": "a"}\n{"event": \n', "line 2 is not valid JSON"),
        ("application/x-ndjson", b'{"event": "a"}\n[1]\n', "event 2: must be a JSON object"),
        (None, b'{"event": ["a"]}\n', "'event' must be a string"),
    ],
)
def test_bad_vrooli_bodies_are_refused_and_lose_nothing(
    client: httpx.Client, content_type: str | None, body: bytes, says: str
) -> None:
    scenario = unique("bad")
    upload = f"/api/v1/telemetry/upload?scenario={scenario}"
    assert client.post(upload, content=b'{"event": "app_start"}\n').status_code == 200
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post(upload, content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert says in response.json()["message"]
    assert [e["event"] for e in events(client, scenario=scenario)] == ["app_start"]


def test_a_shuttle_body_over_4_mib_is_413_and_counted(client: httpx.Client) -> None:
    context = str(uuid.uuid4())
    one = json.loads(shuttle_file(context))[0]
    one["properties"]["error"] = "e" * 4096
    body = json.dumps([one] * (4 * MiB // 4096 + 1)).encode()
    response = client.post("/publish", content=body)
    assert response.status_code == 413
    assert "larger than 4194304 bytes" in response.json()["message"]
    assert events(client, context_id=context) == []
    assert client.post("/publish", content=b"[").status_code == 400
    metrics = client.get("/metrics").text
    assert 'telemd_collector_events_total{source="shuttle",result="rejected"}' in metrics


def test_a_token_in_the_url_is_never_stored(
    start_collector: Any, tls_files: tuple[str, str, str]
) -> None:
    proc = start_collector(tls=tls_files, args=["--ingest-auth", "token"])
    token = make_token(proc.db_url, "shuttle-ci", ["ingest"])
    body = shuttle_file(str(uuid.uuid4()))
    status, answer = send_raw(
        proc, go_request("POST", f"/publish/{token}", host(proc), body, "application/json")
    )
    assert status == 200, answer
    status, _ = send_raw(proc, go_request("POST", "/publish", host(proc), body, "application/json"))
    assert status == 401
    store = Store(open_engine(proc.db_url))
    try:
        with store.reading() as session:
            rows = session.fetch("SELECT CAST(headers AS TEXT) FROM streams")
    finally:
        store.close()
    (headers,) = [json.loads(row[0]) for row in rows]
    assert token not in json.dumps(headers)
    assert headers[":target"] == "/publish/***"
    assert headers["user-agent"] == "Go-http-client/1.1"
