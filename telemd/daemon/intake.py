"""The probe socket: take frames from local clients, spool them, acknowledge.

Per frame: opt-in check, decode and validate, per-uid budget, spool quota,
then the entry goes to the spool writer and the client hears `OK <record_id>`
once it is on disk, or `ERR <code> <message>`. Replies on a connection keep
the order of its frames. Nothing a client sends may raise out of here: bad
frames get an error reply, and the daemon goes on serving everyone else.

Limits that keep one client from hurting the others: a frame size bound, a
deadline to finish each frame (`client_timeout`), the connection limits
(`max_uid_connections` per uid, `max_clients` in all, never more than the
descriptor limit allows; telemd/daemon/peers.py picks what may be shed),
fair reading (each uid, however many connections it holds, has
FRAMES_PER_ROUND frames read per turn of the loop, its connections in
turn), and the per-uid budget.

Every frame refused, and every record taken once a value was normalised,
is journaled (`daemon/intake_journal.py`).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import stat
import time
from collections.abc import Callable

from telemd.daemon.budget import UidBudget
from telemd.daemon.intake_connection import Connection
from telemd.daemon.intake_journal import IntakeJournal
from telemd.daemon.peers import SHED_AFTER_IDLE, PeerTable, descriptor_room
from telemd.daemon.spool import Entry, HostKey, Spool
from telemd.errors import ErrorCode, TelemetryError
from telemd.frame import decode_frame, encode_error, encode_ok, max_frame_size
from telemd.record import new_record_id

log = logging.getLogger("telemd.intake")

# Also how many connections asyncio accepts per turn of the loop: a burst of
# libtelemetry connections waits in the kernel rather than in our memory
# (1024 here cost 20 MiB of RSS under 8 legacy senders, for no more throughput).
LISTEN_BACKLOG = 128
# Frames read per uid per turn of the loop, over all its connections: one uid
# with a thousand pipelining connections gets a turn as long as another's.
FRAMES_PER_ROUND = 64
# Descriptors kept for everything but counted connections: the spool and
# journal files, telemctl, delivery, the connections accepted in one turn of
# the loop that wait for room, and those shed or refused, whose descriptors
# close a turn later.
DESCRIPTOR_RESERVE = 2 * LISTEN_BACKLOG + 64
# After accept() fails for want of descriptors or memory, the next try waits this long (s).
ACCEPT_RETRY = 0.1
# A newcomer that finds no room this long is refused, and so are its uid's
# next ones until one of its connections closes: a flood, not a burst of
# libtelemetry connections (theirs close as soon as their frame is stored).
HOLD_FOR = 0.5


class IntakeOptions:
    """The settings intake reads on every frame; replaced whole on reload."""

    __slots__ = (
        "client_timeout",
        "frame_limit",
        "journal_max",
        "max_clients",
        "max_payload_size",
        "max_uid_connections",
        "opt_in_file",
    )

    def __init__(
        self,
        *,
        opt_in_file: str,
        max_payload_size: int,
        max_clients: int,
        client_timeout: float,
        max_uid_connections: int = 128,
        journal_max: int = 10000,
    ) -> None:
        self.opt_in_file = opt_in_file
        self.journal_max = journal_max
        self.max_payload_size = max_payload_size
        self.frame_limit = max_frame_size(max_payload_size)
        self.max_clients = max_clients
        self.client_timeout = client_timeout
        self.max_uid_connections = max_uid_connections


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
        self._listener: socket.socket | None = None
        self._accepting = False
        self._opening = 0  # accepted, connection_made still to come
        # Accepted without room under the limits: wait, unread, oldest first, while
        # the rest wait in the kernel's listen queue.
        self._held_out: dict[Connection, None] = {}
        self._held: list[Connection] = []  # paused while the spool writer catches up
        spool.on_drained = self._release
        self._descriptor_room: int | None = None
        self.peers: PeerTable[Connection] = PeerTable(
            options.max_clients, options.max_uid_connections, self.monotonic
        )
        # Fair reading: frames read this turn per uid, and the connections
        # whose complete frames wait for their uid's next turn.
        self._read_this_round: dict[int, int] = {}
        self._waiting: dict[int, dict[Connection, None]] = {}
        self._round_scheduled = False
        # Uids whose newcomer waited HOLD_FOR without room: refused at their
        # limit until one of their connections closes.
        self._saturated: set[int] = set()
        self.stopping = False
        self.accepted = 0
        self.shed = 0
        self.refused = 0
        self.errors: dict[str, int] = {}
        self.journal = IntakeJournal(
            spool, host_key, lambda: self.options.journal_max, wall_clock=wall_clock
        )

    @property
    def connections(self) -> int:
        return self.peers.count

    async def start(self, listener: socket.socket) -> None:
        self._descriptor_room = descriptor_room(DESCRIPTOR_RESERVE)
        self.apply(self.options)
        self._listener = listener
        self._accept_more()

    def apply(self, options: IntakeOptions) -> None:
        """Take new settings (at start and on reload)."""
        self.options = options
        room = self._descriptor_room
        limit = options.max_clients if room is None else min(options.max_clients, room)
        if limit < options.max_clients:
            log.warning(
                "max_clients = %d needs more descriptors than RLIMIT_NOFILE leaves"
                " (%d kept for the daemon's own use): at most %d connections at once",
                options.max_clients,
                DESCRIPTOR_RESERVE,
                limit,
            )
        self.peers.limit = limit
        self.peers.per_uid = options.max_uid_connections

    async def stop(self, grace: float) -> None:
        """Stop accepting, let frames already received reach the disk, close."""
        self.stopping = True
        self._stop_accepting()
        if self._listener is not None:
            self._listener.close()
        self.journal.close()
        try:
            await asyncio.wait_for(self.spool.wait_idle(), grace)
        except asyncio.TimeoutError:
            log.warning("spool still busy after %g s; closing connections", grace)
        for conn in self.peers:
            conn.close()

    # Accepting -------------------------------------------------------------

    def _accept_more(self) -> None:
        if self._listener is not None and not self._accepting and not self.stopping:
            self._accepting = True
            self.loop.add_reader(self._listener.fileno(), self._accept)

    def _stop_accepting(self) -> None:
        if self._accepting and self._listener is not None:
            self._accepting = False
            self.loop.remove_reader(self._listener.fileno())

    def _accept(self) -> None:
        """Accept what waits, up to LISTEN_BACKLOG a turn. At the limit one more
        is taken, to see whether its uid may have another's idle connection
        shed for it; the rest wait in the kernel's listen queue."""
        assert self._listener is not None
        for _ in range(LISTEN_BACKLOG):
            if not self._may_accept():
                self._stop_accepting()
                return
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno == errno.ECONNABORTED:
                    continue
                # Out of descriptors or memory despite the reserve: wait, do not spin.
                log.error("cannot accept a connection: %s", exc.strerror, extra=_ACCEPT)
                self._stop_accepting()
                self.loop.call_later(ACCEPT_RETRY, self._accept_more)
                return
            self._opening += 1
            self.loop.create_task(self._open(sock))

    async def _open(self, sock: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(lambda: Connection(self), sock)
        except OSError:
            sock.close()  # the client went away before its connection was set up
        finally:
            self._opening -= 1
            if self._may_accept():
                self._accept_more()

    def _may_accept(self) -> bool:
        return not self._held_out and self.peers.count + self._opening <= self.peers.limit

    # Connection bookkeeping --------------------------------------------

    def register(self, conn: Connection) -> bool:
        """Count a new connection in; False when it must wait to be, or is refused."""
        if self._make_room(conn):
            self.peers.add(conn)
            return True
        # Held while one uid floods, it would keep every other uid waiting
        # in the listen queue behind it: such a uid is refused instead.
        if conn.uid in self._saturated:
            self._refuse(conn)
            return False
        self._held_out[conn] = None
        conn.held_out = True
        conn.held_since = self.monotonic()
        self._stop_accepting()
        # Paused on the next callback: uvloop starts reading after connection_made.
        self.loop.call_soon(conn.pause_if_held_out)
        self.loop.call_later(SHED_AFTER_IDLE, self._retry_held_out, conn)
        return False

    def _make_room(self, conn: Connection) -> bool:
        """Whether `conn` fits under both limits, shedding a connection if one may go."""
        peers = self.peers
        if peers.uid_count(conn.uid) >= peers.per_uid:
            victim = peers.own_idle(conn.uid)
            if victim is None:
                return False
            self._shed(victim, "max_uid_connections")
        if peers.full:
            victim = peers.to_shed(conn.uid)
            if victim is None:
                return False
            self._shed(victim, "max_clients")
        return True

    def _shed(self, victim: Connection, limit: str) -> None:
        """Close `victim` to make room at `limit` (see PeerTable)."""
        self.shed += 1
        log.warning(
            "%d connections open, uid %d holding %d (%s): closing idle ones",
            self.peers.count,
            victim.uid,
            self.peers.uid_count(victim.uid),
            limit,
            extra=_SHED,
        )
        self._waiting.get(victim.uid, {}).pop(victim, None)
        self.peers.remove(victim)
        victim.abort()

    def unregister(self, conn: Connection) -> None:
        self._waiting.get(conn.uid, {}).pop(conn, None)
        self._saturated.discard(conn.uid)
        self._held_out.pop(conn, None)
        self.peers.remove(conn)
        self._admit_held_out()

    def _retry_held_out(self, conn: Connection) -> None:
        """Connections idle too briefly to be shed may have aged enough by now.
        After HOLD_FOR without room the uid is taken to be flooding."""
        if conn not in self._held_out:
            return
        self._admit_held_out()
        if conn not in self._held_out:
            return
        if self.monotonic() - conn.held_since < HOLD_FOR:
            self.loop.call_later(SHED_AFTER_IDLE, self._retry_held_out, conn)
            return
        self._saturated.add(conn.uid)
        for held in [c for c in self._held_out if c.uid == conn.uid]:
            del self._held_out[held]
            held.held_out = False
            self._refuse(held)
        self._admit_held_out()

    def _admit_held_out(self) -> None:
        """Count in the connections held out that now have room, oldest first;
        accept again once none waits."""
        for conn in list(self._held_out):
            if not self._make_room(conn):
                continue
            del self._held_out[conn]
            conn.held_out = False
            conn.active_at = self.monotonic()
            self.peers.add(conn)
            conn.start_reading()
        if self._may_accept():
            self._accept_more()

    def _refuse(self, conn: Connection) -> None:
        self.refused += 1
        log.warning(
            "%d connections open, uid %d holding %d (max_uid_connections %d, max_clients %d),"
            " none idle: refusing uid %d",
            self.peers.count,
            conn.uid,
            self.peers.uid_count(conn.uid),
            self.peers.per_uid,
            self.peers.limit,
            conn.uid,
            extra=_REFUSED,
        )
        conn.refuse(
            ErrorCode.THROTTLED,
            f"telemd serves at most {self.peers.per_uid} connections of a user and"
            f" {self.peers.limit} in all; try again",
        )

    def touch(self, conn: Connection) -> None:
        self.peers.touch(conn)

    # Fair reading ----------------------------------------------------------

    def read_frames(self, conn: Connection) -> None:
        """Handle what `conn` has buffered, within its uid's share of this turn."""
        uid = conn.uid
        used = self._read_this_round.get(uid, 0)
        if used < FRAMES_PER_ROUND:
            handled, more = conn.take_frames(FRAMES_PER_ROUND - used)
            self._read_this_round[uid] = used + handled
            self._schedule_round()
            if not more:
                self._read_on(conn)
                return
        conn.waiting = True
        conn.pause()
        self._waiting.setdefault(uid, {})[conn] = None
        self._schedule_round()

    def _schedule_round(self) -> None:
        if not self._round_scheduled:
            self._round_scheduled = True
            self.loop.call_soon(self._round)

    def _round(self) -> None:
        """A new turn: every uid's share is whole again, and the frames that
        waited are read, FRAMES_PER_ROUND per uid, its connections in turn."""
        self._round_scheduled = False
        self._read_this_round.clear()
        if self.spool.congested:
            return  # _release starts the next round
        for uid, waiting in list(self._waiting.items()):
            share = FRAMES_PER_ROUND
            while waiting and share > 0:
                conn = next(iter(waiting))
                del waiting[conn]
                if conn.closing:
                    conn.waiting = False
                    continue
                handled, more = conn.take_frames(share)
                share -= handled
                if more:
                    waiting[conn] = None  # to the back of its uid's line
                else:
                    conn.waiting = False
                    self._read_on(conn)
            if share < FRAMES_PER_ROUND:
                self._read_this_round[uid] = FRAMES_PER_ROUND - share
            if not waiting:
                del self._waiting[uid]
        if self._waiting or self._read_this_round:
            self._schedule_round()

    def _read_on(self, conn: Connection) -> None:
        if self.spool.congested:
            self.hold(conn)
        else:
            conn.resume()

    def hold(self, conn: Connection) -> None:
        """Stop reading from `conn` until the spool writer has caught up."""
        conn.pause()
        self._held.append(conn)

    def _release(self) -> None:
        held, self._held = self._held, []
        for conn in held:
            conn.resume()
        if self._waiting:
            self._schedule_round()

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


_SHED = {"cause": "shed"}
_ACCEPT = {"cause": "accept"}
_REFUSED = {"cause": "refused"}

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
