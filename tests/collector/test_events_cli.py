"""`telemd-collector events`: filters, formats, exit statuses and --follow."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import pytest

from telemd.collector.cli import EXIT_OK, EXIT_USAGE, main
from telemd.collector.events.model import make_event
from telemd.collector.events.store import store_batch
from telemd.collector.store.base import Store, open_engine

LINE_DEADLINE = 30.0


def add(db_url: str, *objs: dict[str, Any]) -> None:
    store = Store(open_engine(db_url))
    store.migrate()
    now = time.time()
    events = [
        make_event(
            "events",
            obj,
            received_at=now,
            app=obj.get("app"),
            name=obj.get("event"),
            level=obj.get("level"),
            context_id=obj.get("context_id"),
            timestamp=obj.get("timestamp"),
        )
        for obj in objs
    ]
    store_batch(store, "events", "127.0.0.1", {}, events, now)
    store.close()


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


SAMPLE = (
    {"app": "api", "event": "start", "level": "info", "context_id": "c1", "msg": "listening"},
    {"app": "api", "event": "migration_failed", "context_id": "c1", "error": "disk full"},
    {"app": "web", "event": "crash", "level": "fatal", "trace": "segfault in renderer"},
)


def test_table_filters_and_search(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    add(db_url, *SAMPLE)
    status, out, _ = run(["events", "--db", db_url, "--app", "api"], capsys)
    assert status == EXIT_OK
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "TIME", "SOURCE", "APP", "EVENT", "LEVEL", "CONTEXT"]
    assert [line.split()[4] for line in lines[1:]] == ["migration_failed", "start"]
    status, out, _ = run(
        ["events", "--db", db_url, "--level", "error", "--format", "jsonl"], capsys
    )
    assert sorted(json.loads(line)["event"] for line in out.splitlines()) == [
        "crash",
        "migration_failed",
    ]
    status, out, _ = run(
        ["events", "--db", db_url, "--search", "renderer", "--format", "json"], capsys
    )
    assert [e["payload"] for e in json.loads(out)["events"]] == [SAMPLE[2]]


def test_pages_say_how_to_go_on(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    add(db_url, *SAMPLE)
    status, out, _ = run(["events", "--db", db_url, "--limit", "2"], capsys)
    assert status == EXIT_OK
    more = out.splitlines()[-1]
    assert more.startswith("(more: --before ")
    before = more.removeprefix("(more: --before ").rstrip(")")
    status, out, _ = run(
        ["events", "--db", db_url, "--before", before, "--format", "jsonl"], capsys
    )
    assert [json.loads(line)["event"] for line in out.splitlines()] == ["start"]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--limit", "0"], "--limit: must be in 1..1000"),
        (["--since", "soon"], "--since: must be unix seconds"),
        (["--interval", "nan"], "--interval: must be in 0..3600"),
    ],
)
def test_bad_flags_are_usage_errors(
    db_url: str, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    status, _, err = run(["events", "--db", db_url, *argv], capsys)
    assert status == EXIT_USAGE
    assert says in err


class Lines:
    """The lines a process prints, read by a thread so that a test can wait for each."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.lines: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        stdout = proc.stdout
        threading.Thread(target=lambda: [self.lines.put(x) for x in stdout], daemon=True).start()

    def next_event(self) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=LINE_DEADLINE)
        except queue.Empty:
            raise AssertionError("no line from events --follow in time") from None
        event: dict[str, Any] = json.loads(line)
        return event


def test_follow_prints_new_events_as_they_come(db_url: str) -> None:
    app = uuid.uuid4().hex
    add(db_url, {"app": app, "n": 0})
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMD_COLLECTOR")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "telemd.collector", "events", "--db", db_url, "--app", app,
         "--follow", "--format", "jsonl", "--interval", "0.05"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )  # fmt: skip
    lines = Lines(proc)
    try:
        assert lines.next_event()["payload"] == {"app": app, "n": 0}
        add(db_url, {"app": app, "n": 1}, {"app": app, "n": 2})
        add(db_url, {"app": "someone-else", "n": 3})
        add(db_url, {"app": app, "n": 4})
        assert [lines.next_event()["payload"]["n"] for _ in range(3)] == [1, 2, 4]
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == EXIT_OK
