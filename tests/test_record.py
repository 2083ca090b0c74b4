"""Record rules: classification, severity, event id, payload."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telemd.errors import ErrorCode, RecordError
from telemd.record import (
    Record,
    clamp_severity,
    is_event_id,
    new_event_id,
    validate_classification,
    validate_payload_bytes,
)


@pytest.mark.parametrize(
    "classification",
    [
        "org.clearlinux/hello/world",
        "a/b/c",
        "com.example+lab/hw-probe/mce_v2:x@y",
        "a" * 40 + "/b/c",
    ],
)
def test_good_classifications_pass(classification: str) -> None:
    assert validate_classification(classification) == classification


@pytest.mark.parametrize(
    ("classification", "message"),
    [
        ("a/b", "exactly 3 levels"),
        ("a/b/c/d", "exactly 3 levels"),
        ("a//c", "empty level"),
        ("/b/c", "empty level"),
        ("a" * 41 + "/b/c", "longer than 40 bytes"),
        ("/".join(["a" * 40] * 3) + "xx", "longer than 122 bytes"),
        ("a b/c/d", "characters outside"),
        ("a/b/c\n", "characters outside"),
        ("a/b/ünï", "characters outside"),
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


def test_payload_rules() -> None:
    assert validate_payload_bytes("héllo\n".encode()) == "héllo\n"
    with pytest.raises(RecordError, match="NUL"):
        validate_payload_bytes(b"a\0")
    with pytest.raises(RecordError) as info:
        validate_payload_bytes(b"x" * 11, max_size=10)
    assert info.value.code == ErrorCode.TOO_LARGE
    with pytest.raises(RecordError, match="UTF-8"):
        validate_payload_bytes(b"\xff")


def test_a_record_validates_what_it_is_given() -> None:
    record = Record("a/b/c", 9, "x", event_id="f" * 32, creation_timestamp=5)
    assert (record.severity, record.event_id, record.creation_timestamp) == (4, "f" * 32, 5)
    with pytest.raises(RecordError, match="event id"):
        Record("a/b/c", 1, "x", event_id="nope")
    with pytest.raises(RecordError, match="payload format version"):
        Record("a/b/c", 1, "x", payload_format_version=-1)
    with pytest.raises(RecordError) as info:
        Record("a/b/c", 1, "é" * 5, max_payload_size=9)
    assert info.value.code == ErrorCode.TOO_LARGE


def test_records_compare_by_value() -> None:
    first = Record("a/b/c", 1, "x", event_id="a" * 32, creation_timestamp=1)
    same = Record("a/b/c", 1, "x", event_id="a" * 32, creation_timestamp=1)
    other = Record("a/b/c", 2, "x", event_id="a" * 32, creation_timestamp=1)
    assert first == same and hash(first) == hash(same)
    assert first != other
