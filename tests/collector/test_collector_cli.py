"""`telemd-collector query | summary | migrate | serve`: output and exit statuses."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from typing import Any

import pytest
from collector_proc import (
    BATCH_HEADERS,
    CLEAR_TID,
    CollectorProcess,
    json_request,
    ndjson,
    new_id,
    record,
)
from ports import free_port

from telemd.collector.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, main
from telemd.collector.ingest import records as ingest
from telemd.collector.store.base import SCHEMA_VERSION, Store, open_engine

RULES = ingest.Rules(frozenset({CLEAR_TID}), 32768)


@pytest.fixture
def filled(db_url: str) -> tuple[str, str]:
    """A database with 3 records of one machine; returns (url, machine id)."""
    machine = new_id()
    store = Store(open_engine(db_url))
    store.migrate()
    rows = []
    for severity in ("1", "3", "4"):
        rec = record(machine_id=machine, severity=severity)
        rows.append(
            ingest.validate_record(
                rec, rec["payload"], tid=CLEAR_TID, record_id=rec["record_id"], rules=RULES
            )
        )
    store.write([rows], time.time())
    store.close()
    return db_url, machine


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def test_query_table(filled: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    url, machine = filled
    status, out, _ = run(["query", "--db", url, "--machine-id", machine], capsys)
    assert status == EXIT_OK
    lines = out.splitlines()
    assert lines[0].split() == [
        "ID",
        "RECEIVED",
        "SEV",
        "CLASSIFICATION",
        "MACHINE",
        "BUILD",
        "RECORD_ID",
    ]
    assert len(lines) == 4 and all(machine in line for line in lines[1:])
    assert [line.split()[2] for line in lines[1:]] == ["4", "3", "1"]


def test_query_json_pages(filled: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    url, machine = filled
    status, out, _ = run(
        ["query", "--db", url, "--machine-id", machine, "--limit", "2", "--format", "json"], capsys
    )
    page = json.loads(out)
    assert status == EXIT_OK and len(page["records"]) == 2 and page["next"] is not None
    status, out, _ = run(
        [
            "query",
            "--db",
            url,
            "--machine-id",
            machine,
            "--before",
            str(page["next"]),
            "--format",
            "json",
        ],
        capsys,
    )
    assert [r["severity"] for r in json.loads(out)["records"]] == [1]


def test_summary_table_and_json(
    filled: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    url, machine = filled
    status, out, _ = run(["summary", "--db", url], capsys)
    assert status == EXIT_OK
    assert "org.clearlinux/hello/world" in out and machine in out
    row = next(line for line in out.splitlines() if line.startswith("org.clearlinux/hello/world"))
    assert row.split()[1] == "3" and row.split()[3:] == ["1", "0", "1", "1"]
    status, out, _ = run(
        ["summary", "--db", url, "--format", "json", "--since", "2999-01-01"], capsys
    )
    assert json.loads(out)["classifications"] == []


def test_bad_filter_is_a_usage_error(
    filled: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(["query", "--db", filled[0], "--severity", "9"], capsys)
    assert status == EXIT_USAGE and "--severity" in err
    assert run(["query", "--bogus"], capsys)[0] == EXIT_USAGE


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["summary", "--since", "inf"],
         "--since: must be unix seconds in 0..253402300799 or an ISO-8601 time, got 'inf'"),
        (["summary", "--since", "253402300800"], "--since: must be unix seconds in 0.."),
        (["query", "--limit", "9" * 5000], "--limit: must be an integer in 1..1000"),
    ],
)  # fmt: skip
def test_a_bad_time_or_number_is_one_usage_line(
    filled: tuple[str, str], argv: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run([*argv, "--db", filled[0]], capsys)
    assert status == EXIT_USAGE
    assert err.count("\n") == 1 and err.startswith("telemd-collector: " + line), err


def test_migrate(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(["migrate", "--db", db_url], capsys)
    assert status == EXIT_OK and f"version {SCHEMA_VERSION}" in out


def test_unreachable_database_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    status, _, err = run(["query", "--db", "postgresql://nobody@127.0.0.1:1/none"], capsys)
    assert status == EXIT_FAILURE and err.startswith("telemd-collector: database error")
    (tmp_path / "file").write_text("")
    status, _, err = run(["summary", "--db", f"sqlite:///{tmp_path}/file/x.db"], capsys)
    assert status == EXIT_FAILURE and err.count("\n") == 1


def test_serve_on_a_taken_port_exits_1(db_url: str, tmp_path: Any) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "telemd.collector", "--db", db_url, "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == EXIT_FAILURE
    assert "address already in use" in result.stderr.lower()


def test_serve_with_bad_configuration_exits_78(tmp_path: Any) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "telemd.collector", "serve", "--port", "x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 78
    assert (
        result.stderr == "telemd-collector: option --port must be an integer in 1..65535, got 'x'\n"
    )


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--help"], capsys)[0] == EXIT_OK
    status, out, _ = run(["--version"], capsys)
    assert status == EXIT_OK and out.startswith("telemd-collector ")


def test_token_create_prints_the_token_alone_on_its_last_line(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["token", "create", "--name", "grafana", "--scope", "read", "--scope", "admin"]
    status, out, _ = run([*argv, "--db", db_url], capsys)
    assert status == EXIT_OK
    token = out.splitlines()[-1]
    assert token.startswith("telemd_") and len(token) == len("telemd_") + 43
    assert "shown only once" in out
    status, out, _ = run(["token", "list", "--db", db_url], capsys)
    assert status == EXIT_OK and token not in out
    [header, row] = out.splitlines()
    assert header.split() == ["NAME", "SCOPES", "CREATED", "LAST_USED"]
    assert row.split()[:2] == ["grafana", "admin,read"] and row.endswith("never")
    status, out, _ = run(["token", "list", "--json", "--db", db_url], capsys)
    [listed] = json.loads(out)["tokens"]
    assert listed["name"] == "grafana" and listed["scopes"] == ["admin", "read"]
    assert token not in out


def test_token_mistakes(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    create = ["token", "create", "--db", db_url, "--name"]
    assert run([*create, "ci", "--scope", "ingest"], capsys)[0] == EXIT_OK
    status, _, err = run([*create, "ci", "--scope", "read"], capsys)
    assert status == EXIT_FAILURE and "a token named 'ci' exists" in err
    status, _, err = run([*create, "bad name", "--scope", "read"], capsys)
    assert status == EXIT_USAGE and "token name must be" in err
    assert run([*create, "x", "--scope", "write"], capsys)[0] == EXIT_USAGE
    assert run([*create, "x"], capsys)[0] == EXIT_USAGE  # no scope
    status, _, err = run(["token", "revoke", "nobody", "--db", db_url], capsys)
    assert status == EXIT_FAILURE and "no token named 'nobody'" in err
    status, out, _ = run(["token", "revoke", "ci", "--db", db_url], capsys)
    assert status == EXIT_OK and "revoked" in out
    assert run(["token", "list", "--json", "--db", db_url], capsys)[1].count('"name"') == 0


def test_serve_without_orjson_logs_each_uvicorn_line_once_in_its_format(tmp_path: Any) -> None:
    """As on Debian 12, which packages no orjson: the standard library's json
    serves; uvicorn's lines go through the collector's one handler."""
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / "orjson.py").write_text('raise ImportError("orjson is not installed")\n')
    proc = CollectorProcess(
        f"sqlite:///{tmp_path}/records.db",
        str(tmp_path),
        args=["--log-level", "info", "--tid", CLEAR_TID],
        env={"PYTHONPATH": str(hidden)},
    )
    with contextlib.closing(proc.wait_ready()), proc.client() as client:
        rec = record()
        single = client.post("/", headers=json_request(rec)[0], content=json_request(rec)[1])
        assert single.status_code == 201, single.text
        batch = client.post("/api/v1/records", headers=BATCH_HEADERS, content=ndjson([record()]))
        assert batch.status_code == 200 and batch.json()["accepted"] == 1
        refused = client.post("/api/v1/records", headers=BATCH_HEADERS, content=b"NaN\n")
        message = refused.json()["rejected"][0]["message"]
        assert message == "line: is not valid JSON: NaN is not JSON"
        assert client.get("/api/records", params={"machine_id": rec["machine_id"]}).json()[
            "records"
        ]
    assert proc.stop() == 0
    lines = proc.log().splitlines()
    started = [line for line in lines if "Started server process" in line]
    assert len(started) == 1, lines
    assert " INFO uvicorn.error: Started server process" in started[0]
    assert sum("Uvicorn running on" in line for line in lines) == 1, lines
