"""telemd.collector.ingest.records: every validation rule, accepting and rejecting."""

from __future__ import annotations

import json
from typing import Any

import pytest
from collector_proc import CLEAR_TID, headers_request, ndjson, record
from starlette.datastructures import Headers

from telemd.collector.ingest import records as ingest
from telemd.collector.ingest.records import FieldError, Rules

RULES = Rules(frozenset({CLEAR_TID}), 32768)
ID = "0123456789abcdef0123456789abcdef"

# (field, bad value, words the message must contain): one per rule.
BAD_FIELDS: list[tuple[str, Any, str]] = [
    ("record_format_version", "four", "decimal integer"),
    ("record_format_version", "0", "in 1.."),
    ("classification", "org.clearlinux/hello", "3 levels"),
    ("classification", "a/b/c/d", "3 levels"),
    ("classification", "a/b\tc/d", "outside printable ASCII"),
    ("classification", "a/b/\u00e9", "outside printable ASCII"),
    ("classification", "a/" + "b" * 41 + "/c", "longer than 40"),
    ("classification", 7, "must be a string"),
    ("severity", "0", "in 1..4"),
    ("severity", "5", "in 1..4"),
    ("severity", "-1", "decimal integer"),
    ("severity", " 1", "decimal integer"),
    ("severity", True, "integer or a string"),
    ("severity", 2.0, "integer or a string"),
    ("machine_id", "m" * 33, "longer than 32"),
    ("machine_id", "", "is empty"),
    ("machine_id", "a\nb", "control characters"),
    ("creation_timestamp", "yesterday", "decimal integer"),
    ("creation_timestamp", "1700000000.5", "decimal integer"),
    # The daemon's own bounds (telemd.record): what it refuses, the collector refuses.
    ("creation_timestamp", "253402300800", "in 0..253402300799"),
    ("creation_timestamp", -1, "in 0..253402300799"),
    ("creation_timestamp", "1" + "0" * 25, "in 0..253402300799"),
    ("creation_timestamp", "9" * 5000, "a number of 5000 digits"),
    ("arch", "vax", "not a known architecture"),
    ("arch", 64, "not a known architecture"),
    ("kernel_version", "6", "N.N."),
    ("kernel_version", "6.1", "N.N."),
    ("kernel_version", "linux-6.1.0", "N.N."),
    ("payload_format_version", "x", "decimal integer"),
    ("payload_format_version", str(2**32), "in 0.."),
    ("system_name", "s" * 81, "longer than 80"),
    ("host_type", "h" * 257, "longer than 256"),
    ("build", ["12"], "must be a string"),
    ("board_name", "b\x00", "control characters"),
    ("cpu_model", None, "is missing"),
    ("bios_version", {"v": 1}, "must be a string"),
    ("event_id", "ABCDEF0123456789ABCDEF0123456789", "32 lowercase hex"),
    ("event_id", "abc", "32 lowercase hex"),
    ("payload", "x" * 32769, "more than the limit"),
    ("payload", "nul\x00byte", "NUL"),
    ("payload", 12, "must be a string"),
    ("payload", None, "is missing"),
]


def parse_json(rec: dict[str, Any], record_id: str | None = None) -> tuple[object, ...]:
    return ingest.parse_json_format(
        json.dumps(rec).encode(), tid=CLEAR_TID, record_id=record_id, rules=RULES
    )


def test_valid_json_record_becomes_a_row_in_column_order() -> None:
    rec = record(record_id=ID, severity=2, creation_timestamp=1700000001)
    row = dict(zip(ingest.RECORD_COLUMNS, parse_json(rec), strict=True))
    assert row["record_id"] == ID
    assert row["tid"] == CLEAR_TID
    assert row["severity"] == 2
    assert row["creation_timestamp"] == 1700000001
    assert row["record_format_version"] == 4
    assert row["payload"] == "hello\n"


@pytest.mark.parametrize(("field", "value", "words"), BAD_FIELDS)
def test_json_format_rejects(field: str, value: Any, words: str) -> None:
    with pytest.raises(FieldError) as caught:
        parse_json(record(**{field: value}) if value is not None else _without(field))
    assert caught.value.field == field
    assert words in caught.value.message


def _without(field: str) -> dict[str, Any]:
    rec = record()
    del rec[field]
    return rec


def _str_ok(value: Any) -> bool:
    """Values the headers format can carry: text without NUL or newline, not a payload None."""
    return isinstance(value, str) and "\x00" not in value and "\n" not in value


@pytest.mark.parametrize(("field", "value", "words"), [b for b in BAD_FIELDS if _str_ok(b[1])])
def test_headers_format_rejects(field: str, value: Any, words: str) -> None:
    rec = record(**{field: value}) if value is not None else _without(field)
    headers, body = headers_request(rec)
    with pytest.raises(FieldError) as caught:
        ingest.parse_headers_format(
            Headers(headers=headers), body, tid=CLEAR_TID, record_id=ID, rules=RULES
        )
    assert caught.value.field == field


def test_numeric_fields_accept_json_integers() -> None:
    row = parse_json(record(severity=3, record_format_version=4, payload_format_version=2))
    assert row[ingest.RECORD_COLUMNS.index("severity")] == 3


def test_headers_format_decodes_utf8_header_values_and_payload() -> None:
    headers, _ = headers_request(record())
    # Starlette hands header bytes over as latin-1 text.
    headers["Cpu-Model"] = "Caf\u00e9 CPU".encode().decode("latin-1")
    row = ingest.parse_headers_format(
        Headers(headers=headers), "données\n".encode(), tid=CLEAR_TID, record_id=ID, rules=RULES
    )
    assert row[ingest.RECORD_COLUMNS.index("cpu_model")] == "Caf\u00e9 CPU"
    assert row[-1] == "données\n"


def test_headers_format_rejects_invalid_utf8() -> None:
    headers, _ = headers_request(record())
    headers["Host-Type"] = b"\xff\xfe".decode("latin-1")
    with pytest.raises(FieldError, match="host_type"):
        ingest.parse_headers_format(
            Headers(headers=headers), b"x", tid=CLEAR_TID, record_id=ID, rules=RULES
        )
    headers, _ = headers_request(record())
    with pytest.raises(FieldError, match="UTF-8") as caught:
        ingest.parse_headers_format(
            Headers(headers=headers), b"\xff", tid=CLEAR_TID, record_id=ID, rules=RULES
        )
    assert caught.value.field == "payload"


def test_payload_too_large_carries_the_too_large_code() -> None:
    with pytest.raises(FieldError) as caught:
        parse_json(record(payload="x" * 40000))
    assert caught.value.code == "too-large"


@pytest.mark.parametrize("tid", [None, "", "6907c830-0000-0000-0000-000000000000", "junk"])
def test_unknown_or_missing_tid_is_refused(tid: str | None) -> None:
    with pytest.raises(FieldError) as caught:
        ingest.check_tid(tid, RULES)
    assert caught.value.field == "tid"


def test_tid_is_compared_without_case() -> None:
    assert ingest.check_tid(CLEAR_TID.upper(), RULES) == CLEAR_TID


@pytest.mark.parametrize("record_id", ["ABCDEF0123456789ABCDEF0123456789", "xyz", 12, "0" * 33])
def test_bad_record_id_is_refused(record_id: object) -> None:
    with pytest.raises(FieldError) as caught:
        ingest.check_record_id(record_id, ingest.new_record_id)
    assert caught.value.field == "record_id"


def test_missing_record_id_is_made_up() -> None:
    assert ingest.check_record_id(None, lambda: ID) == ID
    row = parse_json(_without("record_id"))
    assert len(str(row[0])) == 32


@pytest.mark.parametrize("body", [b"", b"{", b"[1, 2]", b'"text"', b"null", b"[" * 100000])
def test_json_format_rejects_bodies_that_are_not_objects(body: bytes) -> None:
    with pytest.raises(FieldError) as caught:
        ingest.parse_json_format(body, tid=CLEAR_TID, record_id=None, rules=RULES)
    assert caught.value.field == "body"


def batch(body: bytes, content_type: str = "application/x-ndjson") -> list[ingest.BatchLine]:
    return [
        ingest.parse_batch_line(n, item, tid=CLEAR_TID, rules=RULES, now=1234)
        for n, item in ingest.split_batch(body, content_type)
    ]


def test_batch_lines_are_judged_one_by_one_and_numbered_from_one() -> None:
    good = record()
    lines = batch(ndjson([good]) + b"\n" + b"not json\n" + b"[1]\n" + ndjson([record(arch="vax")]))
    assert [line.line for line in lines] == [1, 3, 4, 5]
    assert lines[0].row is not None and lines[0].record_id == good["record_id"]
    assert lines[1].record_id is None and "not valid JSON" in str(lines[1].message)
    assert lines[2].record_id is None and "JSON object" in str(lines[2].message)
    assert lines[3].row is None and lines[3].message is not None and "arch" in lines[3].message


def test_batch_rejected_line_keeps_the_clients_record_id_only() -> None:
    sent = record(severity="9")
    made_up = _without("record_id")
    made_up["severity"] = "9"
    lines = batch(ndjson([sent, made_up, record(record_id="nothex")]))
    assert lines[0].record_id == sent["record_id"]
    assert lines[1].record_id is None
    assert lines[2].record_id is None and "record_id" in str(lines[2].message)


def test_batch_fills_a_missing_creation_timestamp_with_server_time() -> None:
    rec = record()
    del rec["creation_timestamp"]
    (line,) = batch(ndjson([rec]))
    assert line.row is not None
    assert line.row[ingest.RECORD_COLUMNS.index("creation_timestamp")] == 1234


def test_batch_as_json_array() -> None:
    lines = batch(json.dumps([record(), record(severity="0")]).encode(), "application/json")
    assert [line.row is not None for line in lines] == [True, False]


@pytest.mark.parametrize("body", [b"{", b'{"a": 1}', b"7"])
def test_batch_json_array_must_be_an_array(body: bytes) -> None:
    with pytest.raises(FieldError):
        batch(body, "application/json")
