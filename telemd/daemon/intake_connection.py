"""One probe-socket connection: its byte stream split into frames, its replies in order.

The connection reads only when intake (daemon/intake.py) gives its uid a
turn, and closes itself when a frame is not completed within
`client_timeout`; every decision about frames and limits is intake's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import TYPE_CHECKING, cast

from telemd.daemon.peers import peer_credentials
from telemd.errors import FrameError
from telemd.frame import encode_error, frame_size

if TYPE_CHECKING:
    from telemd.daemon.intake import Intake


class Connection(asyncio.Protocol):
    """One client connection: splits the byte stream into frames, orders replies."""

    def __init__(self, intake: Intake) -> None:
        self.intake = intake
        self.transport: asyncio.Transport | None = None
        self.uid = -1
        self.pid = -1
        self.active_at = 0.0
        self.held_out = False  # no room under the limits: waits, unread, to be counted
        self.held_since = 0.0
        self.waiting = False  # complete frames are buffered until its uid's next turn
        self._buffer = bytearray()
        self._replies: deque[list[bytes | None]] = deque()
        self._closing = False  # no more frames are read: EOF, fatal error or shutdown
        self._eof = False  # seen while frames waited: acted on once they are read
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
        if self.intake.register(self):
            self._start_deadline()

    def start_reading(self) -> None:
        """Counted in after waiting over the limit: read what it sends."""
        self._start_deadline()
        self.intake.read_frames(self)

    def _start_deadline(self) -> None:
        self._deadline = self.intake.loop.call_later(
            self.intake.options.client_timeout, self._check_deadline
        )

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self._buffer += data
        if self.waiting or self.held_out:
            # uvloop may deliver a read that was under way when reading paused.
            self.pause()
        else:
            self.intake.read_frames(self)

    def eof_received(self) -> bool:
        if self.waiting or self.held_out:
            self._eof = True  # the frames before it are read first, in the uid's turn
            return True
        self._end_of_input()
        # Keep the transport open to write the replies still owed.
        return bool(self._replies)

    def _end_of_input(self) -> None:
        if self._buffer and not self._closing:
            self.fail(FrameError(f"connection closed {len(self._buffer)} bytes into a frame"))
        self._closing = True

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._closing = True
        if self._deadline is not None:
            self._deadline.cancel()
        self.intake.unregister(self)

    # Frames --------------------------------------------------------------

    def take_frames(self, most: int) -> tuple[int, bool]:
        """Handle up to `most` complete frames from the buffer; how many were
        handled and whether more may be waiting."""
        buffer = self._buffer
        limit = self.intake.options.frame_limit
        offset = handled = 0
        try:
            while handled < most and len(buffer) - offset >= 4:
                size = frame_size(buffer[offset : offset + 4], limit)
                if len(buffer) - offset < size:
                    break
                frame = bytes(buffer[offset : offset + size])
                offset += size
                handled += 1
                self.intake.handle_frame(self, frame)
                if self._closing:
                    break
        except FrameError as exc:
            self.fail(exc)
            return handled, False
        finally:
            if offset:
                del buffer[:offset]
                self.active_at = self.intake.monotonic()
                self.intake.touch(self)
        return handled, handled == most and not self._closing and len(buffer) >= 4

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
        self.intake.refuse(self, exc)  # journaled and logged once per uid and reason
        self._closing = True
        self._buffer.clear()
        self.fill(self.reserve_reply(), encode_error(exc.code, exc.message))

    def refuse(self, code: str, message: str) -> None:
        """Answer a connection that is not served with one error, then close it."""
        self._closing = True
        self.fill(self.reserve_reply(), encode_error(code, message))

    def pause(self) -> None:
        if self.transport is not None and not self._lost:
            self.transport.pause_reading()

    def pause_if_held_out(self) -> None:
        if self.held_out:  # not counted in meanwhile
            self.pause()

    def resume(self) -> None:
        if self.waiting or self.held_out:
            return  # served in its uid's turn, or once counted in
        if self._eof:
            self._end_of_input()
            self.close()
        elif self.transport is not None and not self._lost and not self._closing:
            self.transport.resume_reading()

    def owes_replies(self) -> bool:
        return bool(self._replies)

    def busy(self) -> bool:
        """Owes replies or holds frames not yet read."""
        return bool(self._replies) or self.waiting

    @property
    def closing(self) -> bool:
        return self._closing

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
        # Replies still waiting on the spool and frames waiting for their
        # uid's turn are not the client's fault.
        if idle >= timeout and not self.busy():
            if self._buffer:
                self.fail(FrameError(f"frame not completed within {timeout:g} s"))
            else:
                self.close()
            return
        self._deadline = intake.loop.call_later(max(timeout - idle, 0.05), self._check_deadline)
