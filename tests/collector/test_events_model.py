"""An event's time (events/model.py parse_time): every form a client sends, and the
fast path (the text as it comes) agreeing with the normalised one on any text."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telemd.collector.events.model import MAX_UNIX_TIME, _normalised_time, parse_time, seconds_of

MOMENT = 1719983815.123456  # 2024-07-03T05:16:55.123456Z


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2024-07-03T05:16:55.123456Z", MOMENT),
        ("2024-07-03T05:16:55.123456789Z", MOMENT),  # shuttle's nanoseconds, cut
        ("2024-07-03T05:16:55.123456789z", MOMENT),
        ("2024-07-03T07:16:55.123456+02:00", MOMENT),
        ("  2024-07-03T05:16:55.123456Z\n", MOMENT),
        ("2024-07-03T05:16:55.123456", MOMENT),  # no zone: UTC
        ("2024-07-03 05:16:55.123456+00:00", MOMENT),
        (MOMENT, MOMENT),
        (1719983815, 1719983815.0),
        (True, None),
        (-1, None),
        (MAX_UNIX_TIME + 1, None),
        ("0001-01-01T00:00:00Z", None),  # before 1970
        ("yesterday", None),
        ("2024-07-03T05:16:55Z" + " " * 60, None),  # longer than 64 characters
        (None, None),
        ({"s": 1}, None),
    ],
)
def test_parse_time(value: object, seconds: float | None) -> None:
    assert parse_time(value) == seconds


def slow_path(text: str) -> float | None:
    """The time by the normalisation alone, as every text was read before the fast path."""
    if len(text) > 64:
        return None
    moment = _normalised_time(text)
    return None if moment is None else seconds_of(moment)


@given(
    moment=st.datetimes(min_value=datetime(1960, 1, 1), max_value=datetime(9999, 12, 30)),
    offset=st.sampled_from(["Z", "z", "+00:00", "-05:30", "", " "]),
    decimals=st.integers(0, 9),
    separator=st.sampled_from(["T", " ", "t"]),
)
def test_the_fast_path_reads_every_time_as_the_normalised_path(
    moment: datetime, offset: str, decimals: int, separator: str
) -> None:
    text = moment.strftime(f"%Y-%m-%d{separator}%H:%M:%S")
    if decimals:
        text += "." + f"{moment.microsecond:06d}{moment.microsecond % 1000:03d}"[:decimals]
    text += offset
    assert parse_time(text) == slow_path(text)


@given(st.text(max_size=40))
def test_any_text_reads_alike_on_both_paths(text: str) -> None:
    assert parse_time(text) == slow_path(text)


def test_a_time_past_the_end_of_year_9999_in_its_zone_is_refused() -> None:
    assert parse_time("9999-12-31T23:59:59-01:00") is None
    assert parse_time("9999-12-31T23:59:59+01:00") == (
        datetime(9999, 12, 31, 22, 59, 59, tzinfo=timezone.utc).timestamp()
    )
