"""The incremental splitter of concatenated JSON values (telemd.collector.jsonstream.splitter)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from telemd.collector.jsonstream.splitter import JsonSplitter


def split_all(chunks: list[bytes], max_value: int = 1024 * 1024) -> tuple[list[Any], str | None]:
    splitter = JsonSplitter(max_value)
    values: list[Any] = []
    for chunk in [*chunks, None]:
        split = splitter.feed(chunk) if chunk is not None else splitter.end()
        values += split.values
        if split.error:
            return values, split.error
    return values, None


def test_slog_lines_with_trailing_newlines() -> None:
    lines = [
        b'{"time":"2024-07-03T15:16:55.563839+10:00","level":"INFO","msg":"hi mom"}\n',
        b'{"time":"2024-07-03T15:16:56.000001+10:00","level":"WARN","msg":"a\\nb"}\n',
    ]
    values, error = split_all(lines)
    assert error is None
    assert [v["msg"] for v in values] == ["hi mom", "a\nb"]


def test_values_without_newlines_and_across_chunks() -> None:
    body = b'{"msg": "hi", "context": 3}{"type":"span","id":"a"} [1,2] "x\\"}" 12 true null'
    for size in (1, 2, 3, 7, len(body)):
        chunks = [body[i : i + size] for i in range(0, len(body), size)]
        values, error = split_all(chunks)
        assert error is None, size
        assert values == [
            {"msg": "hi", "context": 3},
            {"type": "span", "id": "a"},
            [1, 2],
            'x"}',
            12,
            True,
            None,
        ], size


def test_pretty_printed_values_span_lines() -> None:
    body = b'{\n  "type": "span",\n  "id": "b",\n  "parentSpan":\n "a"}\n\n{"z": {"y": [\n]}}\n'
    values, error = split_all([body[:9], body[9:30], body[30:]])
    assert error is None
    assert values == [{"type": "span", "id": "b", "parentSpan": "a"}, {"z": {"y": []}}]


def test_invalid_json_midway_keeps_what_came_before() -> None:
    values, error = split_all([b'{"a":1}\n{"b":2}\n{"c":x}\n{"d":4}\n'])
    assert values == [{"a": 1}, {"b": 2}]
    assert error is not None and error.startswith("value 3 is not valid JSON")


def test_a_value_cut_off_at_the_end_is_an_error() -> None:
    values, error = split_all([b'{"a":1}\n{"msg"', b': "h'])
    assert values == [{"a": 1}]
    assert error == "value 2 is cut off at the end of the stream"


def test_a_stray_closing_bracket_is_an_error() -> None:
    values, error = split_all([b'{"a":1}]'])
    assert values == [{"a": 1}]
    assert error is not None and "unexpected ']'" in error


def test_a_value_larger_than_the_bound_is_refused_before_it_is_all_read() -> None:
    splitter = JsonSplitter(max_value=100)
    split = splitter.feed(b'{"a":1}\n{"big":"' + b"x" * 60)
    assert split.values == [{"a": 1}] and split.error is None
    split = splitter.feed(b"x" * 60)
    assert split.too_large and split.error == "value 2 is larger than 100 bytes"
    # the buffer holds the one value being read, never more than the bound and a chunk
    assert len(splitter._buf) < 100 + 60


def test_a_long_line_of_small_values_is_not_too_large() -> None:
    body = b'{"a":1}' * 1000 + b"\n"
    values, error = split_all([body], max_value=100)
    assert error is None and len(values) == 1000


def test_escaped_quote_split_at_the_backslash() -> None:
    values, error = split_all([b'{"a":"x\\', b'"y"}'])
    assert error is None and values == [{"a": 'x"y'}]


def test_scan_keeps_its_place_across_chunks() -> None:
    """A big value arriving byte by byte is scanned once, not again per byte."""
    splitter = JsonSplitter()
    body = b'{"k":"' + b"v" * 20_000 + b'"}'
    for byte in range(len(body) - 1):
        assert splitter.feed(body[byte : byte + 1]).values == []
        assert splitter._scan >= byte  # never goes back to the start
    assert splitter.feed(body[-1:]).values == [{"k": "v" * 20_000}]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@given(
    st.lists(json_values, max_size=8),
    st.lists(st.sampled_from(["", " ", "\n", "\r\n", "\t"]), min_size=8, max_size=8),
    st.lists(st.integers(1, 40), min_size=1, max_size=10),
    st.booleans(),
)
def test_any_concatenation_in_any_chunks(
    values: list[Any], separators: list[str], sizes: list[int], indent: bool
) -> None:
    parts = []
    for value, separator in zip(values, separators, strict=False):
        text = json.dumps(value, indent=1 if indent else None)
        # Bare numbers and literals need a separator: `1true` is not two values.
        parts.append(text + (separator or " "))
    body = "".join(parts).encode()
    chunks = []
    i = 0
    while i < len(body):
        size = sizes[len(chunks) % len(sizes)]
        chunks.append(body[i : i + size])
        i += size
    got, error = split_all(chunks)
    assert error is None
    assert got == values
