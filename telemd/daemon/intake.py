"""The probe socket: take frames from local clients, spool them, acknowledge.

Per frame: opt-in check, decode and validate, per-uid budget, spool quota,
then the entry goes to the spool writer and the client hears `OK <record_id>`
once it is on disk, or `ERR <code> <message>`. Replies on a connection keep
the order of its frames. Nothing a client sends may raise out of here: bad
frames get an error reply, and the daemon goes on serving everyone else.

Limits that keep one client from hurting the others: a frame size bound, a
deadline to finish each frame (`client_timeout`), at most `max_clients`
connections (when full, the least recently active connection of the uid
holding the most is closed), and the per-uid budget.

Every frame refused, and every record taken once a value was normalised,
is journaled (`daemon/intake_journal.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import time
from collections import deque
from collections.abc import Callable
from typing import cast

from telemd.daemon.budget import UidBudget
from telemd.daemon.intake_journal import IntakeJournal
from telemd.daemon.peers import peer_credentials
from telemd.daemon.spool import Entry, HostKey, Spool
from telemd.errors import ErrorCode, FrameError, TelemetryError
from telemd.frame import decode_frame, encode_error, encode_ok, frame_size, max_frame_size
from telemd.record import new_record_id

log = logging.getLogger("telemd.intake")

# Also how many connections asyncio accepts per turn of the loop: a burst of
# libtelemetry connections waits in the kernel rather than in our memory
# (1024 here cost 20 MiB of RSS under 8 legacy senders, for no more throughput).
LISTEN_BACKLOG = 128
# A connection this long without a complete frame may be evicted at max_clients.
EVICT_AFTER_IDLE = 0.25


class IntakeOptions:
    """The settings intake reads on every frame; replaced whole on reload."""

    __slots__ = (
        "client_timeout",
        "frame_limit",
        "journal_max",
        "max_clients",
        "max_payload_size",
        "opt_in_file",
    )

    def __init__(
        self,
        *,
        opt_in_file: str,
        max_payload_size: int,
        max_clients: int,
        client_timeout: float,
        journal_max: int = 10000,
    ) -> None:
        self.opt_in_file = opt_in_file
        self.journal_max = journal_max
        self.max_payload_size = max_payload_size
        self.frame_limit = max_frame_size(max_payload_size)
        self.max_clients = max_clients
        self.client_timeout = client_timeout


class Connection(asyncio.Protocol):
    """One client connection: splits the byte stream into frames, orders replies."""

    def __init__(self, intake: Intake) -> None:
        self.intake = intake
        self.transport: asyncio.Transport | None = None
        self.uid = -1
        self.pid = -1
        self.active_at = 0.0
        self._buffer = bytearray()
        self._replies: deque[list[bytes | None]] = deque()
        self._closing = False  # no more frames are read: EOF, fatal error or shutdown
        self._lost = False
        self._deadline: asyncio.TimerHandle | None = None

    # asyncio.Protocol --------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        with contextlib.suppress(OSError):
            self.pid, self.uid, _ = peer_credentials(sock)
        self.active_at = self.intake.monotonic()
        self.intake.register(self)
        self._deadline = self.intake.loop.call_later(
            self.intake.options.client_timeout, self._check_deadline
        )

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        buffer = self._buffer
        buffer += data
        limit = self.intake.options.frame_limit
        offset = 0
        try:
            while len(buffer) - offset >= 4:
                size = frame_size(buffer[offset : offset + 4], limit)
                if len(buffer) - offset < size:
                    break
                frame = bytes(buffer[offset : offset + size])
                offset += size
                self.intake.handle_frame(self, frame)
                if self._closing:
                    break
        except FrameError as exc:
            self.fail(exc)
            return
        finally:
            if offset:
                del buffer[:offset]
                self.active_at = self.intake.monotonic()
                self.intake.touch(self)
        if self.intake.spool.congested:
            self.intake.hold(self)

    def eof_received(self) -> bool:
        if self._buffer and not self._closing:
            self.fail(FrameError(f"connection closed {len(self._buffer)} bytes into a frame"))
        self._closing = True
        # Keep the transport open to write the replies still owed.
        return bool(self._replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._closing = True
        if self._deadline is not None:
            self._deadline.cancel()
        self.intake.unregister(self)

    # Replies, in frame order -------------------------------------------

    def reserve_reply(self) -> list[bytes | None]:
        slot: list[bytes | None] = [None]
        self._replies.append(slot)
        return slot

    def fill(self, slot: list[bytes | None], reply: bytes) -> None:
        slot[0] = reply
        if self._replies[0] is slot:
            self._flush()

    def _flush(self) -> None:
        replies = self._replies
        ready = []
        while replies and replies[0][0] is not None:
            ready.append(replies.popleft()[0])
        transport = self.transport
        if self._lost or transport is None:
            return
        if ready and not transport.is_closing():
            # A legacy client may be gone already; asyncio absorbs the EPIPE.
            transport.write(b"".join(ready))  # type: ignore[arg-type]
        if not replies and self._closing:
            transport.close()

    def fail(self, exc: FrameError) -> None:
        """Reply to a frame that cannot be decoded, then close the connection."""
        self.intake.refuse(self, exc)
        self._closing = True
        self._buffer.clear()
        self.fill(self.reserve_reply(), encode_error(exc.code, exc.message))

    def pause(self) -> None:
        if self.transport is not None and not self._lost:
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self._lost and not self._closing:
            self.transport.resume_reading()

    def owes_replies(self) -> bool:
        return bool(self._replies)

    def abort(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        """Stop reading; close once every reply owed has been written."""
        self._closing = True
        if self.transport is not None and not self._replies:
            self.transport.close()

    def _check_deadline(self) -> None:
        if self._lost:
            return
        intake = self.intake
        timeout = intake.options.client_timeout
        idle = intake.monotonic() - self.active_at
        if idle >= timeout and not self._replies:
            if self._buffer:
                self.fail(FrameError(f"frame not completed within {timeout:g} s"))
            else:
                self.close()
            return
        # Replies still waiting on the spool are not the client's fault.
        self._deadline = intake.loop.call_later(max(timeout - idle, 0.05), self._check_deadline)


class Intake:
    """Owns the listening socket and every connection on it."""

    def __init__(
        self,
        options: IntakeOptions,
        spool: Spool,
        host_key: Callable[[], HostKey],
        budget: UidBudget,
        *,
        on_stored: Callable[[], None] = lambda: None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.options = options
        self.spool = spool
        self.budget = budget
        self.loop = asyncio.get_running_loop()
        self.monotonic = self.loop.time
        self._host_key = host_key
        self._on_stored = on_stored
        self._wall_clock = wall_clock
        self._server: asyncio.AbstractServer | None = None
        self._held: list[Connection] = []  # paused while the spool writer catches up
        spool.on_drained = self._release
        self._by_uid: dict[int, dict[Connection, None]] = {}
        self.connections = 0
        self._quiet_until = 0.0  # no eviction warning before this time
        self.stopping = False
        self.accepted = 0
        self.errors: dict[str, int] = {}
        self.journal = IntakeJournal(
            spool, host_key, lambda: self.options.journal_max, wall_clock=wall_clock
        )

    async def start(self, listener: socket.socket) -> None:
        self._server = await self.loop.create_unix_server(
            lambda: Connection(self), sock=listener, backlog=LISTEN_BACKLOG
        )

    async def stop(self, grace: float) -> None:
        """Stop accepting, let frames already received reach the disk, close."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        self.journal.close()
        try:
            await asyncio.wait_for(self.spool.wait_idle(), grace)
        except asyncio.TimeoutError:
            log.warning("spool still busy after %g s; closing connections", grace)
        for conns in list(self._by_uid.values()):
            for conn in list(conns):
                conn.close()

    # Connection bookkeeping --------------------------------------------

    def register(self, conn: Connection) -> None:
        if self.connections >= self.options.max_clients:
            self._evict_idle()
        self._by_uid.setdefault(conn.uid, {})[conn] = None
        self.connections += 1

    def unregister(self, conn: Connection) -> None:
        conns = self._by_uid.get(conn.uid)
        if conns is None or conn not in conns:
            return  # evicted earlier
        del conns[conn]
        self.connections -= 1
        if not conns:
            del self._by_uid[conn.uid]

    def touch(self, conn: Connection) -> None:
        """Mark `conn` as the most recently active of its uid (dicts keep order)."""
        conns = self._by_uid.get(conn.uid)
        if conns is not None and conn in conns:
            del conns[conn]
            conns[conn] = None

    def _evict_idle(self) -> None:
        """At max_clients, close the least recently active connection of the uid
        holding the most, if it has been idle a while and is owed no reply.

        A burst of fresh connections (libtelemetry's way: connect, write,
        close) is never evicted: its frames may still sit unread in the
        socket. Such a burst may briefly exceed max_clients instead.
        """
        heaviest = max(self._by_uid.values(), key=len)
        victim = next(iter(heaviest))
        if self.monotonic() - victim.active_at < EVICT_AFTER_IDLE or victim.owes_replies():
            return
        now = self.monotonic()
        if now >= self._quiet_until:
            log.warning(
                "%d connections open (max_clients): closing idle ones, first of uid %d",
                self.connections,
                victim.uid,
            )
            self._quiet_until = now + 10.0
        self.unregister(victim)
        victim.abort()

    def hold(self, conn: Connection) -> None:
        """Stop reading from `conn` until the spool writer has caught up."""
        conn.pause()
        self._held.append(conn)

    def _release(self) -> None:
        held, self._held = self._held, []
        for conn in held:
            conn.resume()

    def count_error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1

    def refuse(self, conn: Connection, exc: TelemetryError) -> None:
        """Count a refused frame and journal it (daemon/intake_journal.py)."""
        self.count_error(exc.code)
        self.journal.refused(conn.uid, conn.pid, exc)

    # One frame -----------------------------------------------------------

    def handle_frame(self, conn: Connection, frame: bytes) -> None:
        slot = conn.reserve_reply()
        try:
            entry = self._admit(conn, frame)
        except TelemetryError as exc:
            self.refuse(conn, exc)
            conn.fill(slot, encode_error(exc.code, exc.message))
            return
        except Exception:  # a defect must cost one frame, never the daemon
            log.exception("unexpected error handling a frame from pid %d", conn.pid)
            self.refuse(conn, TelemetryError("internal error; see the daemon log"))
            conn.fill(slot, encode_error(ErrorCode.INTERNAL, "internal error; see the daemon log"))
            return
        record_id = entry[0]
        ok = encode_ok(record_id)

        def done(error: str | None) -> None:
            if error is None:
                self.accepted += 1
                conn.fill(slot, ok)
                self._on_stored()
            else:
                message = _STORE_ERRORS.get(error, "cannot store")
                refused = TelemetryError(message, error)
                refused.classification = entry[3]
                self.refuse(conn, refused)
                conn.fill(slot, encode_error(error, message))

        self.spool.submit(entry, done)

    def _admit(self, conn: Connection, frame: bytes) -> Entry:
        options = self.options
        if self.stopping:
            raise TelemetryError("the daemon is shutting down", ErrorCode.SHUTTING_DOWN)
        if not os.path.exists(options.opt_in_file):
            raise TelemetryError(
                "telemetry is opted out; opt in with 'telemctl opt-in'", ErrorCode.OPTED_OUT
            )
        decoded = decode_frame(frame, options.max_payload_size)
        record = decoded.record
        if decoded.config_path is not None:
            log.debug("ignoring CFG: %s from pid %d", decoded.config_path, conn.pid)
        try:
            if not self.budget.allow(conn.uid):
                raise TelemetryError(
                    f"uid {conn.uid} is over its budget of {self.budget.per_minute} records"
                    " a minute",
                    ErrorCode.THROTTLED,
                )
            size = len(frame)
            if not self.spool.reserve(size):
                raise TelemetryError(
                    f"the spool is at its limit of {self.spool.max_bytes} bytes",
                    ErrorCode.SPOOL_FULL,
                )
        except TelemetryError as exc:
            exc.classification = record.classification
            raise
        record_id = new_record_id()
        host_key = self._host_key()
        if decoded.notes is not None:
            # Queued first, so it commits with the record or before it.
            self.journal.normalised_record(conn.uid, record_id, decoded)
        return (
            record_id,
            self._wall_clock(),
            record.creation_timestamp,
            record.classification,
            record.severity,
            record.payload_format_version,
            record.event_id,
            record.payload,
            size,
            host_key,
            conn.uid,
            conn.pid,
        )


_STORE_ERRORS = {
    ErrorCode.SPOOL_FULL: "the spool's file system is full",
    ErrorCode.INTERNAL: "the spool cannot be written; see the daemon log",
}


def bind_unix_socket(path: str, mode: int) -> socket.socket:
    """Bind the probe socket: make its directory, replace a stale socket, set its mode."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    try:
        existing = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(existing.st_mode):
            raise TelemetryError(f"{path} exists and is not a socket; refusing to replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # nobody listens: a leftover of a daemon that died
        else:
            raise TelemetryError(f"another daemon is already listening on {path}")
        finally:
            probe.close()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        os.chmod(path, mode)
        listener.listen(LISTEN_BACKLOG)
    except OSError:
        listener.close()
        raise
    listener.setblocking(False)
    return listener
