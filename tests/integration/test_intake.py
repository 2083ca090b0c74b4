"""The probe socket under good and bad clients: real sockets, a real daemon."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from daemon_harness import AS_NOBODY, NOBODY_UID, DaemonHarness, directory_for_nobody, wait_until

from telemd.daemon.peers import SHED_AFTER_IDLE
from telemd.errors import ErrorCode, RejectedError
from telemd.frame import decode_reply, encode_frame
from telemd.record import Record

ROOT = Path(__file__).resolve().parents[2]


def frame(payload: str = "x", classification: str = "org.example/test/intake") -> bytes:
    return encode_frame(Record(classification, 2, payload))


def raw_exchange(daemon: DaemonHarness, data: bytes, replies: int) -> list[tuple[str, str]]:
    """Write raw bytes, read `replies` reply lines (or until the daemon closes)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(daemon.socket)
        sock.sendall(data)
        buffer = b""
        while buffer.count(b"\n") < replies:
            chunk = sock.recv(4096)
            if not chunk:
                break
            buffer += chunk
    return [decode_reply(line) for line in buffer.splitlines()]


@pytest.fixture(scope="module")
def legacy_client(tmp_path_factory: pytest.TempPathFactory) -> str:
    compiler = shutil.which("cc")
    if compiler is None:
        pytest.skip("needs a C compiler (cc) to build the legacy libtelemetry-style client")
    binary = tmp_path_factory.mktemp("c") / "legacy_client"
    subprocess.run(
        [compiler, "-O2", "-o", str(binary), str(ROOT / "tests" / "c" / "legacy_client.c")],
        check=True,
    )
    return str(binary)


def test_a_c_probe_writing_clears_frame_is_stored(
    daemon: DaemonHarness, legacy_client: str
) -> None:
    result = subprocess.run(
        [legacy_client, daemon.socket, "org.clearlinux/crash/clr", "3", "Signal: 11\n", "3"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    # libtelemetry reads no acknowledgement, so there is no event to await here.
    assert wait_until(lambda: len(daemon.records()) == 3)
    row = daemon.records()[0]
    assert (row["classification"], row["severity"], row["payload"]) == (
        "org.clearlinux/crash/clr",
        3,
        "Signal: 11\n",
    )
    assert row["event_id"] == "0123456789abcdef0123456789abcdef"
    # The daemon is the authority for host metadata and the machine id.
    assert row["cpu_model"] != "Legacy CPU"
    assert row["kernel_version"] == os.uname().release
    assert row["machine_id"] != "FFFFFFFF"


def test_the_cfg_field_is_accepted_and_ignored(daemon: DaemonHarness, legacy_client: str) -> None:
    evil = daemon.root / "evil.toml"
    evil.write_text('spool_dir = "/tmp/elsewhere"\n')
    subprocess.run([legacy_client, daemon.socket, "a/b/c", "1", "cfg", "1", str(evil)], check=True)
    assert wait_until(lambda: len(daemon.records()) == 1)
    assert daemon.wait_for_log(f"ignoring CFG: {evil}")


def test_opted_out_stores_nothing_and_says_so(daemon: DaemonHarness) -> None:
    daemon.opt_out()
    with daemon.client() as client, pytest.raises(RejectedError) as info:
        client.send(Record("a/b/c", 1, "x"))
    assert info.value.code == ErrorCode.OPTED_OUT
    daemon.opt_in()
    with daemon.client() as client:
        record_id = client.send(Record("a/b/c", 1, "x"))
    assert daemon.record_ids() == {record_id}


def test_replies_come_in_frame_order_and_bad_frames_do_not_end_the_connection(
    daemon: DaemonHarness,
) -> None:
    bad = frame().replace(b"severity: 2", b"severity: X")
    frames = [frame(f"n{i}") if i % 3 else bad for i in range(300)]
    with daemon.client() as client:
        client.write_frames(frames)
        outcomes = []
        for _ in frames:
            try:
                outcomes.append(client.read_reply())
            except RejectedError as exc:
                outcomes.append(exc.code)
    assert outcomes[0::3] == [ErrorCode.INVALID] * 100
    accepted = [outcome for i, outcome in enumerate(outcomes) if i % 3]
    assert len(set(accepted)) == 200
    assert [row["payload"] for row in daemon.records()] == [f"n{i}" for i in range(300) if i % 3]
    assert [row["record_id"] for row in daemon.records()] == accepted


@pytest.mark.parametrize(
    ("data", "code", "message"),
    [
        ((0).to_bytes(4, "little"), "invalid", "frame size 0 is smaller"),
        ((0xFFFFFFFF).to_bytes(4, "little"), "too-large", "exceeds the limit"),
        ((100).to_bytes(4, "little") + b"junk" * 24, "invalid", "header size"),
    ],
)
def test_malformed_frames_get_an_error_and_the_next_client_is_served(
    daemon: DaemonHarness, data: bytes, code: str, message: str
) -> None:
    [(status, detail)] = raw_exchange(daemon, data, 1)
    assert status == code and message in detail
    with daemon.client() as client:
        assert client.send(Record("a/b/c", 1, "after"))


def test_a_truncated_frame_is_reported_when_the_client_stops_writing(
    daemon: DaemonHarness,
) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(daemon.socket)
        sock.sendall(frame()[:50])
        sock.shutdown(socket.SHUT_WR)
        reply = sock.recv(4096)
    status, detail = decode_reply(reply)
    assert status == "invalid" and "closed 50 bytes into a frame" in detail
    assert daemon.records() == []


def test_a_slow_writer_is_cut_off_at_the_client_timeout(harness: DaemonHarness) -> None:
    harness.write_config(client_timeout=0.3)
    harness.start()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(harness.socket)
        sock.sendall(frame()[:20])
        reply = sock.recv(4096)
        assert sock.recv(4096) == b""  # and the connection is closed
    status, detail = decode_reply(reply)
    assert status == "invalid" and "not completed within 0.3 s" in detail


def test_idle_connections_do_not_keep_a_client_waiting(daemon: DaemonHarness) -> None:
    idle = []
    try:
        for _ in range(300):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(daemon.socket)
            idle.append(sock)
        with daemon.client(timeout=2.0) as client:
            assert client.send(Record("a/b/c", 1, "through the crowd"))
    finally:
        for sock in idle:
            sock.close()


def test_at_max_clients_idle_connections_make_room(harness: DaemonHarness) -> None:
    harness.write_config(max_clients=20)
    harness.start()
    idle = []
    try:
        for _ in range(40):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(10)
            sock.connect(harness.socket)
            idle.append(sock)
        # Fresh connections are never evicted (they may hold unread frames);
        # once idle for SHED_AFTER_IDLE, counted from when the daemon
        # accepted them, they give way to a new client. The rule is about
        # elapsed time, so the test lets that time pass.
        time.sleep(2 * SHED_AFTER_IDLE)
        with harness.client(timeout=5.0) as client:
            record_id = client.send(Record("a/b/c", 1, "made room"))
        assert harness.record_ids() == {record_id}
        assert harness.wait_for_log("(max_clients): closing idle ones")
        closed = sum(1 for sock in idle if _closed_by_peer(sock))
        assert closed >= 1
    finally:
        for sock in idle:
            sock.close()


def _closed_by_peer(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_the_spool_quota_refuses_with_spool_full(harness: DaemonHarness) -> None:
    harness.write_config(spool_max_size=2)  # KiB
    harness.start()
    codes = []
    with harness.client() as client:
        for _ in range(10):
            try:
                client.send(Record("a/b/c", 1, "y" * 400))
                codes.append("OK")
            except RejectedError as exc:
                codes.append(exc.code)
    assert codes[:2] == ["OK", "OK"]
    assert codes[-1] == ErrorCode.SPOOL_FULL
    assert len(harness.records()) == codes.count("OK")


def test_a_uid_over_budget_is_throttled_while_another_uid_is_not(
    harness: DaemonHarness, tmp_path: Path
) -> None:
    with directory_for_nobody(tmp_path, "send as a second uid") as public:
        harness.socket = str(public / "telem-0")
        harness.write_config(uid_records_per_minute=3, socket_path=harness.socket)
        harness.start()
        try:
            results = []
            with harness.client() as client:
                for _ in range(4):
                    try:
                        results.append(client.send(Record("a/b/c", 1, "root")) and "OK")
                    except RejectedError as exc:
                        results.append(exc.code)
            assert results == ["OK", "OK", "OK", ErrorCode.THROTTLED]
            other = subprocess.run(
                [
                    *AS_NOBODY,
                    sys.executable,
                    "-c",
                    "import sys; from telemd.client import send; from telemd.record import Record;"
                    "print(send(Record('a/b/c', 1, 'nobody'), socket_path=sys.argv[1]))",
                    harness.socket,
                ],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert other.returncode == 0, other.stderr
            assert {row["sender_uid"] for row in harness.records()} == {0, NOBODY_UID}
        finally:
            harness.stop()


def test_sighup_reloads_the_configuration(daemon: DaemonHarness) -> None:
    daemon.write_config(max_payload_size=10)
    mark = len(daemon.log)
    daemon.signal(signal.SIGHUP)
    assert daemon.wait_for_log("configuration reloaded", after=mark)
    with daemon.client() as client, pytest.raises(RejectedError) as info:
        client.send(Record("a/b/c", 1, "x" * 11, max_payload_size=100))
    assert info.value.code == ErrorCode.TOO_LARGE


def test_a_bad_reload_keeps_the_running_configuration(daemon: DaemonHarness) -> None:
    daemon.config.write_text("max_clients = 'many'\n")
    mark = len(daemon.log)
    daemon.signal(signal.SIGHUP)
    assert daemon.wait_for_log("reload failed, keeping the running configuration", after=mark)
    with daemon.client() as client:
        assert client.send(Record("a/b/c", 1, "still here"))


def test_socket_and_directories_get_their_modes(harness: DaemonHarness) -> None:
    harness.write_config(socket_mode=0o660)
    harness.start()
    assert stat.S_IMODE(os.stat(harness.socket).st_mode) == 0o660
    assert stat.S_IMODE(os.stat(harness.spool_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(harness.state_dir).st_mode) == 0o750


def test_a_stale_socket_is_replaced_but_a_live_daemon_is_not(harness: DaemonHarness) -> None:
    Path(harness.socket).parent.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(harness.socket)
    stale.close()  # bound but nobody listens: what a killed daemon leaves
    harness.start()
    second = harness.run_to_exit()
    assert second.returncode == 1
    assert f"another daemon is already listening on {harness.socket}" in second.stderr
    with harness.client() as client:
        assert client.send(Record("a/b/c", 1, "first daemon still serves"))


def test_a_world_writable_spool_directory_is_refused(harness: DaemonHarness) -> None:
    harness.spool_dir.mkdir(mode=0o777)
    harness.spool_dir.chmod(0o777)
    result = harness.run_to_exit()
    assert result.returncode == 1
    assert f"{harness.spool_dir} is writable by other users" in result.stderr


def test_bad_configuration_exits_78_with_one_line(harness: DaemonHarness) -> None:
    harness.config.write_text("spool_max_size = '5 MB'\n")
    result = harness.run_to_exit()
    assert result.returncode == 78
    assert result.stderr.count("\n") == 1
    assert str(harness.config) in result.stderr and "spool_max_size" in result.stderr


@pytest.mark.parametrize("choice", ["asyncio", "uvloop"])
def test_the_daemon_serves_on_either_event_loop(harness: DaemonHarness, choice: str) -> None:
    pytest.importorskip("uvloop", reason="uvloop is a dependency on Linux (pyproject.toml)")
    harness.write_config(event_loop=choice)
    harness.start()
    assert harness.wait_for_log(f"event loop {choice}")
    with harness.client() as client:
        client.write_frames([frame(f"on {choice} {i}") for i in range(50)])
        record_ids = [client.read_reply() for _ in range(50)]
    rows = harness.records()
    assert [row["record_id"] for row in rows] == record_ids
    assert [row["payload"] for row in rows] == [f"on {choice} {i}" for i in range(50)]


@pytest.mark.parametrize("choice", ["asyncio", "uvloop"])
def test_a_burst_of_c_probes_past_the_connection_caps_loses_nothing(
    harness: DaemonHarness, legacy_client: str, choice: str
) -> None:
    # Tiny caps, so that the burst finds no room: newcomers must wait, unread,
    # with the rest in the listen queue, and be read once room frees.
    harness.write_config(
        max_uid_connections=4, max_clients=8, uid_records_per_minute=-1, event_loop=choice
    )
    harness.start()
    senders = [
        subprocess.Popen([legacy_client, harness.socket, "a/b/c", "1", f"burst {n}", "300"])
        for n in range(8)
    ]
    assert all(sender.wait(60) == 0 for sender in senders)
    # libtelemetry's probes get no acknowledgement; the spool is all there is to await.
    assert wait_until(lambda: len(harness.records()) == 8 * 300, timeout=30)
    assert not any("refusing" in line or "closing idle" in line for line in harness.log)
