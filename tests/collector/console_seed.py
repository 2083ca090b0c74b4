"""Data for the console's pages: a month of history, today's records from the real
probes, and events from each event protocol.

History goes in through the store's own write (received_at in the past,
which no HTTP client can set); today's records come from a real telemd fed
by the project's probes: hprobe's heartbeats, a Python program killed by an
uncaught exception under the Python probe, and telem-record-gen.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import probe_payloads
from collector_proc import CLEAR_TID, CollectorProcess
from daemon_harness import DaemonHarness, command, wait_until
from events_clients import shuttle_file

from telemd.collector.store.base import Store, open_engine

DAY = 86400
HEARTBEAT = ("org.clearlinux/hello/world", 1, "hello\n")


def kinds() -> list[tuple[str, int, str]]:
    """(classification, severity, payload) of each kind of history record, the
    problems' payloads made by the probes' own code (klogscanner's parser on
    real kernel logs, journalprobe's unit failure), heartbeats first."""
    made = [
        probe_payloads.kernel("bug_x86_nullderef"),
        probe_payloads.kernel("warning_x86"),
        probe_payloads.failed_unit("nginx.service"),
        probe_payloads.kernel("hungtask"),
    ]
    return [HEARTBEAT, *((c, 3, p) for c, p in made)]


BUILDS = ("41200", "41210", "41220")
DEMO_CRASH = "Process: /usr/bin/telemd-demo\nSignal: 6\n#0 abort\n#1 main\n"
PROBE_RECORDS = 5  # three heartbeats, a Python exception, a crash
CRASHING_PROGRAM = """\
import sys
import telemd_probes.python
telemd_probes.python.install(config_file=sys.argv[1])
def parse(path):
    raise ValueError(f"bad value in {path}")
parse("settings.ini")
"""


def row(
    classification: str, severity: int, machine: str, build: str, payload: str
) -> tuple[object, ...]:
    """A stored row in RECORD_COLUMNS order."""
    return (
        uuid.uuid4().hex, CLEAR_TID, 4, classification, severity, machine, int(time.time()),
        "x86_64", "QEMU|Standard PC|pc-q35", build, "6.1.0-13-amd64", 1, "clear-linux-os",
        "no_bn_file|no_bv_file", "Intel(R) Xeon(R) CPU", "1.16.2", uuid.uuid4().hex, payload,
    )  # fmt: skip


def happens(kind: int, turn: int, newest: bool) -> bool:
    """Whether a machine sends a kind of record on a day: heartbeats daily, the
    oops more often on the newest build, the hung task only there."""
    if kind == 0:
        return True
    if kind == 1:
        return turn % 5 == 0 or (newest and turn % 3 == 0)
    if kind == 4:
        return newest and turn % 4 == 0
    return turn % (5 + kind * 2) == 0


def write_history(db_url: str, days: int = 30, machines: int = 40, now: float | None = None) -> int:
    """Records on each of the last `days` days, more crashes on the newest build."""
    now = time.time() if now is None else now
    store = Store(open_engine(db_url))
    made = kinds()
    written = 0
    try:
        store.migrate()
        for back in range(days, 0, -1):
            rows = []
            for m in range(machines - (back % 7)):
                machine = f"{m:032x}"
                build = BUILDS[min(2, (days - back + m) // 12)]
                for k, (kind, severity, payload) in enumerate(made):
                    if happens(k, m + back, build == BUILDS[2]):
                        rows.append(row(kind, severity, machine, build, payload))
            store.write([rows], now - back * DAY)
            written += len(rows)
    finally:
        store.close()
    return written


def records_from_probes(collector: CollectorProcess, root: Path) -> int:
    """Run a real telemd delivering to `collector`, feed it the probes, wait for delivery."""
    harness = DaemonHarness(
        root, server=f"{collector.base_url}/api/v1/records", post_format="ndjson"
    )
    no_filters = root / "no-privacy-filters"
    no_filters.touch()
    config = root / "probes.toml"
    settings = {
        "socket_path": harness.socket,
        "opt_in_file": str(harness.opt_in_file),
        "no_privacy_filters_file": str(no_filters),
        "state_dir": str(harness.state_dir),
    }
    config.write_text("".join(f'{k} = "{v}"\n' for k, v in settings.items()))
    harness.start()
    try:
        for _ in range(3):
            assert run(command("hprobe"), "-f", str(config)).returncode == 0
        program = root / "tool.py"
        program.write_text(CRASHING_PROGRAM)
        died = run(sys.executable, str(program), str(config))
        assert "ValueError" in died.stderr
        made = run(
            command("telem-record-gen"), "-f", str(config),
            "-c", "org.clearlinux/crash/clr", "-s", "4", "-p", DEMO_CRASH,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        with collector.client() as client:

            def todays() -> int:
                answer = client.get("/api/records", params={"created_in_sec": "3600"})
                return len(answer.json()["records"])

            assert wait_until(lambda: todays() >= PROBE_RECORDS, timeout=30), "\n".join(harness.log)
            return todays()
    finally:
        harness.stop()


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def events_from_each_protocol(collector: CollectorProcess) -> dict[str, str]:
    """Events through shuttle's, Vrooli's and the generic app protocol, as each client
    sends them; returns the app (or scenario) name of each."""
    names = {"shuttle": "shuttle", "vrooli": "picker-wheel", "app": "billing-api"}
    vrooli = [
        {"ts": "2026-12-07T08:00:00Z", "event": "app_start", "details": {"version": "1.4.0"}},
        {"ts": "2026-12-07T08:05:00Z", "event": "dependency_unreachable",
         "details": {"service": "postgres", "reason": "connection refused"}},
    ]  # fmt: skip
    app = [
        {"app": names["app"], "event": "invoice_sent", "level": "info", "timestamp": time.time()},
        {"app": names["app"], "event": "payment_failed", "level": "error",
         "timestamp": time.time(), "reason": "card declined"},
    ]  # fmt: skip
    with collector.client(token=None) as client:
        answers = [
            client.post("/publish", content=shuttle_file(str(uuid.uuid4()))),
            client.post(
                f"/api/v1/telemetry/upload?scenario={names['vrooli']}",
                content=b"".join(json.dumps(line).encode() + b"\n" for line in vrooli),
            ),
            client.post(
                "/api/v1/events",
                content=b"".join(json.dumps(line).encode() + b"\n" for line in app),
                headers={"Content-Type": "application/x-ndjson"},
            ),
        ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
    return names
