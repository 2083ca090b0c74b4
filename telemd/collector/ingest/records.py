"""Request bodies in, validated rows out: the collector's three ingest formats.

Pure code: no sockets, no database, no clock of its own (the caller passes
`now`). The rules are telemetrics-backend's (PROTOCOL.md section 3) plus
telemd's own record rules, taken from `telemd.record`: the numbers, the
classification, the event id and the payload obey the very functions the
daemon decodes frames with, so whatever the daemon acknowledges is stored here.

Formats:
- "headers": the 15 record headers as HTTP headers, the body is the payload.
- "json": one JSON object, the 15 header names plus "payload"; values are
  strings (numeric fields may also be JSON integers).
- "ndjson" / JSON array: batches of such objects, each also carrying
  "record_id"; a missing creation_timestamp is filled with `now`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from telemd.collector import json_codec
from telemd.errors import ErrorCode, RecordError
from telemd.record import (
    HEADER_NAMES,
    check_arch,
    check_host_text,
    check_kernel_version,
    check_number,
    is_event_id,
    parse_number,
    validate_classification,
    validate_payload,
    validate_payload_bytes,
)
from telemd.record import FieldError as FieldError  # the collector's routes answer 400 with it

# The values of one stored record, in this order (the store adds `id` and
# `received_at`). `RECORD_COLUMNS` is the single source of that order.
RECORD_COLUMNS: tuple[str, ...] = ("record_id", "tid", *HEADER_NAMES, "payload")
Row = tuple[object, ...]

# HTTP header names of the "headers" format: record_format_version ->
# Record-Format-Version, and so on.
HTTP_HEADER_NAMES: dict[str, str] = {
    name: "-".join(part.capitalize() for part in name.split("_")) for name in HEADER_NAMES
}
TID_HEADER = "x-telemetry-tid"
RECORD_ID_HEADER = "x-telemetry-record-id"

# Clear Linux's telemetry id (PROTOCOL.md section 3), the default accepted one.
CLEAR_LINUX_TID = "6907c830-eed9-4ce9-81ae-76daf8d88f0f"

INT_FIELDS = ("record_format_version", "severity", "creation_timestamp", "payload_format_version")


@dataclass(frozen=True, slots=True)
class Rules:
    """What the collector accepts: telemetry ids and the payload size bound."""

    tids: frozenset[str]
    max_payload_size: int


def check_tid(tid: str | None, rules: Rules) -> str:
    if not tid:
        raise FieldError("tid", "the X-Telemetry-TID header is missing")
    tid = tid.strip().lower()
    if tid not in rules.tids:
        raise FieldError("tid", f"telemetry id {tid!r} is not accepted by this collector")
    return tid


def check_record_id(record_id: object, make_id: Callable[[], str]) -> str:
    """A 32-lowercase-hex id, or a fresh one when the client sent none."""
    if record_id is None or record_id == "":
        return make_id()
    if not isinstance(record_id, str) or not is_event_id(record_id):
        raise FieldError("record_id", f"must be 32 lowercase hex characters, got {record_id!r}")
    return record_id


def new_record_id() -> str:
    return uuid.uuid4().hex


def _missing(name: str) -> FieldError:
    return FieldError(name, "is missing")


def _int_field(name: str, value: object) -> int:
    """A numeric field by the daemon's own rule (telemd.record.NUMBER_BOUNDS)."""
    if value is None:
        raise _missing(name)
    if isinstance(value, str):
        return parse_number(name, value)
    if isinstance(value, int) and not isinstance(value, bool):
        return check_number(name, value)
    raise FieldError(name, f"must be an integer or a string of digits, got {value!r}")


def _text_field(name: str, value: object) -> str:
    if value is None:
        raise _missing(name)
    if not isinstance(value, str):
        raise FieldError(name, f"must be a string, got {type(value).__name__}")
    return check_host_text(name, value)


def validate_record(
    fields: Mapping[str, object],
    payload: str | bytes,
    *,
    tid: str,
    record_id: str,
    rules: Rules,
    now: int | None = None,
) -> Row:
    """Check one record's headers and payload; return its row.

    `now` fills a missing creation_timestamp (batches); when it is None the
    field is required (single-record formats, as telemetrics-backend does).
    """
    # Each check below also reports its field missing (None), so a valid
    # record, the common case, is looked at once per field.
    get = fields.get
    classification = get("classification")
    if classification is None:
        raise _missing("classification")
    if not isinstance(classification, str):
        raise FieldError("classification", "must be a string")
    try:
        validate_classification(classification)
    except RecordError as exc:
        raise FieldError("classification", exc.message) from None

    machine_id = _text_field("machine_id", get("machine_id"))
    arch = get("arch")
    if arch is None:
        raise _missing("arch")
    check_arch(arch)
    kernel = check_kernel_version(_text_field("kernel_version", get("kernel_version")))
    event_id = get("event_id")
    if event_id is None:
        raise _missing("event_id")
    if not isinstance(event_id, str) or not is_event_id(event_id):
        raise FieldError("event_id", f"must be 32 lowercase hex characters, got {event_id!r}")

    if payload.__class__ is str and payload.isascii() and "\0" not in payload:
        # The common case, without validate_payload's encode and decode.
        text = str(payload)
        if len(text) > rules.max_payload_size:
            raise FieldError(
                "payload",
                f"is {len(text)} bytes, more than the limit of {rules.max_payload_size}",
                ErrorCode.TOO_LARGE,
            )
    else:
        try:
            if isinstance(payload, bytes):
                text = validate_payload_bytes(payload, rules.max_payload_size)
            else:
                text = validate_payload(payload, rules.max_payload_size)
        except RecordError as exc:
            raise FieldError("payload", exc.message, exc.code) from None

    timestamp = get("creation_timestamp")
    return (
        record_id,
        tid,
        _int_field("record_format_version", get("record_format_version")),
        classification,
        _int_field("severity", get("severity")),
        machine_id,
        now
        if timestamp is None and now is not None
        else _int_field("creation_timestamp", timestamp),
        arch,
        _text_field("host_type", get("host_type")),
        _text_field("build", get("build")),
        kernel,
        _int_field("payload_format_version", get("payload_format_version")),
        _text_field("system_name", get("system_name")),
        _text_field("board_name", get("board_name")),
        _text_field("cpu_model", get("cpu_model")),
        _text_field("bios_version", get("bios_version")),
        event_id,
        text,
    )


def parse_headers_format(
    headers: Mapping[str, str], body: bytes, *, tid: str, record_id: str, rules: Rules
) -> Row:
    """The "headers" format; `headers` is case-insensitive (Starlette's Headers).

    Each header is looked up by its dashed name (Machine-Id), then by the
    record's own name (machine_id), which is what Clear's telempostd up to
    v2.3.5 sends: its spooled header lines go out as they are.
    """
    fields: dict[str, object] = {}
    for name, http_name in HTTP_HEADER_NAMES.items():
        value = headers.get(http_name)
        if value is None:
            value = headers.get(name)
            http_name = name
        if value is not None:
            # HTTP headers arrive as latin-1; the daemon sends UTF-8 bytes.
            try:
                fields[name] = value.encode("latin-1").decode()
            except UnicodeError:
                raise FieldError(name, f"header {http_name} is not valid UTF-8") from None
    return validate_record(fields, body, tid=tid, record_id=record_id, rules=rules)


def parse_json_format(body: bytes, *, tid: str, record_id: str | None, rules: Rules) -> Row:
    """The "json" format: one object; a "record_id" key counts like the header."""
    obj = _load_object(body)
    rid = check_record_id(record_id or obj.get("record_id"), new_record_id)
    return validate_record(obj, _payload_of(obj), tid=tid, record_id=rid, rules=rules)


def _load_object(text: bytes | str) -> dict[str, object]:
    try:
        obj = json_codec.loads(text)
    except ValueError as exc:
        raise FieldError("body", f"is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise FieldError("body", f"must be a JSON object, got {type(obj).__name__}")
    return obj


def _payload_of(obj: Mapping[str, object]) -> str:
    payload = obj.get("payload")
    if payload is None:
        raise FieldError("payload", "is missing")
    if not isinstance(payload, str):
        raise FieldError("payload", f"must be a string, got {type(payload).__name__}")
    return payload


class BatchLine(NamedTuple):
    """One line of a batch: its row, or why it was rejected.

    A NamedTuple, not a frozen dataclass: it is made once per record, and a
    frozen dataclass's __init__ costs several times more.
    """

    line: int
    record_id: str | None
    row: Row | None
    message: str | None


def split_batch(body: bytes, content_type: str) -> Iterator[tuple[int, object]]:
    """Yield (line number from 1, decoded JSON value or FieldError) per record."""
    if content_type == "application/json":
        try:
            items = json_codec.loads(body)
        except ValueError as exc:
            raise FieldError("body", f"is not valid JSON: {exc}") from None
        if not isinstance(items, list):
            raise FieldError("body", "must be a JSON array of records")
        yield from enumerate(items, 1)
        return
    for number, line in enumerate(body.split(b"\n"), 1):
        if line.strip():
            try:
                yield number, json_codec.loads(line)
            except ValueError as exc:
                yield number, FieldError("line", f"is not valid JSON: {exc}")


def parse_batch_line(number: int, item: object, *, tid: str, rules: Rules, now: int) -> BatchLine:
    if isinstance(item, FieldError):
        return BatchLine(number, None, None, item.message)
    if not isinstance(item, dict):
        return BatchLine(number, None, None, f"must be a JSON object, got {type(item).__name__}")
    sent_id = item.get("record_id")
    try:
        record_id = check_record_id(sent_id, new_record_id)
    except FieldError as exc:
        return BatchLine(number, None, None, exc.message)
    try:
        row = validate_record(
            item, _payload_of(item), tid=tid, record_id=record_id, rules=rules, now=now
        )
    except FieldError as exc:
        # Report the client's own id, never one made up for a rejected line.
        return BatchLine(number, record_id if sent_id else None, None, exc.message)
    return BatchLine(number, record_id, row, None)
