"""Hostile bodies on the events routes: 4xx, never a 5xx, and nothing stored before lost.

A canary event of each route is stored first; after every attack the
collector still answers /healthz and every canary is still there.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from processes import Collector, report

MiB = 1024 * 1024
ROUTES = ("/publish", "/api/v1/telemetry/upload", "/api/v1/events")
TYPES = (None, "application/json", "application/x-ndjson", "text/plain", "application/jsonl")
CANARY_APP = "canary-of-the-hostile-events-test"
# Named attacks: (what, body, content type).
ATTACKS: list[tuple[str, bytes, str | None]] = [
    ("nested 100,000 deep", b"[" * 100_000 + b"]" * 100_000, "application/json"),
    ("nested objects", b'{"a":' * 50_000 + b"1" + b"}" * 50_000, None),
    ("NUL in a string", b'[{"app":"x","m":"a\\u0000b"}]', "application/json"),
    ("lone surrogate", b'[{"app":"\\ud800"}]', "application/json"),
    ("invalid UTF-8", b'[{"app":"\xff\xfe"}]', "application/json"),
    ("number past a double", b'[{"app":"x","n":1e400}]', "application/json"),
    ("NaN", b'[{"app":"x","n":NaN}]', "application/json"),
    (
        "300-character names",
        json.dumps([dict.fromkeys(("app", "scenario"), "a" * 300)]).encode(),
        "application/json",
    ),
    ("100,001 tiny events", b"{}\n" * 100_001, "application/x-ndjson"),
    ("a 2 MiB line", b'{"a":"' + b"x" * (2 * MiB) + b'"}\n{}\n', None),
    ("4 MiB + 1", b" " * (4 * MiB + 1), "application/json"),
    ("truncated array", b'[{"app":"x"},{"app":', "application/json"),
    ("a string for the array", b'"[]"', "application/json"),
    ("timestamp an object", b'[{"timestamp":{"s":1}}]', "application/json"),
]


@pytest.fixture(scope="module")
def canaries(fuzz_collector: Collector) -> Iterator[dict[str, int]]:
    with client(fuzz_collector) as http:
        for route in ROUTES:
            body = json.dumps([{"app": CANARY_APP, "event": route, "scenario": CANARY_APP}])
            answer = http.post(route, content=body, headers={"Content-Type": "application/json"})
            assert answer.status_code == 200, answer.text
        yield count_canaries(http)


def client(collector: Collector) -> httpx.Client:
    return httpx.Client(
        base_url=collector.base_url,
        timeout=30,
        headers={"Authorization": f"Bearer {collector.all_token}"},
    )


def count_canaries(http: httpx.Client) -> dict[str, int]:
    counts: dict[str, int] = {}
    for app in (CANARY_APP,):
        answer = http.get("/api/v1/events", params={"app": app, "limit": 1000})
        assert answer.status_code == 200, answer.text
        counts.update(Counter(e["source"] for e in answer.json()["events"]))
    return counts


def post(http: httpx.Client, route: str, body: bytes, content_type: str | None) -> int:
    headers = {"Content-Type": content_type} if content_type else {"Content-Type": ""}
    return http.post(route, content=body, headers=headers).status_code


def test_named_attacks_get_4xx_and_lose_nothing(
    fuzz_collector: Collector, canaries: dict[str, int]
) -> None:
    statuses: Counter[str] = Counter()
    with client(fuzz_collector) as http:
        for what, body, content_type, routes in [
            *((*attack, ROUTES) for attack in ATTACKS),
            ("the wrapper's events a number", b'{"events":5}', "application/json", ROUTES[1:2]),
        ]:
            for route in routes:
                status = post(http, route, body, content_type)
                statuses[str(status)] += 1
                assert 400 <= status < 500, f"{what} on {route}: {status}"
        assert http.get("/healthz").status_code == 200
        assert count_canaries(http) == canaries
    report("hostile-events/named", requests=sum(statuses.values()), statuses=dict(statuses))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    ["app", "event", "timestamp", "ts", "context_id", "level", "properties", "events",
     "scenario", "scenario_name", "summary", "details"]
)  # fmt: skip


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    route=st.sampled_from(ROUTES),
    content_type=st.sampled_from(TYPES),
    body=st.one_of(
        st.binary(max_size=200),
        st.lists(st.dictionaries(FIELDS, JSON, max_size=5), max_size=4).map(
            lambda items: json.dumps(items).encode()
        ),
        st.dictionaries(FIELDS, JSON, max_size=5).map(lambda item: json.dumps(item).encode()),
        st.lists(st.dictionaries(FIELDS, JSON, max_size=5), max_size=4).map(
            lambda items: b"\n".join(json.dumps(i).encode() for i in items)
        ),
    ),
)
def test_fuzzed_events_bodies_never_get_a_5xx(
    fuzz_collector: Collector,
    canaries: dict[str, int],
    route: str,
    content_type: str | None,
    body: bytes,
) -> None:
    with client(fuzz_collector) as http:
        status = post(http, route, body, content_type)
    assert status < 500, f"{route} {content_type} {body[:200]!r}: {status}"


def test_after_the_fuzz_the_canaries_are_all_there(
    fuzz_collector: Collector, canaries: dict[str, Any]
) -> None:
    with client(fuzz_collector) as http:
        assert http.get("/healthz").status_code == 200
        assert count_canaries(http) == canaries
