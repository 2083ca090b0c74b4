"""Problems from the project's own probes, grouped and counted by a real collector.

Runs on SQLite and PostgreSQL: records made by crashprobe (a real core of a
real crashing program), klogscanner (the klog samples), the Python probe (a
real uncaught exception) and journalprobe (a failed unit) go in through the
ingest API; the problems, builds and overview routes and the commands must
show the groups and counts those records make.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import probe_payloads
import pytest
from collector_proc import BATCH_HEADERS, CollectorProcess, ndjson, new_id, record

from telemd.collector.cli import main

CRASH_MAIN = "SIGSEGV in crash_here() [crashme]"
NULL_DEREF = "BUG: kernel NULL pointer dereference in ext4_readdir [ext4]"
WARNING = "WARNING: CPU: N PID: N in demo_vblank_enable [demo_drm]"
PYTHON = "ValueError in parse() [app.py]"
UNIT = "demo.service failed: exit-code"


@pytest.fixture(scope="module")
def payloads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    work = tmp_path_factory.mktemp("payloads")
    return {
        "crash": probe_payloads.crash(work),
        "crash x3": probe_payloads.crash(work, count=3),
        "crash thread": probe_payloads.crash(work, "thread"),
        "oops": probe_payloads.kernel("bug_x86_nullderef"),
        "warning": probe_payloads.kernel("warning_x86"),
        "python": probe_payloads.python_exception(work),
        "unit": probe_payloads.failed_unit(),
        "hello": ("org.clearlinux/hello/world", "hello\n"),
    }


def post(client: httpx.Client, records: list[dict[str, Any]]) -> None:
    response = client.post("/api/v1/records", headers=BATCH_HEADERS, content=ndjson(records))
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == len(records), response.text


def get(client: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def made(
    payloads: dict[str, tuple[str, str]], name: str, machine: str, build: str
) -> dict[str, Any]:
    classification, payload = payloads[name]
    return record(classification=classification, payload=payload, machine_id=machine, build=build)


def fill(client: httpx.Client, payloads: dict[str, tuple[str, str]]) -> dict[str, str]:
    """Three machines on two builds; the newer build's records come last."""
    a, b, c = new_id(), new_id(), new_id()
    older = [
        made(payloads, "crash", a, "100"),
        made(payloads, "crash x3", b, "100"),
        made(payloads, "crash thread", a, "100"),
        made(payloads, "oops", a, "100"),
        made(payloads, "oops", b, "100"),
        made(payloads, "python", a, "100"),
        made(payloads, "python", a, "100"),
        made(payloads, "hello", a, "100"),
        made(payloads, "hello", b, "100"),
    ]
    post(client, older)
    # A record sent again is a duplicate, and counts nothing.
    again = client.post("/api/v1/records", headers=BATCH_HEADERS, content=ndjson(older[:1]))
    assert again.json()["duplicates"] == 1
    post(
        client,
        [
            made(payloads, "warning", c, "101"),
            made(payloads, "unit", c, "101"),
            made(payloads, "hello", c, "101"),
        ],
    )
    return {"a": a, "b": b, "c": c}


def by_title(problems: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for problem in problems:
        grouped.setdefault(problem["title"], []).append(problem)
    return grouped


def test_probe_records_group_into_problems_with_exact_counts(
    start_collector: Callable[..., CollectorProcess], payloads: dict[str, tuple[str, str]]
) -> None:
    proc = start_collector()
    with proc.client() as client:
        machines = fill(client, payloads)
        listing = get(client, "/api/v1/problems")
        assert listing["next"] is None
        problems = by_title(listing["problems"])
        # crashme's main thread and its worker thread crash in one function
        # reached by two paths: one title, two signatures.
        assert sorted(p["occurrences"] for p in problems[CRASH_MAIN]) == [1, 4]
        assert {t: [(p["occurrences"], p["machines"]) for p in ps] for t, ps in problems.items()
                if t != CRASH_MAIN} == {
            NULL_DEREF: [(2, 2)],
            WARNING: [(1, 1)],
            PYTHON: [(2, 1)],
            UNIT: [(1, 1)],
        }  # fmt: skip
        assert [p["occurrences"] for p in listing["problems"]] == [4, 2, 2, 1, 1, 1]
        main_crash = next(p for p in problems[CRASH_MAIN] if p["occurrences"] == 4)
        assert (main_crash["kind"], main_crash["machines"], main_crash["builds"]) == ("crash", 2, 1)
        assert main_crash["signature"] == (
            "crash:SIGSEGV:crash_here@crashme|main@crashme|__libc_start_call_main@libc.so.6"
        )

        detail = get(client, f"/api/v1/problems/{main_crash['id']}")
        assert detail["problem"]["backtrace"].startswith("Process: ")
        assert "#0 crash_here() - [" in detail["problem"]["backtrace"]
        assert detail["builds"] == [{"build": "100", "occurrences": 4}]
        assert {m["machine_id"]: m["occurrences"] for m in detail["machines"]} == {
            machines["a"]: 1,
            machines["b"]: 3,
        }
        assert [d["occurrences"] for d in detail["days"]] == [4]
        assert sorted(r["machine_id"] for r in detail["recent"]) == sorted(
            [machines["a"], machines["b"]]
        )

        builds = {b["build"]: b for b in get(client, "/api/v1/builds")["builds"]}
        assert [b["build"] for b in get(client, "/api/v1/builds")["builds"]] == ["101", "100"]
        old = builds["100"]
        assert (old["machines"], old["records"], old["problems"], old["crashes"]) == (2, 9, 4, 5)
        assert old["crashes_per_1000_machines"] == 2500.0
        new = builds["101"]
        assert (new["machines"], new["records"], new["problems"], new["crashes"]) == (1, 3, 2, 0)
        assert [d["machines"] for d in new["machines_per_day"]] == [1]

        view = get(client, "/api/v1/overview")
        assert len(view["days"]) == 30
        today = view["days"][-1]
        assert today["machines"] == 3
        assert today["records"] == {"crash": 3, "kernel": 3, "python": 2, "journal": 1, "hello": 3}
        assert [p["title"] for p in view["top_problems"]][:1] == [CRASH_MAIN]
        assert view["top_problems"][0]["recent_occurrences"] == 4
        assert view["latest_build"] == "101"
        assert sorted(p["title"] for p in view["new_in_latest_build"]) == sorted([WARNING, UNIT])


def test_problems_filter_sort_and_page(
    start_collector: Callable[..., CollectorProcess], payloads: dict[str, tuple[str, str]]
) -> None:
    proc = start_collector()
    with proc.client() as client:
        fill(client, payloads)
        assert {p["title"] for p in get(client, "/api/v1/problems", kind="kernel")["problems"]} == {
            NULL_DEREF,
            WARNING,
        }
        assert {p["title"] for p in get(client, "/api/v1/problems", build="101")["problems"]} == {
            WARNING,
            UNIT,
        }
        assert get(client, "/api/v1/problems", since="9999-01-01")["problems"] == []
        for sort in ("occurrences", "machines", "last_seen"):
            whole = get(client, "/api/v1/problems", sort=sort)["problems"]
            keys = [(p[sort], p["id"]) for p in whole]
            assert keys == sorted(keys, reverse=True)
            pages: list[int] = []
            params: dict[str, Any] = {"sort": sort, "limit": 2}
            while True:
                page = get(client, "/api/v1/problems", **params)
                pages += [p["id"] for p in page["problems"]]
                if page["next"] is None:
                    break
                params["after"] = page["next"]
            assert pages == [p["id"] for p in whole]
        for bad in ({"sort": "title"}, {"kind": "oops"}, {"after": "x"}, {"limit": "0"}):
            response = client.get("/api/v1/problems", params=bad)
            assert response.status_code == 400
            assert response.json()["field"] == next(iter(bad))
        assert client.get("/api/v1/problems/999999").status_code == 404
        assert client.get("/api/v1/problems/abc").status_code == 404
        assert client.get("/api/v1/problems/1", params={"x": "1"}).json()["field"] == "x"


def test_skip_frame_and_reprocess_regroup_stored_records(
    start_collector: Callable[..., CollectorProcess],
    payloads: dict[str, tuple[str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    proc = start_collector()
    with proc.client() as client:
        fill(client, payloads)
        before = {p["title"]: p for p in get(client, "/api/v1/problems")["problems"]}
    assert main(["skip-frame", "add", "crash_here", "--db", proc.db_url]) == 0
    assert main(["skip-frame", "list", "--db", proc.db_url]) == 0
    assert "crash_here" in capsys.readouterr().out.split()
    assert main(["reprocess", "--db", proc.db_url]) == 0
    assert "reprocessed 12 records into 6 problems" in capsys.readouterr().out
    with proc.client() as client:
        after = get(client, "/api/v1/problems")["problems"]
    titles = {p["title"]: p for p in after}
    assert titles["SIGSEGV in main() [crashme]"]["occurrences"] == 4
    assert titles["SIGSEGV in crash_in_worker() [crashme]"]["occurrences"] == 1
    # A problem whose signature did not change keeps its id and its counts.
    for title in (NULL_DEREF, PYTHON, UNIT, WARNING):
        assert {k: titles[title][k] for k in ("id", "occurrences", "machines", "builds")} == {
            k: before[title][k] for k in ("id", "occurrences", "machines", "builds")
        }
    assert main(["skip-frame", "remove", "crash_here", "--db", proc.db_url]) == 0
    assert main(["skip-frame", "add", "bad pattern", "--db", proc.db_url]) == 2


def test_commands_print_problems_problem_and_builds(
    start_collector: Callable[..., CollectorProcess],
    payloads: dict[str, tuple[str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    proc = start_collector()
    with proc.client() as client:
        fill(client, payloads)
    capsys.readouterr()
    assert main(["problems", "--kind", "unit", "--db", proc.db_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["ID", "KIND", "OCCURRENCES"]
    assert lines[1].endswith(UNIT)
    problem_id = lines[1].split()[0]
    assert main(["problem", problem_id, "--json", "--db", proc.db_url]) == 0
    detail = json.loads(capsys.readouterr().out)
    assert detail["problem"]["title"] == UNIT
    assert detail["problem"]["backtrace"].startswith("MESSAGE=demo.service: Failed")
    assert main(["problem", problem_id, "--db", proc.db_url]) == 0
    assert capsys.readouterr().out.startswith(UNIT + "\n")
    assert main(["builds", "--db", proc.db_url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[:5] for line in out[1:]] == [
        ["101", "1", "3", "2", "0"],
        ["100", "2", "9", "4", "5"],
    ]
    assert main(["problem", "424242", "--db", proc.db_url]) == 2


def test_no_problem_from_records_that_report_none(
    start_collector: Callable[..., CollectorProcess],
) -> None:
    proc = start_collector()
    with proc.client() as client:
        post(
            client,
            [
                record(
                    classification="org.clearlinux/crash/unknown",
                    payload="Crash from third party\n",
                ),
                record(classification="org.clearlinux/python/exception", payload="garbage\n"),
                record(classification="org.test/x/y", payload="Reason: looks like a kernel\n"),
            ],
        )
        assert get(client, "/api/v1/problems")["problems"] == []
        assert get(client, "/api/v1/overview")["days"][-1]["records"] == {
            "crash": 1,
            "python": 1,
            "x": 1,
        }
