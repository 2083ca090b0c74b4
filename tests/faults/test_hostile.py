"""Hostile input: fuzzed frames and records (100,000 inputs), a live fuzz of
a running daemon, and hostile HTTP to the collector.

The frame fuzz uses hypothesis (atheris is not installed here): random and
mutated frames go to telemd.frame.decode_frame, random fields to Record. The
only exceptions allowed are the ones the daemon turns into `ERR` replies.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
import time
from urllib.parse import quote_from_bytes

import httpx
import pytest
from daemon_harness import DaemonHarness
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from processes import Collector, report

from telemd.errors import RecordError
from telemd.frame import decode_frame, encode_frame
from telemd.record import Record

FUZZ = settings(
    max_examples=25_000,
    deadline=None,
    derandomize=False,
    database=None,
    suppress_health_check=list(HealthCheck),
)
VALID = encode_frame(Record("org.example/faults/fuzz", 2, "payload\n"))


def sized(body: bytes) -> bytes:
    """A frame whose leading total_size matches its length, as the reader cuts it."""
    return len(body).to_bytes(4, "little") + body[4:] if len(body) >= 4 else body


def decodes_or_refuses(frame: bytes) -> None:
    with contextlib.suppress(RecordError):  # FrameError too: "ERR invalid|too-large"
        decode_frame(frame)


@FUZZ
@given(st.binary(min_size=9, max_size=4096))
def test_fuzz_random_frames(data: bytes) -> None:
    decodes_or_refuses(sized(data))


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), max_size=8))
def test_fuzz_mutated_valid_frames(flips: list[tuple[int, int]]) -> None:
    frame = bytearray(VALID)
    for index, value in flips:
        frame[index] = value
    decodes_or_refuses(sized(bytes(frame)))


@FUZZ
@given(st.integers(9, len(VALID)), st.binary(max_size=64), st.integers(0, len(VALID)))
def test_fuzz_cut_and_spliced_frames(cut: int, insert: bytes, at: int) -> None:
    frame = VALID[:at] + insert + VALID[at:]
    decodes_or_refuses(sized(frame[:cut] if cut < len(frame) else frame))


@FUZZ
@given(
    st.text(max_size=200), st.integers(-(2**40), 2**40), st.text(max_size=300), st.text(max_size=40)
)
def test_fuzz_record_validation(
    classification: str, severity: int, payload: str, event_id: str
) -> None:
    try:
        record = Record(classification, severity, payload, event_id=event_id or None)
    except RecordError:
        return
    decode_frame(encode_frame(record))  # what validation accepts, the decoder accepts


def test_live_fuzz_never_crashes_the_daemon_and_serves_the_next_client(
    harness: DaemonHarness,
) -> None:
    seed = time.time_ns()
    rng = random.Random(seed)
    harness.write_config(client_timeout=0.5, uid_records_per_minute=-1, log_level="info")
    harness.start()
    kinds = {"random": 0, "truncated": 0, "oversized": 0, "spliced": 0, "slow": 0}
    slow: list[threading.Thread] = []

    def slow_writer() -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(harness.socket)
            for byte in VALID[: rng.randint(1, len(VALID) - 1)]:
                sock.sendall(bytes([byte]))
                time.sleep(0.05)  # a writer slower than client_timeout allows

    worst = 0.0
    for _ in range(300):
        kind = rng.choice(list(kinds))
        kinds[kind] += 1
        if kind == "slow":
            thread = threading.Thread(target=_ignore_errors(slow_writer), daemon=True)
            thread.start()
            slow.append(thread)
        else:
            if kind == "random":
                data = rng.randbytes(rng.randint(1, 2048))
            elif kind == "truncated":
                data = VALID[: rng.randint(1, len(VALID) - 1)]
            elif kind == "oversized":
                data = rng.randint(20_000, 2**32 - 1).to_bytes(4, "little") + rng.randbytes(64)
            else:
                at = rng.randint(0, len(VALID))
                data = sized(VALID[:at] + rng.randbytes(rng.randint(1, 64)) + VALID[at:])
            _ignore_errors(lambda d=data: _hit(harness.socket, d))()
        started = time.monotonic()
        with harness.client(timeout=5) as client:
            assert client.send(Record("org.example/faults/after", 1, "well-formed"))
        worst = max(worst, time.monotonic() - started)
        assert harness.proc is not None and harness.proc.poll() is None, f"seed {seed}"
    for thread in slow:
        thread.join(30)
    assert not any("Traceback" in line for line in harness.log), f"seed {seed}"
    assert harness.stop() == 0
    report("hostile/live-fuzz", seed=seed, bad_clients=kinds, worst_next_client_s=round(worst, 3))
    assert worst < 2.0


def _hit(path: str, data: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        sock.connect(path)
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(4096):
            pass


def _ignore_errors(action: object) -> object:
    def run() -> None:
        with contextlib.suppress(OSError):  # the daemon may close a hostile connection
            action()  # type: ignore[operator]

    return run


MIB4_1 = 4 * 2**20 + 1
TID = "6907c830-eed9-4ce9-81ae-76daf8d88f0f"
HOSTILE_REQUESTS: list[tuple[str, str, dict[str, str], bytes]] = [
    ("bad json", "/v2/collector", {"Content-Type": "application/json"}, b"{not json"),
    ("json array", "/v2/collector", {"Content-Type": "application/json"}, b"[1, 2]"),
    ("json number", "/v2/collector", {"Content-Type": "application/json"}, b"12"),
    ("wrong types", "/v2/collector", {"Content-Type": "application/json"},
     json.dumps({"severity": [1], "classification": {"a": 1}, "payload": 3}).encode()),
    ("invalid utf-8", "/v2/collector", {"Content-Type": "application/json"}, b'{"a": "\xff\xfe"}'),
    ("bad ndjson", "/api/v1/records", {"Content-Type": "application/x-ndjson"}, b"{\n}\n[\n"),
    ("ndjson wrong types", "/api/v1/records", {"Content-Type": "application/x-ndjson"},
     b'{"severity": null, "record_id": 5}\n"string"\n'),
    ("headers garbage", "/v2/collector", {"Severity": "high", "Creation-Timestamp": "-1e999",
     "Content-Type": "text/plain"}, b"\x00" * 100),
    ("4 MiB + 1 single", "/v2/collector", {"Content-Type": "application/json"}, b" " * MIB4_1),
    ("4 MiB + 1 batch", "/api/v1/records", {"Content-Type": "application/x-ndjson"},
     b"\n" * MIB4_1),
    ("huge header", "/v2/collector", {"Content-Type": "text/plain", "Severity": "1" * 200_000},
     b"x"),
    ("many headers", "/v2/collector",
     {"Content-Type": "text/plain", **{f"X-H{i}": "v" * 100 for i in range(2000)}}, b"x"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "path", "headers", "body"), HOSTILE_REQUESTS, ids=[r[0] for r in HOSTILE_REQUESTS]
)
def test_hostile_http_gets_4xx_never_500(
    collector: Collector, name: str, path: str, headers: dict[str, str], body: bytes
) -> None:
    with httpx.Client(base_url=collector.base_url, timeout=30) as http:
        try:
            answer = http.post(path, headers={"X-Telemetry-TID": TID, **headers}, content=body)
        except (httpx.RemoteProtocolError, httpx.ReadError):
            answer = None  # the server closed the connection: refused, not a 500
    status = 0 if answer is None else answer.status_code
    report(f"hostile-http/{name}", status=status)
    if answer is None:
        assert "header" in name, f"{name}: the connection was dropped"
    elif path == "/api/v1/records" and status == 200:
        # A batch answers per line; every hostile line must be rejected.
        results = answer.json()["results"]
        assert results and {r["status"] for r in results} == {"rejected"}, answer.text
    else:
        assert 400 <= status < 500, f"{name}: {status} {answer.text[:200]}"
    with httpx.Client(base_url=collector.base_url, timeout=10) as http:
        assert http.get("/healthz").status_code == 200


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    st.dictionaries(
        st.sampled_from(["severity", "classification", "payload", "machine_id", "event_id",
                         "creation_timestamp", "record_format_version", "arch", "build"]),
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50)
        | st.lists(st.integers(), max_size=3),
    )
)  # fmt: skip
def test_fuzzed_json_records_get_4xx_never_500(
    fuzz_collector: Collector, fields: dict[str, object]
) -> None:
    with httpx.Client(base_url=fuzz_collector.base_url, timeout=10) as http:
        answer = http.post(
            "/v2/collector",
            headers={"X-Telemetry-TID": TID, "Content-Type": "application/json"},
            content=json.dumps(fields).encode(),
        )
    assert answer.status_code < 500, answer.text


# Hostile query values. Every numeric parameter must refuse each of them
# with a 400 naming it; a text filter may take the printable ones as text.
NOT_A_NUMBER = [
    b"inf", b"-inf", b"Infinity", b"nan", b"NaN", b"1e20", b"1e308", b"-1", b"-0", b"+1",
    b"0x10", b"1_000", b"1.5e3", b"%201", b"1%20", b"9" * 20, b"9" * 5000,
    b"%EF%BC%91", b"%C2%B2", b"%D9%A1", b"99999999999999999999999999",
    b"18446744073709551616", b"2999-13-01",
    b"0001-01-01T00:00:00%2B14:00", b"9999-12-31T23:59:59-14:00", b"1969-12-31",
]  # fmt: skip
# The first value past each end of each numeric parameter's range.
PAST_THE_ENDS = {
    "severity": [b"0", b"5"],
    "severity_min": [b"0", b"5"],
    "created_in_days": [b"100001"],
    "created_in_sec": [b"8640000001"],
    "limit": [b"0", b"1001"],
    "before": [b"0", b"9223372036854775808"],
    "since": [b"253402300800", b"10000-01-01"],
    "until": [b"253402300800", b"10000-01-01"],
    "after": [b"9223372036854775808"],
}
# The parameters that take any printable text (q: any holding a letter or digit).
TEXT_PARAMS = (
    "classification", "build", "machine_id", "system_name", "host_type",
    "source", "app", "scenario", "mode", "event", "context_id", "level", "q",
)  # fmt: skip
# Refused by every parameter, text filters included.
NOT_TEXT = [b"%FF", b"%C0%80", b"%ED%A0%80", b"%00", b"%0A", b"a%09b", b"x" * 300]
# Bytes a request line may not hold: h11 answers 400 before any route runs.
NOT_A_TARGET = [b"\xff\xfe", b"a\x00b", b"a\x7fb"]


def _route_table() -> list[tuple[str, str, tuple[str, ...]]]:
    """The token routes; the console's pages take a session, and
    tests/collector/test_console_access.py sends them these values with one."""
    from telemd.collector.access.guard import GuardedRoute
    from telemd.collector.console.routes import CONSOLE_ROUTES
    from telemd.collector.server.app import ROUTES
    from telemd.collector.server.params import ROUTE_PARAMS

    # The WebSocket routes take no query (test_jsonstream_websocket.py tries them).
    return [
        (method, route.path, ROUTE_PARAMS.get(route.path, ()))
        for route in ROUTES
        if isinstance(route, GuardedRoute) and route not in CONSOLE_ROUTES
        for method in sorted(route.methods or ())
        if method != "HEAD"
    ]


def _raw_request(collector: Collector, method: str, target: bytes) -> tuple[int, bytes]:
    """One request with the target's bytes as given (no client re-encodes them),
    with a token of every scope so that it reaches the route's own checks."""
    with socket.create_connection(("127.0.0.1", collector.port), timeout=10) as sock:
        sock.sendall(
            method.encode() + b" " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer " + collector.all_token.encode() + b"\r\n"
            b"Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def _hostile_queries() -> list[tuple[str, str, bytes, str | None]]:
    """(method, path, query string, the field a 400 must name: None if 200 is
    fine, "" if the 400 comes from the HTTP layer)."""
    cases: list[tuple[str, str, bytes, str | None]] = []
    for method, path, names in _route_table():
        cases += [
            (method, path, b"color=red", "color"),
            (method, path, b"%FF=1", "query"),
            (method, path, b"%00=1", "query"),
            (method, path, b"&".join(b"p%d=1" % i for i in range(200)), "query"),
        ]
        for name in names:
            key = name.encode()
            cases.append((method, path, key + b"=1&" + key + b"=1", name))
            numeric = name not in TEXT_PARAMS
            for value in NOT_A_NUMBER:
                cases.append((method, path, key + b"=" + value, name if numeric else None))
            for value in [*NOT_TEXT, *PAST_THE_ENDS.get(name, [])]:
                cases.append((method, path, key + b"=" + value, name))
            for value in NOT_A_TARGET:
                cases.append((method, path, key + b"=" + value, ""))
    return cases


def test_hostile_query_parameters_of_every_route_get_400_naming_them(
    fuzz_collector: Collector,
) -> None:
    cases = _hostile_queries()
    statuses: dict[int, int] = {}
    for method, path, query, field in cases:
        status, body = _raw_request(fuzz_collector, method, path.encode() + b"?" + query)
        statuses[status] = statuses.get(status, 0) + 1
        where = f"{method} {path}?{query[:60]!r}"
        assert status < 500, f"{where}: {status} {body[:300]!r}"
        if field is not None:
            assert status == 400, f"{where}: {status} {body[:300]!r}"
            if field:
                assert json.loads(body)["field"] == field, f"{where}: {body[:300]!r}"
    report("hostile-http/query-parameters", requests=len(cases), statuses=statuses)
    # The bounds themselves are accepted: the refusals above are about the values.
    for query in (b"since=0", b"since=253402300799", b"since=9999-12-31T23:59:59Z"):
        assert _raw_request(fuzz_collector, "GET", b"/api/v1/summary?" + query)[0] == 200
    assert _raw_request(fuzz_collector, "GET", b"/api/records?limit=1000&before=1")[0] == 200


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(_route_table()), st.data())
def test_fuzzed_query_strings_get_4xx_never_500(
    fuzz_collector: Collector, route: tuple[str, str, tuple[str, ...]], data: st.DataObject
) -> None:
    method, path, names = route
    name = data.draw(st.sampled_from(names) if names else st.binary(max_size=20))
    value = data.draw(
        st.sampled_from([*NOT_A_NUMBER, *NOT_TEXT])
        | st.binary(max_size=300)
        | st.text(max_size=40).map(str.encode)
        | st.integers().map(lambda n: str(n).encode())
        | st.floats().map(lambda x: repr(x).encode())
    )
    key = name.encode() if isinstance(name, str) else name
    query = quote_from_bytes(key) + "=" + quote_from_bytes(value)
    status, body = _raw_request(fuzz_collector, method, f"{path}?{query}".encode())
    assert status < 500, f"{method} {path}?{query[:80]}: {status} {body[:300]!r}"
