"""The console's doors: sessions, CSRF, revocation, the redirect at /, hostile input.

Real collectors over real HTTP(S) on SQLite and PostgreSQL; logins through
the same form a browser posts.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable

import httpx
import probe_payloads
import pytest
from access_tokens import make_token
from collector_proc import CollectorProcess, headers_request, json_request, new_id, record
from console_client import csrf_of, log_in

from telemd.collector.access.guard import FAILURE_BURST, Access
from telemd.collector.cli import main as collector_main
from telemd.collector.console.routes import CONSOLE_ROUTES

Start = Callable[..., CollectorProcess]
LOGIN = "/console/login"


def page_paths(record_id: str, machine_id: str, problem_id: int = 1) -> list[str]:
    """Every page behind a session, its path parameters filled in."""
    return [
        route.path.replace("{record_id}", record_id)
        .replace("{machine_id}", machine_id)
        .replace("{problem_id}", str(problem_id))
        for route in CONSOLE_ROUTES
        if route.access is Access.SESSION and "GET" in (route.methods or ())
    ]


def store_one(proc: CollectorProcess, **fields: str) -> dict[str, str]:
    rec = record(machine_id=new_id(), **fields)
    headers, body = json_request(rec)
    with proc.client(token=None) as client:
        assert client.post("/", headers=headers, content=body).status_code == 201
    return rec


def test_pages_need_a_session_and_a_token_alone_does_not_open_them(start_collector: Start) -> None:
    proc = start_collector()
    rec = store_one(proc)
    paths = page_paths(rec["record_id"], rec["machine_id"])
    assert len(paths) >= 8
    forged = {"telemd_session": "x" * 43}
    for token in (None, proc.token):
        with proc.client(token=token) as client:
            for path in paths:
                for cookies in ({}, forged):
                    client.cookies.clear()
                    client.cookies.update(cookies)
                    answer = client.get(path)
                    assert answer.status_code == 303, f"{path}: {answer.status_code}"
                    assert answer.headers["location"] == LOGIN
                    assert rec["record_id"] not in answer.text


def test_login_sets_a_strict_httponly_secure_cookie_and_opens_every_page(
    start_collector: Start, tls_files: tuple[str, str, str]
) -> None:
    proc = start_collector(tls=tls_files)
    classification, payload = probe_payloads.failed_unit()
    rec = store_one(proc, classification=classification, severity="3", payload=payload)
    with proc.client() as api:
        [problem] = api.get("/api/v1/problems").json()["problems"]
    reader = make_token(proc.db_url, "reader", ["read"])
    with proc.client(token=None) as client:
        answer = log_in(client, reader)
        assert answer.status_code == 303 and answer.headers["location"] == "/console/"
        cookie = next(
            v for k, v in answer.headers.multi_items() if v.startswith("telemd_session=")
        ).lower()
        for flag in ("httponly", "samesite=strict", "secure", "path=/console"):
            assert flag in cookie, cookie
        for path in page_paths(rec["record_id"], rec["machine_id"], problem["id"]):
            page = client.get(path)
            assert page.status_code == 200, f"{path}: {page.text[:300]}"
            if page.headers["content-type"].startswith("text/html"):
                assert "script-src" not in page.headers["content-security-policy"]
                assert "default-src 'none'" in page.headers["content-security-policy"]
    assert reader not in proc.log()


def test_login_refuses_a_missing_or_foreign_csrf_token(start_collector: Start) -> None:
    proc = start_collector()
    reader = make_token(proc.db_url, "reader", ["read"])
    with proc.client(token=None) as client:
        form = client.get(LOGIN)
        mine = csrf_of(form.text)
        # Another site's form can neither read our cookie nor set it.
        client.cookies.clear()
        for data in ({"token": reader}, {"token": reader, "csrf": mine}):
            answer = client.post(LOGIN, data=data)
            assert answer.status_code == 403, answer.text
            assert "telemd_session" not in answer.headers.get("set-cookie", "")
        client.get(LOGIN)
        answer = client.post(LOGIN, data={"token": reader, "csrf": mine})  # an older form's
        assert answer.status_code == 403
        assert client.get("/console/").status_code == 303


def test_logout_needs_its_csrf_token_and_ends_the_session_on_the_server(
    start_collector: Start,
) -> None:
    proc = start_collector()
    reader = make_token(proc.db_url, "reader", ["read"])
    with proc.client(token=None) as client:
        assert log_in(client, reader).status_code == 303
        home = client.get("/console/")
        assert home.status_code == 200
        stolen = dict(client.cookies)
        assert client.post("/console/logout", data={"csrf": "0" * 64}).status_code == 403
        assert client.post("/console/logout", data={"csrf": ""}).status_code == 403
        assert client.get("/console/").status_code == 200
        out = client.post("/console/logout", data={"csrf": csrf_of(home.text)})
        assert out.status_code == 303 and out.headers["location"] == LOGIN
    with proc.client(token=None, cookies=stolen) as replay:
        assert replay.get("/console/").status_code == 303


def test_a_revoked_tokens_sessions_end_at_once(start_collector: Start) -> None:
    proc = start_collector()
    reader = make_token(proc.db_url, "morning", ["read"])
    other = make_token(proc.db_url, "evening", ["read"])
    with proc.client(token=None) as a, proc.client(token=None) as b:
        assert log_in(a, reader).status_code == 303
        assert log_in(b, other).status_code == 303
        assert a.get("/console/records").status_code == 200
        assert collector_main(["token", "revoke", "morning", "--db", proc.db_url]) == 0
        answer = a.get("/console/records")  # no wait: the very next request
        assert answer.status_code == 303 and answer.headers["location"] == LOGIN
        assert b.get("/console/records").status_code == 200


def test_tokens_that_cannot_read_do_not_log_in_and_failures_are_limited(
    start_collector: Start,
) -> None:
    proc = start_collector()
    ingest_only = make_token(proc.db_url, "probe", ["ingest"])
    statuses = []
    with proc.client(token=None) as client:
        for token in (ingest_only, "telemd_" + "A" * 43, "not a token", ""):
            form = client.get(LOGIN)
            answer = client.post(LOGIN, data={"token": token, "csrf": csrf_of(form.text)})
            statuses.append(answer.status_code)
            assert "telemd_session" not in answer.headers.get("set-cookie", "")
            assert "cannot read" in answer.text or answer.status_code == 400
        while len(statuses) <= FAILURE_BURST:
            form = client.get(LOGIN)
            statuses.append(
                client.post(
                    LOGIN, data={"token": ingest_only, "csrf": csrf_of(form.text)}
                ).status_code
            )
    assert statuses[:3] == [401, 401, 401]
    assert statuses[-1] == 429


def test_get_slash_redirects_browsers_only(start_collector: Start) -> None:
    proc = start_collector()
    html = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"
    with proc.client(token=None) as client:
        browser = client.get("/", headers={"Accept": html})
        assert browser.status_code == 303 and browser.headers["location"] == "/console/"
        for headers in (
            {},
            {"Accept": "application/json"},
            {"Accept": html, "X-Telemetry-TID": "6907c830-eed9-4ce9-81ae-76daf8d88f0f"},
            {"Accept": html, "Classification": "org.clearlinux/hello/world"},
        ):
            answer = client.get("/", headers=headers)
            assert answer.status_code == 405, (headers, answer.text)
            assert "POST" in answer.json()["message"]
        headers, body = headers_request(record())
        assert (
            client.post("/", headers={**headers, "Accept": html}, content=body).status_code == 201
        )


# Values every console parameter must refuse with 400, or take as text.
BAD_NUMBERS = ["inf", "nan", "-1", "1e3", "0x10", "9" * 30, "\u0661", "+1"]
NOT_TEXT = ["%FF", "%00", "a%0Ab", "x" * 300]


def test_hostile_queries_on_the_console_get_4xx_never_500(start_collector: Start) -> None:
    from telemd.collector.server.params import ROUTE_PARAMS

    proc = start_collector()
    reader = make_token(proc.db_url, "reader", ["read"])
    tried = 0
    with proc.client(token=None) as client:
        assert log_in(client, reader).status_code == 303
        for path, names in ROUTE_PARAMS.items():
            if not path.startswith("/console/"):
                continue
            assert client.get(f"{path}?color=red").status_code == 400
            for name in names:
                text = name in (
                    "classification", "build", "machine_id", "system_name", "host_type", "q",
                    "source", "app",
                )  # fmt: skip
                for value in BAD_NUMBERS:
                    answer = client.get(f"{path}?{name}={value}")
                    assert answer.status_code < 500, (path, name, value)
                    if not text:
                        assert answer.status_code == 400, (path, name, value, answer.text[:200])
                        assert name in answer.text
                    tried += 1
                for raw in NOT_TEXT:
                    answer = client.get(httpx.URL(f"{path}?{name}={raw}"))
                    assert answer.status_code == 400, (path, name, raw)
                    tried += 1
        for path in (
            "/console/records/" + "z" * 32,
            "/console/records/..%2F..",
            "/console/machines/%00",
        ):
            assert client.get(path).status_code in (400, 404)
    assert tried > 100


def test_record_page_and_exports_hold_hostile_payloads_harmless(start_collector: Start) -> None:
    proc = start_collector()
    reader = make_token(proc.db_url, "reader", ["read"])
    evil = '=cmd|"/c calc"!A1 <script>alert(1)</script>"><img src=x>'
    rec = store_one(proc, payload=evil)
    with proc.client(token=None) as client:
        assert log_in(client, reader).status_code == 303
        page = client.get(f"/console/records/{rec['record_id']}")
        assert page.status_code == 200
        assert "<script>" not in page.text and "&lt;script&gt;" in page.text
        for name in ("machine_id", "event_id", "kernel_version", "cpu_model", "bios_version"):
            assert rec[name] in page.text, name
        query = f"machine_id={rec['machine_id']}"
        rows = list(csv.DictReader(io.StringIO(client.get(f"/console/records.csv?{query}").text)))
        assert [r["record_id"] for r in rows] == [rec["record_id"]]
        assert rows[0]["payload"] == "'" + evil  # a spreadsheet shows it, never runs it
        lines = client.get(f"/console/records.ndjson?{query}").text.splitlines()
        assert [json.loads(line)["payload"] for line in lines] == [evil]


@pytest.mark.parametrize("count", [2503])
def test_export_pages_through_the_whole_search(start_collector: Start, count: int) -> None:
    proc = start_collector()
    reader = make_token(proc.db_url, "reader", ["read"])
    machine = new_id()
    from collector_proc import BATCH_HEADERS, ndjson

    with proc.client(token=None) as client:
        for start in range(0, count, 1000):
            batch = [record(machine_id=machine) for _ in range(min(1000, count - start))]
            answer = client.post("/api/v1/records", headers=BATCH_HEADERS, content=ndjson(batch))
            assert answer.json()["accepted"] == len(batch)
        assert log_in(client, reader).status_code == 303
        lines = client.get(f"/console/records.ndjson?machine_id={machine}").text.splitlines()
        ids = [json.loads(line)["id"] for line in lines]
        assert len(ids) == count and len(set(ids)) == count
        assert ids == sorted(ids, reverse=True)
