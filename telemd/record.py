"""The telemetry record: its 15 headers, its payload and the rules they obey.

Pure code, shared by the client library, the daemon and the collector: the
one set of record rules, so that what the daemon acknowledges, the
collector stores. A rule broken raises RecordError, or FieldError naming
the field. It sits on the probe path, so it imports nothing beyond the
interpreter's start-up set: no `re`, no `dataclasses`, no `enum` (each would
cost milliseconds per probe).
"""

from __future__ import annotations

import os
import time

from telemd.errors import ErrorCode, RecordError

RECORD_FORMAT_VERSION = 4

# The header block's lines, in the exact order libtelemetry writes them.
HEADER_NAMES: tuple[str, ...] = (
    "record_format_version",
    "classification",
    "severity",
    "machine_id",
    "creation_timestamp",
    "arch",
    "host_type",
    "build",
    "kernel_version",
    "payload_format_version",
    "system_name",
    "board_name",
    "cpu_model",
    "bios_version",
    "event_id",
)

# An event id exported for a group of commands (telem-record-gen --new-event-id).
EVENT_ID_ENV = "TELEM_EVENT_ID"
MAX_CLASSIFICATION_BYTES = 122
MAX_CLASSIFICATION_LEVEL_BYTES = 40
DEFAULT_MAX_PAYLOAD_SIZE = 8192
EVENT_ID_LENGTH = 32
MIN_SEVERITY = 1
MAX_SEVERITY = 4
UINT32_MAX = 0xFFFFFFFF
# 9999-12-31 23:59:59 UTC: the last second every date library can render.
MAX_TIMESTAMP = 253_402_300_799

# The one rule for each numeric header, shared by the daemon's decoding and
# the collector's ingest: whatever the daemon acknowledges, its collector
# stores. Every bound also fits a signed 64-bit SQLite or PostgreSQL INTEGER.
NUMBER_BOUNDS: dict[str, tuple[int, int]] = {
    "record_format_version": (1, 2**31 - 1),
    "severity": (MIN_SEVERITY, MAX_SEVERITY),
    "creation_timestamp": (0, MAX_TIMESTAMP),
    "payload_format_version": (0, UINT32_MAX),
}
# libtelemetry sends severity as a uint32 and clamps it to 1..4; a frame may
# carry any uint32, which the daemon clamps the same way.
FRAME_SEVERITY_BOUNDS = (0, UINT32_MAX)

_HEX_LOWER = "0123456789abcdef"


# The host headers are the daemon's to fill in (the client's are replaced).
# The collector holds them to these rules, and the daemon sends its own
# values conformed to them (`conform_host_text`).
# `uname -m` values of the architectures Linux distributions ship.
ARCHES = frozenset(
    {
        "x86_64",
        "aarch64",
        "aarch64_be",
        "i386",
        "i486",
        "i586",
        "i686",
        "armv6l",
        "armv7l",
        "armv8l",
        "riscv64",
        "ppc64",
        "ppc64le",
        "s390x",
        "mips",
        "mips64",
        "loongarch64",
        "sparc64",
    }
)
# Longest value of each host text header: the machine id as Clear makes it,
# os-release's ID as libtelemetry cuts it, and for DMI and os-release strings,
# short in practice, a bound that keeps rows small.
HOST_TEXT_LIMITS: dict[str, int] = {
    "machine_id": 32,
    "host_type": 256,
    "build": 256,
    "kernel_version": 256,
    "system_name": 80,
    "board_name": 256,
    "cpu_model": 256,
    "bios_version": 256,
}


class FieldError(RecordError):
    """A record field breaks a rule; `field` names it (first in the message too)."""

    def __init__(self, field: str, message: str, code: str = ErrorCode.INVALID) -> None:
        super().__init__(f"{field}: {message}", code)
        self.field = field


def check_number(name: str, number: int, bounds: tuple[int, int] | None = None) -> int:
    """`number` if it lies within the bounds of header `name`, else FieldError."""
    low, high = bounds or NUMBER_BOUNDS[name]
    if not low <= number <= high:
        raise FieldError(name, f"must be in {low}..{high}, got {str(number)[:40]}")
    return number


def parse_number(name: str, text: str, bounds: tuple[int, int] | None = None) -> int:
    """A numeric header's value as sent: ASCII decimal digits within its bounds."""
    # int() alone would also take " 1", "+1", "1_0" and non-ASCII digits, and
    # it refuses more than 4,300 digits with a ValueError of its own.
    if text.isdigit() and text.isascii():
        if len(text) <= 20:  # the common case: four per frame
            return check_number(name, int(text), bounds)
        digits = text.lstrip("0") or "0"
        if len(digits) <= 20:
            return check_number(name, int(digits), bounds)
        low, high = bounds or NUMBER_BOUNDS[name]
        raise FieldError(name, f"must be in {low}..{high}, got a number of {len(digits)} digits")
    raise FieldError(name, f"must be a decimal integer, got {text[:40]!r}")


def check_host_text(name: str, value: str) -> str:
    """`value` if it fits the host header `name`: printable, within its length."""
    limit = HOST_TEXT_LIMITS[name]
    if len(value) > limit:
        raise FieldError(name, f"is longer than {limit} characters")
    if not value.isprintable():
        raise FieldError(name, f"contains control characters: {value[:80]!r}")
    if name == "machine_id" and not value:
        raise FieldError(name, "is empty")
    return value


def conform_host_text(name: str, value: str) -> str:
    """`value` as the daemon sends it: unprintable characters become spaces and
    the length is cut to the header's limit, so the collector accepts it."""
    if not value.isprintable():
        value = "".join(char if char.isprintable() else " " for char in value)
    return value[: HOST_TEXT_LIMITS[name]]


def check_arch(arch: object) -> str:
    if arch not in ARCHES:
        raise FieldError("arch", f"{arch!r} is not a known architecture")
    return str(arch)


def check_kernel_version(kernel: str) -> str:
    """`kernel` if it starts with "N.N." (digits, dot, digits, dot)."""
    parts = kernel.split(".", 2)
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts[:2]):
        raise FieldError("kernel_version", f"must start with N.N., got {kernel[:80]!r}")
    return kernel


def validate_classification(classification: str) -> str:
    """Return `classification` if it is DOMAIN/PROBE/REST, else raise RecordError.

    What libtelemetry and telemetrics-backend take: exactly three levels (empty
    ones included), at most 122 bytes, 40 a level. The characters are printable
    ASCII, spaces included, because the value travels as an HTTP header; it may
    not start or end with a space, which HTTP would strip
    (`normalise_classification` strips them from a frame's value)."""
    if len(classification.encode()) > MAX_CLASSIFICATION_BYTES:
        raise RecordError(
            f"classification is longer than {MAX_CLASSIFICATION_BYTES} bytes: {classification!r}"
        )
    levels = classification.split("/")
    if len(levels) != 3:
        raise RecordError(
            f"classification must have exactly 3 levels (domain/probe/rest), got {classification!r}"
        )
    for level in levels:
        if len(level) > MAX_CLASSIFICATION_LEVEL_BYTES:
            raise RecordError(
                f"classification level {level!r} is longer than "
                f"{MAX_CLASSIFICATION_LEVEL_BYTES} bytes"
            )
    if not (classification.isascii() and classification.isprintable()):
        raise RecordError(
            f"classification {classification!r} has characters outside printable ASCII"
        )
    if classification[:1] == " " or classification[-1:] == " ":
        raise RecordError(f"classification {classification!r} starts or ends with a space")
    return classification


def normalise_classification(value: str) -> str:
    """A frame's classification as the daemon keeps it: tabs as spaces, none at
    either end (libtelemetry sends them; an HTTP header cannot carry them)."""
    return value.replace("\t", " ").strip(" ")


def clamp_severity(severity: int) -> int:
    """Clamp to 1..4, as libtelemetry does."""
    return min(MAX_SEVERITY, max(MIN_SEVERITY, severity))


def is_event_id(value: str) -> bool:
    return len(value) == EVENT_ID_LENGTH and not value.strip(_HEX_LOWER)


def validate_event_id(event_id: str) -> str:
    if not is_event_id(event_id):
        raise RecordError(f"event id must be 32 lowercase hex characters, got {event_id!r}")
    return event_id


def new_event_id() -> str:
    return os.urandom(16).hex()


def new_record_id() -> str:
    """128 bits from the kernel's random source.

    Not a seeded generator: ids are shown to the clients that sent the
    records, and a Mersenne Twister's next outputs follow from 624 of its
    past ones, so one user could predict the ids of everyone's records."""
    return os.urandom(16).hex()


def normalise_event_id(value: str) -> str | None:
    """32 lowercase hex from 32 hex characters or a dashed UUID (8-4-4-4-12), else None."""
    value = value.strip().lower()
    if len(value) == 36 and [len(part) for part in value.split("-")] == [8, 4, 4, 4, 12]:
        value = value.replace("-", "")
    return value if is_event_id(value) else None


def environment_event_id() -> str | None:
    """The event id in $TELEM_EVENT_ID, normalised; None when it is unset or empty."""
    value = os.environ.get(EVENT_ID_ENV)
    if not value:
        return None
    event_id = normalise_event_id(value)
    if event_id is None:
        raise RecordError(
            f"${EVENT_ID_ENV} must be 32 hexadecimal characters or a UUID, got {value!r}"
        )
    return event_id


def validate_payload_bytes(payload: bytes, max_size: int = DEFAULT_MAX_PAYLOAD_SIZE) -> str:
    """Decode a payload from the wire: UTF-8 text without NUL, at most max_size bytes."""
    if len(payload) > max_size:
        raise RecordError(
            f"payload is {len(payload)} bytes, more than the limit of {max_size}",
            ErrorCode.TOO_LARGE,
        )
    if b"\0" in payload:
        raise RecordError("payload contains a NUL byte")
    try:
        return payload.decode()
    except UnicodeDecodeError as exc:
        raise RecordError(f"payload is not valid UTF-8 (byte {exc.start})") from None


def normalise_payload(
    payload: bytes, max_size: int = DEFAULT_MAX_PAYLOAD_SIZE
) -> tuple[str, list[str] | None]:
    """A frame's payload read as Clear's daemon and telemetrics-backend read it.

    Cut at its first NUL (Clear's daemon keeps it as a C string), decoded as
    UTF-8, else as Latin-1, which takes every byte. Returns the text that obeys
    `validate_payload` and what was changed (None when nothing was); a payload
    over `max_size` bytes, as sent or as UTF-8, raises RecordError."""
    if len(payload) > max_size:
        raise RecordError(
            f"payload is {len(payload)} bytes, more than the limit of {max_size}",
            ErrorCode.TOO_LARGE,
        )
    notes = None
    nul = payload.find(b"\0")
    if nul >= 0:
        notes = [f"payload cut at its first NUL, byte {nul} of {len(payload)}"]
        payload = payload[:nul]
    try:
        return payload.decode(), notes
    except UnicodeDecodeError as exc:
        first_bad = exc.start
    text = payload.decode("latin-1")
    size = len(text.encode())
    if size > max_size:
        raise RecordError(
            f"payload is not UTF-8; as Latin-1 written in UTF-8 it is {size} bytes,"
            f" more than the limit of {max_size}",
            ErrorCode.TOO_LARGE,
        )
    return text, [*(notes or ()), f"payload is not UTF-8 (byte {first_bad}): read as Latin-1"]


def validate_payload(payload: str, max_size: int = DEFAULT_MAX_PAYLOAD_SIZE) -> str:
    try:
        encoded = payload.encode()
    except UnicodeEncodeError as exc:
        raise RecordError(f"payload is not encodable as UTF-8 (character {exc.start})") from None
    validate_payload_bytes(encoded, max_size)
    return payload


class Record:
    """What a client knows about an event; host metadata is the daemon's to add.

    A plain slotted class rather than a dataclass: `dataclasses` imports
    `inspect`, which alone would double a probe's start-up time.
    """

    __slots__ = (
        "classification",
        "creation_timestamp",
        "event_id",
        "payload",
        "payload_format_version",
        "severity",
    )

    classification: str
    severity: int
    payload: str
    payload_format_version: int
    event_id: str
    creation_timestamp: int

    def __init__(
        self,
        classification: str,
        severity: int,
        payload: str,
        *,
        payload_format_version: int = 1,
        event_id: str | None = None,
        creation_timestamp: int | None = None,
        max_payload_size: int = DEFAULT_MAX_PAYLOAD_SIZE,
    ) -> None:
        self.classification = validate_classification(classification)
        self.severity = clamp_severity(severity)
        self.payload = validate_payload(payload, max_payload_size)
        self.payload_format_version = check_number("payload_format_version", payload_format_version)
        if event_id is None:
            event_id = environment_event_id() or new_event_id()
        self.event_id = validate_event_id(normalise_event_id(event_id) or event_id)
        self.creation_timestamp = (
            int(time.time())
            if creation_timestamp is None
            else check_number("creation_timestamp", creation_timestamp)
        )

    @classmethod
    def trusted(
        cls,
        *,
        classification: str,
        severity: int,
        payload: str,
        payload_format_version: int,
        event_id: str,
        creation_timestamp: int,
    ) -> Record:
        """Build a record from fields its caller has already validated."""
        record = object.__new__(cls)
        record.classification = classification
        record.severity = severity
        record.payload = payload
        record.payload_format_version = payload_format_version
        record.event_id = event_id
        record.creation_timestamp = creation_timestamp
        return record

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, name) for name in self.__slots__))

    def __repr__(self) -> str:
        return (
            f"Record({self.classification!r}, severity={self.severity}, "
            f"event_id={self.event_id!r}, payload={len(self.payload)} chars)"
        )
