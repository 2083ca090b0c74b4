"""Frames built byte by byte from PROTOCOL.md section 1, and every way to break one."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemd.errors import ErrorCode, FrameError, RecordError
from telemd.frame import (
    FRAME_OVERHEAD_LIMIT,
    _header_block,
    _header_values,
    decode_frame,
    decode_reply,
    encode_error,
    encode_frame,
    encode_ok,
    frame_size,
    max_frame_size,
)
from telemd.record import HEADER_NAMES, MAX_TIMESTAMP, Record

EVENT_ID = "0123456789abcdef0123456789abcdef"
HEADER_VALUES = {
    "record_format_version": "4",
    "classification": "org.clearlinux/crash/clr",
    "severity": "3",
    "machine_id": "FFFFFFFF",
    "creation_timestamp": "1754600896",
    "arch": "x86_64",
    "host_type": "no_sv_file|no_pn_file|no_pvr_file",
    "build": '"12"',
    "kernel_version": "6.1.0-18-amd64",
    "payload_format_version": "2",
    "system_name": "debian",
    "board_name": "no_bn_file|no_bv_file",
    "cpu_model": "AMD EPYC",
    "bios_version": "no_bv_file",
    "event_id": EVENT_ID,
}


def u32(value: int) -> bytes:
    return value.to_bytes(4, "little")


def header_block(values: dict[str, str] = HEADER_VALUES, names=HEADER_NAMES) -> bytes:
    return b"".join(f"{name}: {values[name]}\n".encode() for name in names)


def build(
    block: bytes | None = None,
    payload: bytes = b"Process: /usr/bin/prog\n",
    cfg: bytes | None = None,
    header_size: int | None = None,
    total: int | None = None,
    terminator: bytes = b"\0",
) -> bytes:
    """Lay a frame out exactly as libtelemetry's tm_send_record does."""
    block = header_block() if block is None else block
    cfg_field = b"" if cfg is None else b"CFG:" + cfg + b"\0"
    body = cfg_field + u32(len(block) if header_size is None else header_size) + block + payload
    size = 4 + len(body) + len(terminator) if total is None else total
    return u32(size) + body + terminator


def test_a_libtelemetry_frame_decodes_to_its_record() -> None:
    decoded = decode_frame(build())
    record = decoded.record
    assert record.classification == "org.clearlinux/crash/clr"
    assert record.severity == 3
    assert record.creation_timestamp == 1754600896
    assert record.payload_format_version == 2
    assert record.event_id == EVENT_ID
    assert record.payload == "Process: /usr/bin/prog\n"
    assert decoded.sent_headers == tuple(HEADER_VALUES[name] for name in HEADER_NAMES)
    assert decoded.config_path is None


def test_the_cfg_field_is_read_and_the_headers_after_it_still_decode() -> None:
    decoded = decode_frame(build(cfg=b"/home/user/evil.conf"))
    assert decoded.config_path == "/home/user/evil.conf"
    assert decoded.record.classification == "org.clearlinux/crash/clr"


def test_total_size_counts_the_whole_frame() -> None:
    frame = build()
    assert int.from_bytes(frame[:4], "little") == len(frame)
    assert frame_size(frame[:4], max_frame_size()) == len(frame)


def test_our_encoder_writes_what_libtelemetry_writes() -> None:
    record = Record(
        "org.clearlinux/crash/clr",
        3,
        "Process: /usr/bin/prog\n",
        payload_format_version=2,
        event_id=EVENT_ID,
        creation_timestamp=1754600896,
    )
    host = {name: HEADER_VALUES[name] for name in HEADER_VALUES}
    assert encode_frame(record, host) == build()
    assert encode_frame(record, host, config_path="/etc/x.conf") == build(cfg=b"/etc/x.conf")


def test_an_empty_payload_is_a_valid_record() -> None:
    assert decode_frame(build(payload=b"")).record.payload == ""


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (build(header_size=10_000), "header size 10000 is larger than"),
        (build(block=header_block(names=HEADER_NAMES[:14])), "must have 15 lines, got 14"),
        (
            build(block=header_block(names=(HEADER_NAMES[1], HEADER_NAMES[0], *HEADER_NAMES[2:]))),
            "header line 1 must be 'record_format_version'",
        ),
        (build(block=header_block()[:-1]), "must have 15 lines"),
        (build(terminator=b"x"), "does not end with a NUL byte"),
        (u32(7) + b"ab\0", "ends before its header size field"),
        (
            build(block=header_block().replace(b"severity: 3", b"severity: high")),
            "severity: must be a decimal integer",
        ),
        (
            build(
                block=header_block().replace(
                    b"creation_timestamp: 1754600896", b"creation_timestamp: soon"
                )
            ),
            "creation_timestamp: must be a decimal integer",
        ),
        (
            build(
                block=header_block().replace(b"org.clearlinux/crash/clr", b"org.clearlinux/crash")
            ),
            "exactly 3 levels",
        ),
        (
            build(block=header_block().replace(b"crash/clr", "crash/clé".encode())),
            "outside printable ASCII",
        ),
        (build(payload=b"\xe9" * 4097), "as Latin-1 written in UTF-8 it is 8194 bytes"),
    ],
)
def test_each_malformed_frame_gets_its_own_error(frame: bytes, message: str) -> None:
    with pytest.raises(RecordError) as info:
        decode_frame(frame)
    assert message in info.value.message
    expected = ErrorCode.TOO_LARGE if "Latin-1" in message else ErrorCode.INVALID
    assert info.value.code == expected


def test_a_refused_record_names_its_classification_where_it_could_be_read() -> None:
    with pytest.raises(RecordError) as info:
        decode_frame(build(block=header_block().replace(b"severity: 3", b"severity: high")))
    assert info.value.classification == "org.clearlinux/crash/clr"
    with pytest.raises(RecordError) as info:
        decode_frame(build(block=header_block(names=HEADER_NAMES[:14])))
    assert info.value.classification is None


# What Clear's daemon stores and telemetrics-backend accepts, telemd takes too,
# normalised; each change is named for the journal.
@pytest.mark.parametrize(
    ("frame", "field", "value", "note"),
    [
        (
            build(block=header_block().replace(b"crash/clr", b"crash/clr probe v2")),
            "classification",
            "org.clearlinux/crash/clr probe v2",
            None,
        ),
        (
            build(block=header_block().replace(b"org.clearlinux/crash/clr", b" a\tb/c/d \t")),
            "classification",
            "a b/c/d",
            "classification ' a\\tb/c/d \\t' written as 'a b/c/d'",
        ),
        (
            build(payload=b"Signal: 11\0garbage"),
            "payload",
            "Signal: 11",
            "first NUL, byte 10 of 18",
        ),
        (
            build(payload=b"caf\xe9\n"),
            "payload",
            "caf\u00e9\n",
            "not UTF-8 (byte 3): read as Latin-1",
        ),
        (build(payload=b"\0"), "payload", "", "first NUL, byte 0 of 1"),
        (
            build(block=header_block().replace(EVENT_ID.encode(), EVENT_ID.upper().encode())),
            "event_id",
            EVENT_ID,
            "written as 32 lowercase hex",
        ),
        (
            build(block=header_block().replace(EVENT_ID.encode(), b"1234-abcd")),
            "event_id",
            None,
            "event_id '1234-abcd' is not 32 hex characters: replaced",
        ),
        (
            build(block=header_block().replace(b"AMD EPYC", b"AMD \xae")),
            "classification",
            "org.clearlinux/crash/clr",
            None,
        ),
    ],
)
def test_what_clear_delivers_is_taken_normalised(
    frame: bytes, field: str, value: str | None, note: str | None
) -> None:
    decoded = decode_frame(frame)
    kept = getattr(decoded.record, field)
    if value is None:  # a fresh id from the kernel's random source
        assert (
            kept != "1234-abcd" and len(kept) == 32 and kept != decode_frame(frame).record.event_id
        )
    else:
        assert kept == value
    if note is None:
        assert decoded.notes is None
    else:
        assert decoded.notes is not None and any(note in line for line in decoded.notes)


def with_header(name: str, value: str) -> bytes:
    return build(block=header_block({**HEADER_VALUES, name: value}))


# Each numeric header at and past its bounds, the writer-killing timestamp
# (10**25 once overflowed the spool's INTEGER and killed its writer) among them.
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("creation_timestamp", "1" + "0" * 25),
        ("creation_timestamp", "-1"),
        ("creation_timestamp", "253402300800"),
        ("creation_timestamp", "9" * 5000),
        ("payload_format_version", "9999999999"),
        ("payload_format_version", "4294967296"),
        ("record_format_version", "0"),
        ("record_format_version", "2147483648"),
        ("record_format_version", "four"),
        ("severity", "4294967296"),
        ("severity", "1" + "0" * 25),
        ("severity", "-1"),
    ],
)
def test_numeric_headers_out_of_bounds_are_refused_naming_the_field(name: str, value: str) -> None:
    with pytest.raises(RecordError) as info:
        decode_frame(with_header(name, value))
    assert info.value.code == ErrorCode.INVALID
    assert info.value.message.startswith(f"{name}: must be ")
    assert encode_error(info.value.code, info.value.message).startswith(
        f"ERR invalid {name}: ".encode()
    )


@pytest.mark.parametrize(
    ("name", "value", "attribute", "expected"),
    [
        ("creation_timestamp", "0", "creation_timestamp", 0),
        ("creation_timestamp", "253402300799", "creation_timestamp", 253402300799),
        ("creation_timestamp", "000001754600896", "creation_timestamp", 1754600896),
        ("payload_format_version", "4294967295", "payload_format_version", 4294967295),
        ("severity", "4294967295", "severity", 4),
        ("severity", "0", "severity", 1),
    ],
)
def test_numeric_headers_at_their_bounds_decode(
    name: str, value: str, attribute: str, expected: int
) -> None:
    assert getattr(decode_frame(with_header(name, value)).record, attribute) == expected


def test_a_cfg_field_without_its_nul_is_invalid() -> None:
    frame = u32(20) + b"CFG:/etc/abcdefghij" + b"\0"
    with pytest.raises(FrameError, match="CFG: field is not NUL-terminated"):
        decode_frame(frame[:-1] + b"x" + b"\0")
    assert len(frame) == 24


def test_an_oversized_payload_is_too_large_not_invalid() -> None:
    with pytest.raises(RecordError) as info:
        decode_frame(build(payload=b"x" * 8193))
    assert info.value.code == ErrorCode.TOO_LARGE


@pytest.mark.parametrize(
    ("size", "code", "message"),
    [
        (0, ErrorCode.INVALID, "frame size 0 is smaller than the minimum of 9"),
        (8, ErrorCode.INVALID, "frame size 8 is smaller"),
        (0xFFFFFFFF, ErrorCode.TOO_LARGE, "frame size 4294967295 exceeds the limit"),
        (max_frame_size() + 1, ErrorCode.TOO_LARGE, "exceeds the limit"),
    ],
)
def test_frame_sizes_out_of_bounds_are_fatal(size: int, code: str, message: str) -> None:
    with pytest.raises(FrameError) as info:
        frame_size(u32(size), max_frame_size())
    assert info.value.fatal
    assert info.value.code == code
    assert message in info.value.message


def test_the_size_bound_is_the_reference_daemons() -> None:
    assert max_frame_size(8192) == 8 + 4 + 4096 + 8192 + 15 * 80
    assert max_frame_size(100) == FRAME_OVERHEAD_LIMIT + 100


def test_replies_round_trip() -> None:
    assert decode_reply(encode_ok(EVENT_ID)) == ("OK", EVENT_ID)
    line = encode_error(ErrorCode.SPOOL_FULL, "disk\nfull")
    assert line.count(b"\n") == 1
    assert decode_reply(line) == ("spool-full", "disk full")
    with pytest.raises(FrameError) as info:
        decode_reply(b"HELLO\n")
    assert info.value.code == ErrorCode.PROTOCOL


classifications = st.builds(
    lambda *levels: "/".join(levels),
    *[st.text("abcXYZ019._-+:@", min_size=1, max_size=40)] * 3,
)
payloads = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=2000
).filter(lambda text: len(text.encode()) <= 8192)


@settings(max_examples=300)
@given(
    classification=classifications,
    severity=st.integers(-5, 10),
    payload=payloads,
    version=st.integers(0, 2**32 - 1),
    timestamp=st.integers(0, MAX_TIMESTAMP),
    config=st.none() | st.text("abc/._", min_size=1, max_size=100),
)
def test_encode_then_decode_gives_the_record_back(
    classification: str,
    severity: int,
    payload: str,
    version: int,
    timestamp: int,
    config: str | None,
) -> None:
    record = Record(
        classification,
        severity,
        payload,
        payload_format_version=version,
        creation_timestamp=timestamp,
    )
    decoded = decode_frame(encode_frame(record, config_path=config))
    assert decoded.record == record
    assert 1 <= decoded.record.severity <= 4
    assert decoded.config_path == config


@settings(max_examples=500)
@given(st.binary(max_size=600))
def test_random_bytes_only_ever_raise_frame_or_record_errors(junk: bytes) -> None:
    frame = u32(len(junk) + 4) + junk
    with contextlib.suppress(RecordError):
        decode_frame(frame)


@settings(max_examples=300)
@given(st.data())
def test_a_valid_frame_with_one_byte_changed_never_crashes(data: st.DataObject) -> None:
    frame = bytearray(build())
    index = data.draw(st.integers(4, len(frame) - 1))
    frame[index] = data.draw(st.integers(0, 255))
    with contextlib.suppress(RecordError):
        decode_frame(bytes(frame))


header_value = st.text(st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)))


@settings(max_examples=300)
@given(st.lists(header_value, min_size=len(HEADER_NAMES), max_size=len(HEADER_NAMES)))
def test_the_one_call_header_match_reads_what_the_line_by_line_reading_reads(
    values: list[str],
) -> None:
    block = header_block(dict(zip(HEADER_NAMES, values, strict=True))).decode()
    match = _header_block().fullmatch(block)
    assert match is not None
    assert match.groups() == _header_values(block) == tuple(values)


@settings(max_examples=300)
@given(st.data())
def test_a_header_block_the_one_call_match_refuses_is_refused_line_by_line(
    data: st.DataObject,
) -> None:
    lines = [f"{name}: {value}" for name, value in HEADER_VALUES.items()]
    change = data.draw(st.sampled_from(["drop", "swap", "extra", "rename", "no-end"]))
    index = data.draw(st.integers(0, len(lines) - 2))
    if change == "drop":
        del lines[index]
    elif change == "swap":
        lines[index], lines[index + 1] = lines[index + 1], lines[index]
    elif change == "extra":
        lines.insert(index, data.draw(header_value))
    elif change == "rename":
        lines[index] = "x" + lines[index]
    block = "\n".join(lines) + ("" if change == "no-end" else "\n")
    assert _header_block().fullmatch(block) is None
    with pytest.raises(FrameError):
        _header_values(block)
