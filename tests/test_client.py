"""The client library against a real listening Unix socket whose queue is full."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import wait_until

from telemd.client import Client
from telemd.errors import DaemonUnavailable
from telemd.frame import decode_frame, encode_ok
from telemd.record import Record


class FullListener:
    def __init__(self, listener: socket.socket, queued: list[socket.socket]) -> None:
        self.listener = listener
        self.path = listener.getsockname()
        self.queued = queued


@pytest.fixture
def full(tmp_path: Path) -> Iterator[FullListener]:
    """A listening socket that accepts nothing, with its queue of new connections full."""
    path = str(tmp_path / "telem-0")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(0)
    queued = []
    while True:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.setblocking(False)
        try:
            probe.connect(path)
        except BlockingIOError:
            probe.close()
            break
        queued.append(probe)
    assert queued, "the queue took no connection at all"
    yield FullListener(listener, queued)
    for probe in queued:
        probe.close()
    listener.close()


def test_a_full_queue_is_reported_as_busy_after_the_timeout(full: FullListener) -> None:
    started = time.monotonic()
    with pytest.raises(DaemonUnavailable, match="is busy: its queue of new connections"):
        Client(socket_path=full.path, timeout=0.3)
    assert time.monotonic() - started >= 0.3


def test_a_client_waits_for_room_in_the_queue(full: FullListener) -> None:
    if not _kernel_shows_where_threads_sleep():
        pytest.skip("this kernel hides where a thread sleeps (/proc/*/wchan)")
    outcome: dict[str, object] = {}

    def send() -> None:
        outcome["thread"] = threading.get_native_id()
        try:
            with Client(socket_path=full.path, timeout=10.0) as client:
                outcome["reply"] = client.send(Record("a/b/c", 1, "queued"))
        except Exception as exc:  # reported by the assertion below
            outcome["reply"] = exc

    sender = threading.Thread(target=send)
    sender.start()
    _await_waiting_in_connect(outcome)
    # Accepting the queued connections makes room; the waiting client's
    # connection is the one that carries a frame.
    for probe in full.queued:
        probe.close()
    while "reply" not in outcome:
        connection, _ = full.listener.accept()
        with connection:
            connection.settimeout(5)
            data = connection.recv(65536)
            if data:
                assert decode_frame(data).record.payload == "queued"
                connection.sendall(encode_ok("0123456789abcdef0123456789abcdef"))
                sender.join(timeout=5)
    assert outcome["reply"] == "0123456789abcdef0123456789abcdef"


def _await_waiting_in_connect(outcome: dict[str, object]) -> None:
    """Return once the sender's thread sleeps in the kernel waiting for queue room."""

    def waiting() -> bool:
        if "reply" in outcome:
            pytest.fail(f"the client gave up at once instead of waiting: {outcome['reply']!r}")
        return "thread" in outcome and _wchan(outcome["thread"]) == "unix_wait_for_peer"

    if not wait_until(waiting, 10):
        pytest.fail("the client never waited for room in the queue")


def _wchan(thread_id: object) -> str:
    try:
        return Path(f"/proc/self/task/{thread_id}/wchan").read_text()
    except OSError:
        return ""


def _kernel_shows_where_threads_sleep() -> bool:
    release = threading.Event()
    sleeper_id: list[int] = []
    sleeper = threading.Thread(
        target=lambda: (sleeper_id.append(threading.get_native_id()), release.wait())
    )
    sleeper.start()
    try:
        return wait_until(lambda: bool(sleeper_id) and _wchan(sleeper_id[0]) not in ("", "0"), 5)
    finally:
        release.set()
        sleeper.join()


@pytest.mark.parametrize(
    "module", ["telemd.client", "telemd.cli.record_gen", "telemd_probes.heartbeat.hprobe"]
)
def test_the_probe_path_imports_only_the_start_up_set_and_two_c_modules(module: str) -> None:
    # A probe's start-up cost is its imports: typing, re or socket alone would
    # add milliseconds to every record telem-record-gen sends.
    probe = (
        "import sys; before = set(sys.modules); __import__(sys.argv[1]);"
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", probe, module], capture_output=True, text=True, check=True
    )
    added = {name for name in result.stdout.split() if not name.startswith("telemd")}
    assert added <= {"_socket", "_struct"}, sorted(added)
