"""Record rules: classification, severity, event id, payload."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telemd.errors import ErrorCode, RecordError
from telemd.record import (
    NUMBER_BOUNDS,
    FieldError,
    Record,
    check_host_text,
    clamp_severity,
    conform_host_text,
    is_event_id,
    new_event_id,
    new_record_id,
    normalise_event_id,
    normalise_payload,
    parse_number,
    validate_classification,
    validate_payload,
    validate_payload_bytes,
)


@pytest.mark.parametrize(
    "classification",
    [
        "org.clearlinux/hello/world",
        "a/b/c",
        "com.example+lab/hw-probe/mce_v2:x@y",
        "a" * 40 + "/b/c",
        "org.example/my probe/disk full",  # libtelemetry and telemetrics-backend take spaces
        "a//c",  # and empty levels
        "//",
    ],
)
def test_good_classifications_pass(classification: str) -> None:
    assert validate_classification(classification) == classification


@pytest.mark.parametrize(
    ("classification", "message"),
    [
        ("a/b", "exactly 3 levels"),
        ("a/b/c/d", "exactly 3 levels"),
        ("a" * 41 + "/b/c", "longer than 40 bytes"),
        ("/".join(["a" * 40] * 3) + "xx", "longer than 122 bytes"),
        ("a/b/c\n", "outside printable ASCII"),
        ("a/b\tc/d", "outside printable ASCII"),
        ("a/b/ünï", "outside printable ASCII"),
        (" a/b/c", "starts or ends with a space"),
        ("a/b/c ", "starts or ends with a space"),
    ],
)
def test_bad_classifications_say_why(classification: str, message: str) -> None:
    with pytest.raises(RecordError, match=message):
        validate_classification(classification)


@given(st.integers(-(2**40), 2**40))
def test_severity_is_clamped_to_1_through_4(severity: int) -> None:
    clamped = clamp_severity(severity)
    assert 1 <= clamped <= 4
    if 1 <= severity <= 4:
        assert clamped == severity


def test_event_ids() -> None:
    fresh = new_event_id()
    assert is_event_id(fresh)
    assert fresh != new_event_id()
    assert not is_event_id(fresh.upper())
    assert not is_event_id(fresh[:-1])
    assert not is_event_id(fresh[:-1] + "g")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef"),
        ("0123456789ABCDEF0123456789ABCDEF", "0123456789abcdef0123456789abcdef"),
        ("01234567-89ab-cdef-0123-456789abcdef", "0123456789abcdef0123456789abcdef"),
        (" 01234567-89AB-CDEF-0123-456789ABCDEF\n", "0123456789abcdef0123456789abcdef"),
        ("0123456789-abcdef-0123-4567-89abcdef", None),  # dashes in the wrong places
        ("01234567-89ab-cdef-0123-456789abcdeg", None),
        ("xyz", None),
        ("", None),
    ],
)
def test_event_ids_normalise_from_hex_or_a_dashed_uuid(given: str, expected: str | None) -> None:
    assert normalise_event_id(given) == expected


def test_record_takes_its_event_id_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEM_EVENT_ID", "01234567-89ab-cdef-0123-456789abcdef")
    assert Record("a/b/c", 1, "x").event_id == "0123456789abcdef0123456789abcdef"
    given = new_event_id()
    assert Record("a/b/c", 1, "x", event_id=given).event_id == given  # an explicit id wins
    monkeypatch.setenv("TELEM_EVENT_ID", "")
    assert Record("a/b/c", 1, "x").event_id != "0123456789abcdef0123456789abcdef"
    monkeypatch.setenv("TELEM_EVENT_ID", "not-an-id")
    with pytest.raises(RecordError, match=r"\$TELEM_EVENT_ID must be"):
        Record("a/b/c", 1, "x")


def test_payload_rules() -> None:
    assert validate_payload_bytes("héllo\n".encode()) == "héllo\n"
    with pytest.raises(RecordError, match="NUL"):
        validate_payload_bytes(b"a\0")
    with pytest.raises(RecordError) as info:
        validate_payload_bytes(b"x" * 11, max_size=10)
    assert info.value.code == ErrorCode.TOO_LARGE
    with pytest.raises(RecordError, match="UTF-8"):
        validate_payload_bytes(b"\xff")


@pytest.mark.parametrize(
    ("raw", "text", "notes"),
    [
        (b"plain\n", "plain\n", None),
        ("h\u00e9llo".encode(), "h\u00e9llo", None),
        (b"a\0b", "a", ["payload cut at its first NUL, byte 1 of 3"]),
        (b"caf\xe9", "caf\u00e9", ["payload is not UTF-8 (byte 3): read as Latin-1"]),
        (
            b"\xff\0\xff",
            "\u00ff",
            [
                "payload cut at its first NUL, byte 1 of 3",
                "payload is not UTF-8 (byte 0): read as Latin-1",
            ],
        ),
    ],
)
def test_a_payload_is_read_as_clear_reads_it(
    raw: bytes, text: str, notes: list[str] | None
) -> None:
    assert normalise_payload(raw) == (text, notes)
    validate_payload(text)  # and the collector takes what comes out


def test_a_normalised_payload_stays_within_the_limit() -> None:
    assert normalise_payload(b"\xe9" * 5, max_size=10)[0] == "\u00e9" * 5
    with pytest.raises(RecordError) as info:
        normalise_payload(b"\xe9" * 6, max_size=10)
    assert info.value.code == ErrorCode.TOO_LARGE
    with pytest.raises(RecordError) as info:
        normalise_payload(b"x" * 11, max_size=10)
    assert info.value.code == ErrorCode.TOO_LARGE


def test_a_record_validates_what_it_is_given() -> None:
    record = Record("a/b/c", 9, "x", event_id="f" * 32, creation_timestamp=5)
    assert (record.severity, record.event_id, record.creation_timestamp) == (4, "f" * 32, 5)
    with pytest.raises(RecordError, match="event id"):
        Record("a/b/c", 1, "x", event_id="nope")
    with pytest.raises(RecordError, match=r"payload_format_version: must be in 0\.\.4294967295"):
        Record("a/b/c", 1, "x", payload_format_version=-1)
    with pytest.raises(RecordError, match=r"creation_timestamp: must be in 0\.\.253402300799"):
        Record("a/b/c", 1, "x", creation_timestamp=10**25)
    with pytest.raises(RecordError) as info:
        Record("a/b/c", 1, "é" * 5, max_payload_size=9)
    assert info.value.code == ErrorCode.TOO_LARGE


def test_records_compare_by_value() -> None:
    first = Record("a/b/c", 1, "x", event_id="a" * 32, creation_timestamp=1)
    same = Record("a/b/c", 1, "x", event_id="a" * 32, creation_timestamp=1)
    other = Record("a/b/c", 2, "x", event_id="a" * 32, creation_timestamp=1)
    assert first == same and hash(first) == hash(same)
    assert first != other


def test_record_ids_are_128_random_bits_in_hex() -> None:
    ids = {new_record_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(is_event_id(record_id) for record_id in ids)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("severity", " 1", "decimal integer"),
        ("severity", "+1", "decimal integer"),
        ("severity", "1_0", "decimal integer"),
        ("severity", "\u0661", "decimal integer"),  # ARABIC-INDIC DIGIT ONE
        ("creation_timestamp", "9" * 5000, "a number of 5000 digits"),
        ("creation_timestamp", "253402300800", r"in 0\.\.253402300799"),
    ],
)
def test_numbers_are_ascii_digits_within_their_bounds(name: str, text: str, message: str) -> None:
    with pytest.raises(FieldError, match=message) as info:
        parse_number(name, text)
    assert info.value.field == name
    assert info.value.message.startswith(f"{name}: ")


def test_number_bounds_fit_a_signed_64_bit_integer_column() -> None:
    for low, high in NUMBER_BOUNDS.values():
        assert -(2**63) <= low <= high < 2**63


def test_host_text_is_conformed_to_what_the_rules_accept() -> None:
    assert conform_host_text("cpu_model", "AMD\tEPYC\x00 7B13\u00a0") == "AMD EPYC  7B13 "
    assert conform_host_text("system_name", "s" * 100) == "s" * 80
    for name, value in [("cpu_model", "a\tb"), ("system_name", "s" * 81), ("machine_id", "")]:
        with pytest.raises(FieldError) as info:
            check_host_text(name, value)
        assert info.value.field == name
