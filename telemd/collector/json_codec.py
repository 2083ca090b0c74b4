"""JSON for the collector: orjson where it is installed (the fast path),
else the standard library's json held to orjson's rules, so that a body is
accepted or refused alike whichever runs (Debian 12 packages no orjson).

`loads` raises ValueError for anything that is not strict UTF-8 JSON
(orjson.JSONDecodeError is a ValueError): invalid UTF-8, NaN and Infinity,
numbers beyond a double, lone surrogates, nesting deep enough to exhaust
the stack. Nothing else may escape it, whatever a client sends. Integers
outside 64 bits become floats, as orjson reads them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

# An escaped surrogate (\ud800-\udfff) may come without its pair; raw ones
# cannot: they are invalid UTF-8 and refused by the decoding before.
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


_INT_MIN, _INT_END = -(2**63), 2**64
_INT_DIGITS = 20  # -9223372036854775808 and 18446744073709551615 have 19 or 20


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


def _parse_int(text: str) -> int | float:
    # The length first: int() of thousands of digits is slow, or refused.
    if len(text) <= _INT_DIGITS:
        value = int(text)
        if _INT_MIN <= value < _INT_END:
            return value
    return _parse_float(text)


def _check_strings(value: object) -> None:
    """Raise ValueError if any string in `value` holds a lone surrogate."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            item.encode("utf-8")  # UnicodeEncodeError is a ValueError
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())


def stdlib_loads(data: bytes | str) -> Any:
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    text = raw.decode("utf-8")  # orjson reads UTF-8 only
    try:
        value = json.loads(
            text, parse_constant=_refuse_constant, parse_int=_parse_int, parse_float=_parse_float
        )
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if _ESCAPED_SURROGATE.search(raw):
        _check_strings(value)
    return value


def stdlib_dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


loads: Callable[[bytes | str], Any]
dumps: Callable[[Any], bytes]
try:
    import orjson
except ImportError:
    loads, dumps = stdlib_loads, stdlib_dumps
else:
    loads, dumps = orjson.loads, orjson.dumps
