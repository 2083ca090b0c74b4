"""One set of record rules: whatever the daemon acknowledges, its collector stores.

Hypothesis generates frames, from well-formed to hostile, field by field; a
real daemon decodes each and delivers what it acknowledged to a real
telemd-collector (SQLite) in each of the three post formats. A record the
daemon answered `OK` must end `delivered` (a 2xx) and be in the collector's
table, never `rejected`: `creation_timestamp: -1` and `payload_format_version:
9999999999` were acknowledged and then rejected before the daemon and the
collector shared their rules (telemd.record).
"""

from __future__ import annotations

import string

import pytest
from daemon_harness import DaemonHarness
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from processes import Collector, report

from telemd.collector.ingest.records import CLEAR_LINUX_TID, RECORD_COLUMNS, Rules, validate_record
from telemd.daemon.main import conform_host
from telemd.errors import RejectedError
from telemd.hostinfo import HostInfo
from telemd.record import (
    ARCHES,
    DEFAULT_MAX_PAYLOAD_SIZE,
    HEADER_NAMES,
    MAX_TIMESTAMP,
    UINT32_MAX,
)

EXAMPLES = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


EDGES = [0, 1, 4, 5, 2**31 - 1, 2**31, UINT32_MAX, UINT32_MAX + 1, MAX_TIMESTAMP,
         MAX_TIMESTAMP + 1, 2**63 - 1, 2**63, 10**25, 10**30]  # fmt: skip
HOSTILE_NUMBER = st.one_of(
    st.sampled_from(EDGES).map(str),
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["", " 1", "+1", "1_0", "0x10", "1.5", "\u0661", "0" * 30 + "1", "9" * 5000]),
)
LEVEL = st.text(string.ascii_letters + string.digits + "._-+:@", min_size=1, max_size=40)
# Any character a frame can carry: UTF-8 has no surrogates.
CHARACTER = st.characters(blacklist_categories=("Cs",))
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), max_size=60)
# Each field well-formed, by the rules as the protocol states them.
VALID = {
    "record_format_version": st.just("4"),
    "classification": st.tuples(LEVEL, LEVEL, LEVEL).map("/".join),
    "severity": st.integers(1, 4).map(str),
    "creation_timestamp": st.integers(0, 2**33).map(str),
    "payload_format_version": st.integers(0, 2**16).map(str),
    "event_id": st.text("0123456789abcdef", min_size=32, max_size=32),
}
# And the same fields ill-formed, at their bounds or anywhere.
HOSTILE = {
    "record_format_version": HOSTILE_NUMBER,
    "classification": st.one_of(
        st.text(CHARACTER, max_size=130).filter(lambda text: "\n" not in text),
        # Spaces and tabs, which Clear takes and telemd normalises.
        st.tuples(LEVEL, LEVEL, LEVEL, st.sampled_from([" ", "\t", "  "])).map(
            lambda parts: f"{parts[3]}{parts[0]} {parts[1]}/{parts[1]}/{parts[2]}{parts[3]}"
        ),
        st.tuples(LEVEL, LEVEL).map("/".join),
        st.builds(lambda a, b, c: f"{a}/{b}/{c}", LEVEL, LEVEL, st.text(CHARACTER, max_size=45)),
    ),
    "severity": HOSTILE_NUMBER,
    "creation_timestamp": HOSTILE_NUMBER,
    "payload_format_version": HOSTILE_NUMBER,
    "event_id": st.one_of(
        st.text("0123456789abcdefABCDEF", min_size=31, max_size=33),
        st.uuids().map(str),
        st.text(CHARACTER, max_size=40).filter(lambda text: "\n" not in text),
    ),
}
PAYLOADS = st.text(CHARACTER, max_size=300).map(str.encode)
HOSTILE_PAYLOADS = st.one_of(
    st.binary(max_size=300),
    # Clear's daemon cuts at a NUL; telemetrics-backend reads Latin-1.
    st.binary(max_size=100).map(lambda raw: raw + b"\0" + raw),
    st.integers(0, 8192).map(lambda size: b"\xe9" * size),
    st.integers(8190, 8194).map(lambda size: b"x" * size),
    st.text(CHARACTER, max_size=20).map(lambda text: ("\u00e9" * 4096 + text).encode()),
)


@st.composite
def frames(draw: st.DrawFn) -> tuple[dict[str, str], bytes]:
    """Header values and payload: well-formed, with up to two fields made hostile.
    The host headers are anything at all (the daemon replaces them)."""
    values = {name: draw(strategy) for name, strategy in VALID.items()}
    hostile = draw(st.sets(st.sampled_from([*HOSTILE, "payload"]), max_size=2))
    for name in hostile - {"payload"}:
        values[name] = draw(HOSTILE[name])
    for name in HEADER_NAMES:
        if name not in values:
            values[name] = draw(TEXT)
    payload = draw(HOSTILE_PAYLOADS if "payload" in hostile else PAYLOADS)
    return values, payload


def issue_example(**changes: str) -> tuple[dict[str, str], bytes]:
    """A well-formed frame but for `changes`: the frames the daemon once acknowledged
    and its collector then rejected."""
    values = {name: "unknown" for name in HEADER_NAMES}
    values.update(
        record_format_version="4",
        classification="org.example/rules/issue",
        severity="2",
        creation_timestamp="1754600896",
        payload_format_version="1",
        event_id="0123456789abcdef0123456789abcdef",
    )
    values.update(changes)
    return values, b"payload\n"


def frame_of(values: dict[str, str], payload: bytes) -> bytes:
    block = "".join(f"{name}: {values[name]}\n" for name in HEADER_NAMES).encode()
    body = len(block).to_bytes(4, "little") + block + payload + b"\0"
    return (4 + len(body)).to_bytes(4, "little") + body


@pytest.mark.parametrize("post_format", ["headers", "json", "ndjson"])
def test_what_the_daemon_acknowledges_the_collector_stores(
    harness: DaemonHarness, collector: Collector, post_format: str
) -> None:
    url = collector.batch_url if post_format == "ndjson" else f"{collector.base_url}/v2/collector"
    harness.write_config(
        server=url, post_format=post_format, uid_records_per_minute=-1, rate_limit_enabled=False
    )
    harness.start()
    tally = {"acknowledged": 0, "refused": 0}

    @EXAMPLES
    @example(issue_example(creation_timestamp="-1"))
    @example(issue_example(payload_format_version="9999999999"))
    @example(issue_example(creation_timestamp="1" + "0" * 25))
    @given(frames())
    def acknowledged_means_stored(frame: tuple[dict[str, str], bytes]) -> None:
        values, payload = frame
        with harness.client() as client:
            client.write_frames([frame_of(values, payload)])
            try:
                record_id = client.read_reply()
            except RejectedError:
                tally["refused"] += 1
                return
        tally["acknowledged"] += 1
        assert harness.wait_for_log(f"{record_id} ", timeout=20), f"{record_id} never settled"
        settled = next(line for line in harness.log if f"{record_id} " in line)
        assert f"{record_id} delivered" in settled, (values, payload, settled, harness.log[-5:])
        assert collector.stored()[record_id] == 1

    acknowledged_means_stored()
    assert harness.stop() == 0
    report(f"rules/{post_format}", **tally)
    # The generator reaches both sides of the rules.
    assert tally["acknowledged"] >= 5 and tally["refused"] >= 5


HOST_TEXT = st.text(max_size=400)


@settings(max_examples=300, deadline=None, database=None)
@given(
    st.builds(
        HostInfo,
        arch=st.sampled_from(sorted(ARCHES)),
        host_type=HOST_TEXT,
        build=HOST_TEXT,
        kernel_version=st.builds(lambda a, b, rest: f"{a}.{b}.{rest}", st.integers(0, 99),
                                 st.integers(0, 99), HOST_TEXT),
        system_name=HOST_TEXT,
        board_name=HOST_TEXT,
        cpu_model=HOST_TEXT,
        bios_version=HOST_TEXT,
        boot_id=st.just("boot"),
    )
)  # fmt: skip
def test_the_host_values_the_daemon_sends_pass_the_collectors_rules(info: HostInfo) -> None:
    """DMI and os-release strings hold what the firmware or the distribution put
    there (tabs, NUL, no-break spaces, 300 characters); the daemon conforms them."""
    fields = {
        **conform_host(info).headers(),
        "record_format_version": "4",
        "classification": "org.example/rules/host",
        "severity": "1",
        "machine_id": "m" * 32,
        "creation_timestamp": "1754600896",
        "payload_format_version": "1",
        "event_id": "0123456789abcdef0123456789abcdef",
    }
    rules = Rules(frozenset({CLEAR_LINUX_TID}), DEFAULT_MAX_PAYLOAD_SIZE)
    row = validate_record(fields, "payload", tid=CLEAR_LINUX_TID, record_id="0" * 32, rules=rules)
    assert row[RECORD_COLUMNS.index("arch")] == info.arch
