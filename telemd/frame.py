"""Clear's libtelemetry frame and telemd's one-line reply: encode and decode.

Pure code, no I/O. Byte layout (PROTOCOL.md section 1; integers are uint32,
little-endian):

    total_size | ["CFG:" path NUL] | header_size | 15 "name: value\\n" lines | payload | NUL

`total_size` counts the whole frame, itself included. telemd answers every
frame with `OK <record_id>\\n` or `ERR <code> <message>\\n`; libtelemetry
never reads it, telemd's own clients do.
"""

from __future__ import annotations

import os

from telemd.errors import ErrorCode, FrameError, RecordError
from telemd.record import (
    DEFAULT_MAX_PAYLOAD_SIZE,
    FRAME_SEVERITY_BOUNDS,
    HEADER_NAMES,
    RECORD_FORMAT_VERSION,
    Record,
    clamp_severity,
    is_event_id,
    new_event_id,
    normalise_classification,
    normalise_event_id,
    normalise_payload,
    parse_number,
    validate_classification,
)

# Not typing.TYPE_CHECKING: clients import this module, and typing is no
# module of the interpreter's start-up set.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import re

CFG_MAGIC = b"CFG:"
NUM_HEADERS = len(HEADER_NAMES)
# total_size + header_size + the closing NUL: the smallest frame there can be.
MIN_FRAME_SIZE = 4 + 4 + 1
# The reference daemon's bound beside the payload: 8 + 4 + PATH_MAX + 15 * 80.
FRAME_OVERHEAD_LIMIT = 8 + 4 + 4096 + NUM_HEADERS * 80
# What libtelemetry writes for machine_id; the daemon replaces it.
PLACEHOLDER_MACHINE_ID = "FFFFFFFF"

_PREFIXES = tuple(f"{name}: " for name in HEADER_NAMES)
_RECORD_VERSION = 0
_CLASSIFICATION = 1
_SEVERITY = 2
_TIMESTAMP = 4
_PAYLOAD_VERSION = 9
_EVENT_ID = 14
_SPACES = (" ", "\t")


def max_frame_size(max_payload_size: int = DEFAULT_MAX_PAYLOAD_SIZE) -> int:
    return FRAME_OVERHEAD_LIMIT + max_payload_size


def frame_size(prefix: bytes | bytearray, limit: int) -> int:
    """Read total_size from the first 4 bytes of a frame and check its bounds."""
    size = int.from_bytes(prefix[:4], "little")
    if size < MIN_FRAME_SIZE:
        raise FrameError(
            f"frame size {size} is smaller than the minimum of {MIN_FRAME_SIZE}", fatal=True
        )
    if size > limit:
        raise FrameError(
            f"frame size {size} exceeds the limit of {limit} bytes",
            ErrorCode.TOO_LARGE,
            fatal=True,
        )
    return size


class DecodedFrame:
    """A frame's record plus what the daemon reads but does not trust."""

    __slots__ = ("config_path", "notes", "record", "sent_headers")

    def __init__(
        self,
        record: Record,
        sent_headers: tuple[str, ...],
        config_path: str | None,
        notes: list[str] | None = None,
    ):
        self.record = record
        # Every header value as the client sent it, host metadata included.
        self.sent_headers = sent_headers
        # The optional CFG: field; the daemon logs it and never acts on it.
        self.config_path = config_path
        # What normalising changed (None: nothing), for the journal.
        self.notes = notes


_HEADER_BLOCK: re.Pattern[str] | None = None


def _header_block() -> re.Pattern[str]:
    """The 15 header lines in order, each value a group: one C call per frame.

    Compiled on first use: clients import this module and never decode."""
    global _HEADER_BLOCK
    if _HEADER_BLOCK is None:
        import re

        _HEADER_BLOCK = re.compile("".join(f"{re.escape(p)}([^\n]*)\n" for p in _PREFIXES))
    return _HEADER_BLOCK


def _header_values(block: str) -> tuple[str, ...]:
    """The header values of a block the fast match refused; raises the reason."""
    lines = block.split("\n")
    if len(lines) != NUM_HEADERS + 1 or lines[-1]:
        count = len(lines) - 1 if not lines[-1] else len(lines)
        raise FrameError(f"header block must have {NUM_HEADERS} lines, got {count}")
    values = []
    for index, line in enumerate(lines[:NUM_HEADERS]):
        prefix = _PREFIXES[index]
        if not line.startswith(prefix):
            raise FrameError(
                f"header line {index + 1} must be {HEADER_NAMES[index]!r}, got {line[:40]!r}"
            )
        values.append(line[len(prefix) :])
    return tuple(values)


def decode_frame(frame: bytes, max_payload_size: int = DEFAULT_MAX_PAYLOAD_SIZE) -> DecodedFrame:
    """Decode one complete frame (`len(frame)` equals its total_size).

    Raises FrameError with code `invalid` or `too-large`; such errors are not
    fatal to the stream because the frame's extent is already known.
    """
    end = len(frame)
    offset = 4
    config_path = None
    if frame[4:8] == CFG_MAGIC:
        nul = frame.find(b"\0", 8, end - 1)
        if nul < 0:
            raise FrameError("CFG: field is not NUL-terminated")
        config_path = frame[8:nul].decode(errors="replace")
        offset = nul + 1
    if offset + 4 > end - 1:
        raise FrameError("frame ends before its header size field")
    header_size = int.from_bytes(frame[offset : offset + 4], "little")
    offset += 4
    if header_size > end - 1 - offset:
        raise FrameError(
            f"header size {header_size} is larger than the {end - 1 - offset} bytes"
            " left in the frame"
        )
    if frame[end - 1] != 0:
        raise FrameError("frame does not end with a NUL byte")
    header_bytes = frame[offset : offset + header_size]
    try:
        block = header_bytes.decode()
    except UnicodeDecodeError:
        # libtelemetry copies DMI and cpuinfo strings byte for byte; those host
        # values are replaced anyway, and Latin-1 takes every byte.
        block = header_bytes.decode("latin-1")
    match = _header_block().fullmatch(block)
    values = match.groups() if match is not None else _header_values(block)
    try:
        return _decode_values(
            values, frame[offset + header_size : end - 1], max_payload_size, config_path
        )
    except RecordError as exc:
        exc.classification = values[_CLASSIFICATION][:200]
        raise


def _decode_values(
    values: tuple[str, ...], raw_payload: bytes, max_payload_size: int, config_path: str | None
) -> DecodedFrame:
    """The record of a frame's header values and payload, normalised as Clear's
    daemon would deliver it; what cannot be is refused with RecordError."""
    payload, notes = normalise_payload(raw_payload, max_payload_size)
    # Every numeric header is bounded here, by the rules the collector applies:
    # a number the spool or the collector cannot store is refused at the door.
    parse_number("record_format_version", values[_RECORD_VERSION])
    severity = parse_number("severity", values[_SEVERITY], FRAME_SEVERITY_BOUNDS)
    classification = values[_CLASSIFICATION]
    if classification[:1] in _SPACES or classification[-1:] in _SPACES or "\t" in classification:
        classification = normalise_classification(classification)
        notes = notes or []
        notes.append(
            f"classification {values[_CLASSIFICATION][:200]!r} written as {classification!r}"
        )
    event_id = values[_EVENT_ID]
    if not is_event_id(event_id):
        notes = notes or []
        fixed = normalise_event_id(event_id)
        if fixed is None:
            fixed = new_event_id()
            notes.append(f"event_id {event_id[:80]!r} is not 32 hex characters: replaced")
        else:
            notes.append(f"event_id {event_id[:80]!r} written as 32 lowercase hex")
        event_id = fixed
    record = Record.trusted(
        classification=validate_classification(classification),
        severity=clamp_severity(severity),
        payload=payload,
        payload_format_version=parse_number("payload_format_version", values[_PAYLOAD_VERSION]),
        event_id=event_id,
        creation_timestamp=parse_number("creation_timestamp", values[_TIMESTAMP]),
    )
    return DecodedFrame(record, values, config_path, notes)


def encode_frame(
    record: Record,
    host_headers: dict[str, str] | None = None,
    config_path: str | None = None,
) -> bytes:
    """Build the frame libtelemetry would send for `record`.

    Host metadata is the daemon's to fill in; without `host_headers` the
    client sends what uname tells for free and `unknown` for the rest.
    """
    if host_headers is None:
        uname = os.uname()
        host_headers = {"arch": uname.machine, "kernel_version": uname.release, "build": "0"}
    values = {
        "record_format_version": str(RECORD_FORMAT_VERSION),
        "classification": record.classification,
        "severity": str(record.severity),
        "machine_id": PLACEHOLDER_MACHINE_ID,
        "creation_timestamp": str(record.creation_timestamp),
        "payload_format_version": str(record.payload_format_version),
        "event_id": record.event_id,
    }
    block = "".join(
        f"{name}: {values.get(name) or host_headers.get(name, 'unknown')}\n"
        for name in HEADER_NAMES
    ).encode()
    payload = record.payload.encode()
    cfg = b"" if config_path is None else CFG_MAGIC + config_path.encode() + b"\0"
    total = 4 + len(cfg) + 4 + len(block) + len(payload) + 1
    return b"".join(
        (
            total.to_bytes(4, "little"),
            cfg,
            len(block).to_bytes(4, "little"),
            block,
            payload,
            b"\0",
        )
    )


def encode_ok(record_id: str) -> bytes:
    return f"OK {record_id}\n".encode()


def encode_error(code: str, message: str) -> bytes:
    # One line, whatever the message holds.
    flat = message.replace("\n", " ").replace("\r", " ")
    return f"ERR {code} {flat}\n".encode()


def decode_reply(line: bytes) -> tuple[str, str]:
    """Split a reply line into ("OK", record_id) or (code, message)."""
    text = line.decode(errors="replace").rstrip("\n")
    if text.startswith("OK "):
        return "OK", text[3:]
    if text.startswith("ERR "):
        code, _, message = text[4:].partition(" ")
        return code, message
    raise FrameError(f"unexpected reply from the daemon: {text[:80]!r}", ErrorCode.PROTOCOL)
