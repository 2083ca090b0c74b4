"""server/params.py: raw query strings into checked values, or a FieldError naming one."""

from __future__ import annotations

import pytest

from telemd.collector.ingest.records import FieldError
from telemd.collector.server.params import MAX_UNIX_TIME, integer, read_query, unix_time

FILTERS = ("severity", "classification")


def test_a_query_string_becomes_one_text_per_name() -> None:
    raw = b"severity=4&classification=org.example%2Fa+b%2Fc"
    assert read_query(raw, FILTERS) == {"severity": "4", "classification": "org.example/a b/c"}
    assert read_query(b"severity=&classification=x", FILTERS) == {"classification": "x"}
    assert read_query(b"", FILTERS) == {}


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        (b"color=red", "color", "not a parameter"),
        (b"severity=1&severity=2", "severity", "more than once"),
        (b"severity=%FF", "severity", "UTF-8"),
        (b"severity=%ED%A0%80", "severity", "UTF-8"),
        (b"%FF=1", "query", "UTF-8"),
        (b"classification=a%00b", "classification", "control"),
        (b"classification=" + b"x" * 257, "classification", "longer than 256"),
        (b"a=1&b=1&c=1&d=1", "query", "more than 2"),
    ],
)
def test_a_bad_query_string_is_refused_naming_the_parameter(
    raw: bytes, field: str, words: str
) -> None:
    with pytest.raises(FieldError) as caught:
        read_query(raw, FILTERS)
    assert caught.value.field == field
    assert words in caught.value.message


def test_a_route_without_parameters_refuses_any() -> None:
    with pytest.raises(FieldError, match="takes none"):
        read_query(b"x=1", ())


@pytest.mark.parametrize("value", ["-1", "+1", "1.0", "1e3", "0x1", "1_0", "\uff11", "9" * 20])
def test_integers_are_plain_decimal_digits(value: str) -> None:
    with pytest.raises(FieldError, match=r"limit: must be an integer in 1\.\.1000"):
        integer("limit", value, 1, 1000)


def test_integers_are_bounded() -> None:
    assert integer("limit", "1000", 1, 1000) == 1000
    with pytest.raises(FieldError, match=r"must be in 1\.\.1000, got 1001"):
        integer("limit", "1001", 1, 1000)


def test_times_are_unix_seconds_or_iso_8601_between_1970_and_9999() -> None:
    assert unix_time("since", "0") == 0
    assert unix_time("since", "1.5") == 1.5
    assert unix_time("since", str(MAX_UNIX_TIME)) == MAX_UNIX_TIME
    assert unix_time("since", "1970-01-02") == 86400
    assert unix_time("since", "1970-01-01T01:00:00+01:00") == 0


@pytest.mark.parametrize(
    "value",
    ["inf", "nan", "1e20", "-1", str(MAX_UNIX_TIME + 1), "1969-12-31", "0001-01-01T00:00+14:00",
     "9999-12-31T23:59:59-14:00", "soon", "1" * 30],
)  # fmt: skip
def test_times_out_of_range_or_form_are_refused(value: str) -> None:
    with pytest.raises(FieldError, match=r"since: must be unix seconds in 0\.\.253402300799"):
        unix_time("since", value)
