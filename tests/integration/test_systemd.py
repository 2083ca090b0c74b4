"""telemd under systemd's protocols: socket activation, sd_notify, the watchdog, idle exit.

systemd itself cannot run here as PID 1; its own tools and protocols can:
systemd-socket-activate passes sockets exactly as systemd does, and
sd_notify messages arrive on a real datagram socket set as NOTIFY_SOCKET.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import DaemonHarness

from telemd.record import Record


class NotifySocket:
    """A datagram socket that collects sd_notify messages in order."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(10)
        self.messages: list[str] = []

    def until(self, prefix: str) -> list[str]:
        """Receive until a message starting with `prefix` arrives; return all so far."""
        while not any(message.startswith(prefix) for message in self.messages):
            self.messages.append(self.sock.recv(4096).decode())
        return self.messages


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    listener = NotifySocket(tmp_path / "notify")
    yield listener
    listener.sock.close()


def test_notify_ready_status_watchdog_stopping_in_order(
    harness: DaemonHarness, notify_socket: NotifySocket
) -> None:
    env = dict(os.environ, NOTIFY_SOCKET=notify_socket.path, WATCHDOG_USEC="200000")
    harness.start(env=env)
    messages = notify_socket.until("WATCHDOG=1")
    assert messages[0] == "READY=1"
    assert messages[1] == "STATUS=0 records spooled; 0 delivered"
    with harness.client() as client:
        client.send(Record("a/b/c", 1, "x"))
    messages = notify_socket.until("STATUS=1 records spooled")
    notify_socket.messages.clear()
    assert notify_socket.until("WATCHDOG=1")  # and it keeps coming
    harness.signal(signal.SIGTERM)
    assert notify_socket.until("STOPPING=1")[-1] == "STOPPING=1"
    assert harness.stop() == 0


def test_without_notify_socket_nothing_is_sent_and_nothing_breaks(daemon: DaemonHarness) -> None:
    with daemon.client() as client:
        assert client.send(Record("a/b/c", 1, "plain foreground"))


def activate(harness: DaemonHarness, tmp_path: Path, *, extra: tuple[str, ...] = ()) -> None:
    tool = shutil.which("systemd-socket-activate")
    if tool is None:
        pytest.skip("needs systemd-socket-activate (Debian package systemd)")
    Path(harness.socket).parent.mkdir(parents=True, exist_ok=True)
    harness.start(
        wrapper=(
            tool,
            "--listen",
            harness.socket,
            "--listen",
            harness.control_socket,
            "--fdname=probe:control",
            *extra,
        ),
        ready="Listening on",
    )


def test_socket_activation_serves_the_passed_sockets(
    harness: DaemonHarness, tmp_path: Path
) -> None:
    activate(harness, tmp_path)
    with harness.client() as client:  # the first connection starts the daemon
        record_id = client.send(Record("org.example/test/activation", 1, "activated"))
    assert harness.wait_for_log("(socket-activated)")
    assert harness.record_ids() == {record_id}
    assert harness.stop() == 0
    # The sockets belong to whoever passed them: the daemon leaves them be.
    assert os.path.exists(harness.socket)


def test_when_activated_and_idle_with_an_empty_spool_it_exits(
    harness: DaemonHarness, tmp_path: Path
) -> None:
    harness.write_config(idle_exit_after=0.3, record_server_delivery_enabled=False)
    activate(harness, tmp_path)
    with harness.client() as client:
        record_id = client.send(Record("a/b/c", 1, "then quiet"))
    assert harness.wait_for_log(f"{record_id} kept-local")
    assert harness.wait_for_log("exiting until the next probe")
    assert harness.proc is not None and harness.proc.wait(10) == 0


def test_with_records_waiting_it_stays(harness: DaemonHarness, tmp_path: Path) -> None:
    harness.write_config(
        idle_exit_after=0.3, server="http://127.0.0.1:9/v2/collector", retry_initial=0.05
    )
    activate(harness, tmp_path)
    with harness.client() as client:
        client.send(Record("a/b/c", 1, "undeliverable for now"))
    assert harness.wait_for_log("delivery failed")
    assert not harness.wait_for_log("exiting until the next probe", timeout=1.5)
    assert harness.proc is not None and harness.proc.poll() is None


def test_recycling_off_keeps_an_activated_daemon(harness: DaemonHarness, tmp_path: Path) -> None:
    harness.write_config(
        idle_exit_after=0.3, daemon_recycling_enabled=False, record_server_delivery_enabled=False
    )
    activate(harness, tmp_path)
    with harness.client() as client:
        record_id = client.send(Record("a/b/c", 1, "stay up"))
    assert harness.wait_for_log(f"{record_id} kept-local")
    assert not harness.wait_for_log("exiting until the next probe", timeout=1.0)
