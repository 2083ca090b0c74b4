"""Send records to telemd: the library every probe uses.

    from telemd.client import send
    from telemd.record import Record

    record_id = send(Record("com.example/backup/failed", 3, "disk /dev/sdb gone\\n"))

`send()` returns once the daemon has the record durably on disk, and raises a
`TelemetryError` subclass whose `code` says why otherwise. `Client` keeps
one connection for many records.

Start-up cost matters here: a probe imports this module, so it uses the C
`_socket` module rather than `socket` (which drags in `enum`), and reads its
three settings through `telemd.clientconfig`.
"""

from __future__ import annotations

import _socket
import _struct
import errno
import os

from telemd.clientconfig import client_settings
from telemd.errors import DaemonUnavailable, ErrorCode, RejectedError, TelemetryError
from telemd.frame import decode_reply, encode_frame
from telemd.record import Record

DEFAULT_TIMEOUT = 10.0
_MAX_REPLY = 4096


def is_opted_in(config_file: str | None = None) -> bool:
    return os.path.exists(client_settings(config_file).opt_in_file)


class Client:
    """One connection to the daemon; records are acknowledged one by one, in order."""

    def __init__(
        self,
        config_file: str | None = None,
        *,
        socket_path: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.socket_path = socket_path or client_settings(config_file).socket_path
        self._sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self._pending = b""
        try:
            self._connect(timeout)
        except OSError as exc:
            self._sock.close()
            if exc.errno == errno.EAGAIN:
                raise DaemonUnavailable(
                    f"telemd at {self.socket_path} is busy: its queue of new connections "
                    f"stayed full for {timeout:g} s"
                ) from None
            raise DaemonUnavailable(
                f"telemd is not running: cannot connect to {self.socket_path}: {exc.strerror}"
            ) from None
        self._sock.settimeout(timeout)

    def _connect(self, timeout: float) -> None:
        # A socket with a Python timeout is non-blocking, and a non-blocking
        # connect to a Unix socket whose listen queue is full fails at once
        # with EAGAIN. A blocking connect waits for room instead, as long as
        # SO_SNDTIMEO allows: a burst of probes queues up rather than fails.
        seconds = int(timeout)
        # Both zero would mean "wait for ever".
        microseconds = max(int((timeout - seconds) * 1_000_000), 0 if seconds else 1)
        self._sock.setsockopt(
            _socket.SOL_SOCKET, _socket.SO_SNDTIMEO, _struct.pack("ll", seconds, microseconds)
        )
        self._sock.connect(self.socket_path)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def send(self, record: Record) -> str:
        """Send one record and return its record id once it is on disk."""
        self.write_frames([encode_frame(record)])
        return self.read_reply()

    def write_frames(self, frames: list[bytes]) -> None:
        """Write frames without waiting; read one reply per frame with `read_reply`."""
        try:
            self._sock.sendall(b"".join(frames))
        except OSError as exc:
            raise DaemonUnavailable(
                f"lost the connection to telemd at {self.socket_path}: {exc.strerror}"
            ) from None

    def read_reply(self) -> str:
        """Read the next reply: the record id, or raise RejectedError with its code."""
        line = self._read_line()
        status, detail = decode_reply(line)
        if status == "OK":
            return detail
        raise RejectedError(detail, status)

    def _read_line(self) -> bytes:
        buffer = self._pending
        while b"\n" not in buffer:
            try:
                chunk = self._sock.recv(_MAX_REPLY)
            except TimeoutError:
                raise DaemonUnavailable(
                    f"telemd at {self.socket_path} did not answer in time"
                ) from None
            except OSError as exc:
                raise DaemonUnavailable(
                    f"lost the connection to telemd at {self.socket_path}: {exc.strerror}"
                ) from None
            if not chunk:
                raise DaemonUnavailable(
                    f"telemd at {self.socket_path} closed the connection before acknowledging"
                )
            buffer += chunk
        line, _, self._pending = buffer.partition(b"\n")
        return line


def send(
    record: Record,
    *,
    config_file: str | None = None,
    socket_path: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> str:
    """Send `record` to telemd; return its record id once it is durably spooled."""
    with Client(config_file, socket_path=socket_path, timeout=timeout) as client:
        return client.send(record)


__all__ = [
    "Client",
    "DaemonUnavailable",
    "ErrorCode",
    "Record",
    "RejectedError",
    "TelemetryError",
    "client_settings",
    "is_opted_in",
    "send",
]
