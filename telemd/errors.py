"""The error hierarchy shared by the daemon, the client library and the CLIs.

Every error carries a stable code from `ErrorCode`: the daemon replies with it
on the probe socket (`ERR <code> <message>`), and the CLIs print it. This
module sits on the probe path, so it imports nothing (not even `enum`, whose
import alone costs a third of a probe's start-up budget).
"""

from __future__ import annotations


class ErrorCode:
    """Stable, machine-readable error codes; the values go on the wire."""

    OPTED_OUT = "opted-out"
    INVALID = "invalid"
    TOO_LARGE = "too-large"
    SPOOL_FULL = "spool-full"
    THROTTLED = "throttled"
    SHUTTING_DOWN = "shutting-down"
    INTERNAL = "internal"
    # Raised by clients only; the daemon never sends these.
    UNAVAILABLE = "unavailable"
    PROTOCOL = "protocol"
    CONFIG = "config"


class TelemetryError(Exception):
    """Root of every error telemd raises on purpose."""

    code: str = ErrorCode.INTERNAL
    # The classification of the record refused, where the frame let it be read.
    classification: str | None = None

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class RecordError(TelemetryError):
    """A record breaks the rules of `telemd.record`."""

    code = ErrorCode.INVALID


class FrameError(RecordError):
    """A frame cannot be decoded.

    `fatal` means the byte stream cannot be resynchronised: the connection
    must be closed after the reply.
    """

    def __init__(self, message: str, code: str = ErrorCode.INVALID, *, fatal: bool = False):
        super().__init__(message, code)
        self.fatal = fatal


class ConfigError(TelemetryError):
    """Configuration that cannot be used; the message names file, key and value."""

    code = ErrorCode.CONFIG


# The exit status of every command stopped by a ConfigError (sysexits.h
# EX_CONFIG); systemd units do not restart a service on it.
EX_CONFIG = 78


class DaemonUnavailable(TelemetryError):
    """The client could not reach the daemon's socket."""

    code = ErrorCode.UNAVAILABLE


class RejectedError(TelemetryError):
    """The daemon answered `ERR <code> <message>`."""
