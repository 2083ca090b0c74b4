"""The spool writer under attack: the frame that once killed it, sent among
other uids' records, and a writer that ends all the same.

`creation_timestamp: 1` followed by 25 zeros used to pass decoding and make
the writer fail with "Python int too large to convert to SQLite INTEGER":
either its thread died (no client of any uid heard back again) or the whole
batch failed with the neighbours' records in it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from daemon_harness import AS_NOBODY, NOBODY_UID, DaemonHarness, command, directory_for_nobody
from processes import report

from telemd.client import Client
from telemd.errors import RejectedError
from telemd.frame import encode_frame
from telemd.record import Record, new_event_id

KILLER_TIMESTAMP = 10**25
ROUNDS = 40
NEIGHBOURS_PER_ROUND = 16
# Pipelines good records as uid 65534 and prints how many were acknowledged.
OTHER_UID = """
import sys
from telemd.client import Client
from telemd.errors import RejectedError
from telemd.frame import encode_frame
from telemd.record import Record
ok = refused = 0
for round in range(int(sys.argv[2])):
    frames = [encode_frame(Record("org.example/writer/nobody", 2, f"r{round} n{n}"))
              for n in range(int(sys.argv[3]))]
    with Client(socket_path=sys.argv[1], timeout=10) as client:
        client.write_frames(frames)
        for _ in frames:
            try:
                client.read_reply()
                ok += 1
            except RejectedError:
                refused += 1
print(ok, refused)
"""


def killer_frame() -> bytes:
    """The frame that killed the writer: Record's own checks are bypassed."""
    record = Record.trusted(
        classification="org.example/writer/killer",
        severity=2,
        payload="x",
        payload_format_version=1,
        event_id=new_event_id(),
        creation_timestamp=KILLER_TIMESTAMP,
    )
    return encode_frame(record)


def test_the_writer_killing_frame_costs_only_itself_among_other_uids_records(
    harness: DaemonHarness, tmp_path: Path
) -> None:
    with directory_for_nobody(tmp_path, "send as a second uid") as public:
        harness.socket = str(public / "telem-0")
        harness.write_config(socket_path=harness.socket, uid_records_per_minute=-1)
        harness.start()
        other = subprocess.Popen(
            [*AS_NOBODY, sys.executable, "-c", OTHER_UID, harness.socket, str(ROUNDS),
             str(NEIGHBOURS_PER_ROUND)],
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        killer_replies: list[str] = []
        root_ok = root_refused = 0
        worst = 0.0
        for round_ in range(ROUNDS):
            # The killer frame amid root's own records on one connection, so
            # that it would share their batch, while uid 65534 sends too.
            frames = [
                encode_frame(Record("org.example/writer/root", 2, f"r{round_} n{n}"))
                for n in range(NEIGHBOURS_PER_ROUND)
            ]
            frames.insert(NEIGHBOURS_PER_ROUND // 2, killer_frame())
            started = time.monotonic()
            with Client(socket_path=harness.socket, timeout=10) as client:
                client.write_frames(frames)
                for index in range(len(frames)):
                    try:
                        client.read_reply()
                        root_ok += 1
                    except RejectedError as exc:
                        if index == NEIGHBOURS_PER_ROUND // 2:
                            killer_replies.append(f"ERR {exc.code} {exc.message}")
                        else:
                            root_refused += 1
            worst = max(worst, time.monotonic() - started)
        other_out, _ = other.communicate(timeout=120)
        assert other.returncode == 0
        other_ok, other_refused = (int(n) for n in other_out.split())

        status = subprocess.run(
            [command("telemctl"), "-f", str(harness.config), "status", "--json"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        writer = json.loads(status.stdout)["spool"]["writer"]
        uids = {row["sender_uid"] for row in harness.records()}
        timestamps = {row["creation_timestamp"] for row in harness.records()}
        assert harness.stop() == 0
    report(
        "writer/killer-frame",
        killer_frames=ROUNDS,
        neighbour_records=2 * ROUNDS * NEIGHBOURS_PER_ROUND,
        neighbours_lost=root_refused + other_refused,
        worst_round_s=round(worst, 3),
    )
    assert len(killer_replies) == ROUNDS
    assert all(reply.startswith("ERR invalid creation_timestamp: ") for reply in killer_replies)
    assert (root_ok, root_refused) == (ROUNDS * NEIGHBOURS_PER_ROUND, 0)
    assert (other_ok, other_refused) == (ROUNDS * NEIGHBOURS_PER_ROUND, 0)
    assert uids == {0, NOBODY_UID}
    assert KILLER_TIMESTAMP not in timestamps
    assert writer == "running"
    assert worst < 5.0


# Loaded by the daemon's interpreter through PYTHONPATH: a defect that ends
# the writer thread when it meets a record with this payload. Only a
# BaseException can end it; nothing a client sends raises one.
END_WRITER = """
import os
from telemd.daemon import spool

_commit_together = spool.Spool._commit_together


def commit_together(self, batch):
    marker = os.environ["TELEMD_TEST_END_WRITER"]
    if any(isinstance(work, tuple) and work[7] == marker for work, _ in batch):
        raise SystemExit("injected defect")
    return _commit_together(self, batch)


spool.Spool._commit_together = commit_together
"""


MARKER = "end the writer"


def injected_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment whose daemon carries the END_WRITER defect."""
    inject = tmp_path / "inject"
    inject.mkdir(exist_ok=True)
    (inject / "sitecustomize.py").write_text(END_WRITER)
    path = os.pathsep.join(filter(None, [str(inject), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, PYTHONPATH=path, TELEMD_TEST_END_WRITER=MARKER, **extra)


def test_if_the_writer_ends_the_daemon_answers_everyone_and_exits_to_be_restarted(
    harness: DaemonHarness, tmp_path: Path
) -> None:
    marker = MARKER
    harness.start(env=injected_env(tmp_path))
    with harness.client() as client:
        stored = client.send(Record("org.example/writer/before", 2, "stored"))
    # The fatal record, then 50 pipelined behind it: each must hear back.
    frames = [
        encode_frame(Record("org.example/writer/fatal", 2, marker)),
        *[encode_frame(Record("org.example/writer/queued", 2, f"q{n}")) for n in range(50)],
    ]
    replies: list[str] = []
    started = time.monotonic()
    with harness.client() as client:
        client.write_frames(frames)
        for _ in frames:
            try:
                replies.append("OK " + client.read_reply())
            except RejectedError as exc:
                replies.append(f"ERR {exc.code}")
    assert harness.proc is not None
    status = harness.proc.wait(20)  # no signal needed
    exited_after = time.monotonic() - started
    report("writer/ends", exit_status=status, exited_after_s=round(exited_after, 3))
    assert replies[0] == "ERR internal"
    assert all(reply in ("ERR internal", "ERR shutting-down") for reply in replies[1:]), replies
    assert status == 70
    assert harness.wait_for_log("the spool writer is gone (SystemExit: injected defect)")
    # The restart systemd makes finds the acknowledged record, and the fatal
    # one's neighbours can be sent again.
    harness.start()
    assert harness.record_ids() == {stored}
    with harness.client() as client:
        assert client.send(Record("org.example/writer/after", 2, "after the restart"))
    harness.signal(signal.SIGTERM)
    assert harness.stop() == 0


def test_once_the_writer_is_gone_the_watchdog_hears_nothing_more(
    harness: DaemonHarness, tmp_path: Path
) -> None:
    """A shutdown held up (a request in flight to a collector that never
    answers) must not keep the watchdog content: no WATCHDOG=1 after the
    writer is gone, so systemd kills a daemon that would not exit."""
    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify,
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent,
    ):
        notify.bind(str(tmp_path / "notify"))
        notify.settimeout(20)
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # accepts connections and never answers
        harness.write_config(
            server=f"http://127.0.0.1:{silent.getsockname()[1]}/v2/collector",
            request_timeout=3.0,
        )
        env = injected_env(tmp_path, NOTIFY_SOCKET=str(tmp_path / "notify"), WATCHDOG_USEC="100000")
        harness.start(env=env)
        silent.settimeout(20)
        with harness.client() as client:
            client.send(Record("org.example/writer/in-flight", 2, "to the silent collector"))
            held, _ = silent.accept()  # the request is in flight now
            with contextlib.suppress(RejectedError):
                client.send(Record("org.example/writer/fatal", 2, MARKER))
        messages = []
        while not messages or messages[-1] != "STOPPING=1":
            messages.append(notify.recv(4096).decode())
        stopping_at = time.monotonic()
        assert harness.proc is not None
        status = harness.proc.wait(20)
        held_for = time.monotonic() - stopping_at
        notify.setblocking(False)
        after = []
        with contextlib.suppress(BlockingIOError):
            while True:
                after.append(notify.recv(4096).decode())
        held.close()
    report(
        "writer/watchdog",
        pings_before=messages.count("WATCHDOG=1"),
        pings_after=after.count("WATCHDOG=1"),
        shutdown_held_s=round(held_for, 2),
    )
    assert "WATCHDOG=1" in messages
    assert "WATCHDOG=1" not in after
    assert status == 70
