"""The bytes Clear's libtelemetry writes to the probe socket, built as its C code builds them.

telemetrics-client's src/telemetry.c: `tm_create_record` sets 15 headers,
each by `set_header` as `"%s: %s\\n"`; `tm_set_payload` checks and copies the
payload; `tm_send_record` lays out record_size (uint32), the optional
`CFG:<path>\\0`, header_size (uint32), the headers, the payload and one NUL,
writes it and closes without reading a reply.

v2.3.5 and v2.4.3 frame alike and differ in `tm_set_payload` only: v2.3.5
takes `strlen(payload)` and refuses more than 8192 bytes, v2.4.3 takes
`strnlen(payload, 8192)` and cuts what is longer. Both stop at a NUL (a C
string) and refuse a byte that is neither `isprint` nor `isspace` in the
caller's locale: ASCII only in the C locale, Latin-1 letters too once a
program in an ISO-8859-1 locale has called `setlocale`. Values the library
would refuse raise `LibraryRefuses`; a client that writes frames itself
(`frame_as_written`) sends whatever it likes in the same layout.
"""

from __future__ import annotations

import os
import time

from telemd.record import HEADER_NAMES

MAX_PAYLOAD_LENGTH = 8192
MAX_CLASS_LENGTH = 122
MAX_SUBCAT_LENGTH = 40
VERSIONS = ("2.3.5", "2.4.3")


class LibraryRefuses(Exception):
    """The C library returns -EINVAL: the probe sends nothing."""


def _is_print_or_space(byte: int, locale: str) -> bool:
    if 0x20 <= byte < 0x7F or byte in b" \t\n\v\f\r":
        return True
    # glibc's ISO-8859-1 tables: printable from NBSP up; C1 controls are not.
    return locale == "latin-1" and byte >= 0xA0


def set_payload(version: str, payload: bytes, locale: str = "C") -> bytes:
    """What `tm_set_payload` of `version` keeps of `payload`, or LibraryRefuses."""
    text = payload.split(b"\0", 1)[0]  # strlen / strnlen stop at the first NUL
    if version == "2.3.5":
        if len(text) > MAX_PAYLOAD_LENGTH:
            raise LibraryRefuses(f"payload of {len(text)} bytes")
    else:
        text = text[:MAX_PAYLOAD_LENGTH]
    if not all(_is_print_or_space(byte, locale) for byte in text):
        raise LibraryRefuses("payload_is_ascii")
    return text


def check_classification(classification: str) -> None:
    """util.c's validate_classification: two slashes, 122 bytes, 40 a level
    (its count lets the first level have 41)."""
    raw = classification.encode()
    if not raw or len(raw) > MAX_CLASS_LENGTH or raw.count(b"/") != 2:
        raise LibraryRefuses(f"classification {classification!r}")
    x = 0
    for byte in raw:
        if byte == ord("/"):
            x = 0
        elif x > MAX_SUBCAT_LENGTH:
            raise LibraryRefuses(f"classification {classification!r}")
        x += 1  # the loop's own increment, after a slash too


def check_event_id(event_id: str) -> None:
    """tm_set_event_id: 32 characters of "0123456789abcdef", else it keeps its own."""
    if len(event_id) != 32 or event_id.strip("0123456789abcdef"):
        raise LibraryRefuses(f"event id {event_id!r}")


def header_values(classification: str, severity: int, event_id: str) -> dict[str, str]:
    uname = os.uname()
    return {
        "record_format_version": "4",
        "classification": classification,
        "severity": str(min(4, max(1, severity))),  # set_severity_header clamps
        "machine_id": "FFFFFFFF",  # "%zX" of 0xFFFFFFFF; the daemon replaces it
        "creation_timestamp": str(int(time.time())),
        "arch": uname.machine,
        "host_type": "no_sv_file|no_pn_file|no_pvr_file",
        "build": "0",
        "kernel_version": uname.release,
        "payload_format_version": "1",
        "system_name": "clear-linux-os",
        "board_name": "no_bn_file|no_bv_file",
        "cpu_model": "Intel(R) Core(TM) i7",
        "bios_version": "no_bv_file",
        "event_id": event_id,
    }


def frame_as_written(
    values: dict[str, str | bytes], payload: bytes, config_path: str | None = None
) -> bytes:
    """tm_send_record's layout around any header values and payload."""
    headers = b"".join(
        name.encode() + b": " + (value if isinstance(value, bytes) else value.encode()) + b"\n"
        for name, value in ((name, values[name]) for name in HEADER_NAMES)
    )
    cfg = b"" if config_path is None else b"CFG:" + config_path.encode() + b"\0"
    record_size = 4 + len(cfg) + 4 + len(headers) + len(payload) + 1
    return b"".join(
        (
            record_size.to_bytes(4, "little"),
            cfg,
            len(headers).to_bytes(4, "little"),
            headers,
            payload,
            b"\0",
        )
    )


def libtelemetry_frame(
    version: str,
    classification: str,
    severity: int,
    payload: bytes,
    *,
    event_id: str | None = None,
    locale: str = "C",
) -> bytes:
    """tm_create_record + [tm_set_event_id] + tm_set_payload + tm_send_record."""
    check_classification(classification)
    if event_id is None:
        event_id = os.urandom(16).hex()  # get_random_id: "%.16lx%.16lx" of /dev/urandom
    else:
        check_event_id(event_id)
    kept = set_payload(version, payload, locale)
    return frame_as_written(header_values(classification, severity, event_id), kept)
