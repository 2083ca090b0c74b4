"""telemd.collector.json_codec: the standard library's json, the fallback
where orjson is missing, accepts and refuses what orjson does."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from telemd.collector import json_codec

orjson = pytest.importorskip("orjson", reason="orjson is not installed: nothing to compare with")

BODIES: list[bytes | str] = [
    b'{"classification": "org.test/a/b", "severity": 2}',
    b'{"a":1,"a":2}',
    '{"x":"\u00e9"}',
    b'"\\ud83d\\ude00"',
    b'"\\u0000"',
    b"  {}  ",
    b"-0",
    b"1.0",
    b"[1e308]",
    b"18446744073709551615",  # the largest 64-bit integer
    b"18446744073709551616",  # a float from here on
    b"-9223372036854775808",
    b"-9223372036854775809",
    b"1e-400",
    b"[" * 900 + b"]" * 900,
    # refused by both
    b"NaN",
    b"[Infinity]",
    b"-Infinity",
    b"1e400",
    b"-1e400",
    b"1" * 5000,
    b"\xff",
    b'"\xc3"',
    b'"\xed\xa0\x80"',  # a surrogate in UTF-8 bytes
    b'"\\ud800"',  # a lone escaped surrogate
    b'{"\\udc00":1}',
    b'{"a":[{"b":"\\udfff"}]}',
    "\ud800",
    b"\xef\xbb\xbf{}",
    b"[1,]",
    b"{}x",
    b"00",
    b" ",
    b"\x00",
    b"[" * 100_000,
]


def outcome(loads: Any, body: bytes | str) -> tuple[str, Any]:
    try:
        value = loads(body)
    except ValueError:
        return ("refused", None)
    return ("accepted", (type(value), value))


@pytest.mark.parametrize("body", BODIES, ids=lambda body: repr(body[:24]))
def test_stdlib_fallback_agrees_with_orjson(body: bytes | str) -> None:
    assert outcome(json_codec.stdlib_loads, body) == outcome(orjson.loads, body)


def test_both_refuse_deep_nesting_without_a_recursion_error() -> None:
    deep = b"[" * 2000 + b"]" * 2000
    refused = ("refused", None)
    assert outcome(json_codec.stdlib_loads, deep) == outcome(orjson.loads, deep) == refused


def test_dumps_writes_the_same_bytes() -> None:
    answer = {"accepted": 2, "results": [{"line": 1, "message": 'caf\u00e9 "x"'}], "ok": True}
    assert json_codec.stdlib_dumps(answer) == orjson.dumps(answer)


def test_orjson_is_the_fast_path_and_json_the_fallback(tmp_path: Any) -> None:
    assert json_codec.loads is orjson.loads
    (tmp_path / "orjson.py").write_text('raise ImportError("not installed")\n')
    probe = subprocess.run(
        [sys.executable, "-c", "from telemd.collector import json_codec as j;"
         "print(j.loads is j.stdlib_loads, j.dumps is j.stdlib_dumps)"],
        capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path)}, check=True,
    )  # fmt: skip
    assert probe.stdout.split() == ["True", "True"]
