"""Tests for telemd_probes.klog.kmsg: /dev/kmsg records and dmesg text lines."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from telemd_probes.klog.kmsg import (
    UNKNOWN,
    KmsgRecord,
    decode,
    parse_kmsg_record,
    parse_lines,
    parse_text_line,
)

U = UNKNOWN
DATA = Path(__file__).resolve().parent.parent / "data" / "klog"
SAMPLES = sorted(path.stem for path in DATA.glob("*.bare"))


def records(path: Path) -> list[KmsgRecord]:
    return list(parse_lines(path.read_bytes().splitlines()))


def test_kmsg_record_fields() -> None:
    record = parse_kmsg_record("6,339,5140900,-;NET: Registered PF_INET6 protocol family")
    assert record == KmsgRecord(6, 0, 339, 5140900, "NET: Registered PF_INET6 protocol family")


def test_kmsg_record_splits_prio_into_facility_and_level() -> None:
    record = parse_kmsg_record(b"30,12,5000,-;systemd[1]: Started Journal Service.\n")
    assert record is not None
    assert (record.level, record.facility) == (6, 3)
    assert record.message == "systemd[1]: Started Journal Service."


def test_kmsg_record_drops_dictionary_lines() -> None:
    data = (
        b"4,77,812,-;ahci 0000:00:1f.2: port 1 reset\n SUBSYSTEM=pci\n DEVICE=+pci:0000:00:1f.2\n"
    )
    record = parse_kmsg_record(data)
    assert record is not None
    assert record.message == "ahci 0000:00:1f.2: port 1 reset"


def test_kmsg_record_accepts_extra_header_fields() -> None:
    record = parse_kmsg_record("4,10,20,c,caller=T42;continued")
    assert record == KmsgRecord(4, 0, 10, 20, "continued")


@pytest.mark.parametrize(
    ("escaped", "text"),
    [
        ("rcu: \\x092-...0:", "rcu: \t2-...0:"),
        ("C:\\x5cpath", "C:\\path"),
        ("caf\\xc3\\xa9", "café"),
        ("bad \\xff byte", "bad \ufffd byte"),
        ("not an escape \\x4", "not an escape \\x4"),
    ],
)
def test_kmsg_record_decodes_kernel_escapes(escaped: str, text: str) -> None:
    record = parse_kmsg_record(f"4,1,1,-;{escaped}")
    assert record is not None
    assert record.message == text


def test_kmsg_record_replaces_invalid_utf8() -> None:
    record = parse_kmsg_record(b"4,1,1,-;caf\xc3( \xff")
    assert record is not None
    assert record.message == "caf\ufffd( \ufffd"


@pytest.mark.parametrize(
    "data",
    ["", "hello", "6,1,2;three fields", "a,1,2,-;x", "6,1,2,-", "9" * 5000 + ",1,1,-;x"],
)
def test_not_a_kmsg_record(data: str) -> None:
    assert parse_kmsg_record(data) is None


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "[  123.456789] usb 1-1: new device",
            KmsgRecord(U, U, U, 123456789, "usb 1-1: new device"),
        ),
        ("<4>[    0.000000] Linux version", KmsgRecord(4, 0, U, 0, "Linux version")),
        ("<12>hello from user space", KmsgRecord(4, 1, U, U, "hello from user space")),
        (
            "[    1.500000]  dump_stack+0x19/0x1b",
            KmsgRecord(U, U, U, 1500000, " dump_stack+0x19/0x1b"),
        ),
        ("<4> ? __warn+0x81/0x130", KmsgRecord(4, 0, U, U, " ? __warn+0x81/0x130")),
        ("[    0.000000][    T0] BIOS-e820: usable", KmsgRecord(U, U, U, 0, "BIOS-e820: usable")),
        ("[2.123456789] ns precision", KmsgRecord(U, U, U, 2123456, "ns precision")),
        (
            "<4>[\t68764.975944]WARNING: at demo.c:1",
            KmsgRecord(4, 0, U, 68764975944, "WARNING: at demo.c:1"),
        ),
        ("[ \t 1.5]  [<c0123456>] f+1/2", KmsgRecord(U, U, U, 1500000, " [<c0123456>] f+1/2")),
        (
            "[0000000000000010] pgd=0800000043b31003",
            KmsgRecord(U, U, U, U, "[0000000000000010] pgd=0800000043b31003"),
        ),
        ("plain message\r\n", KmsgRecord(U, U, U, U, "plain message")),
    ],
)
def test_text_line(line: str, expected: KmsgRecord) -> None:
    assert parse_text_line(line) == expected


def test_parse_lines_keeps_leading_spaces_in_bare_text() -> None:
    lines = [b"Call Trace:", b" dump_stack+0x19/0x1b", b" SUBSYSTEM=pci"]
    assert [r.message for r in parse_lines(lines)] == [line.decode() for line in lines]


def test_parse_lines_skips_dictionary_only_after_a_record() -> None:
    lines = [
        "6,1,1,-;e1000e 0000:00:19.0 eth0: link up",
        " SUBSYSTEM=pci",
        "[ 2.000000]  frame+0x1/0x2",
    ]
    assert [r.message for r in parse_lines(lines)] == [
        "e1000e 0000:00:19.0 eth0: link up",
        " frame+0x1/0x2",
    ]


@pytest.mark.parametrize("name", SAMPLES)
def test_three_framings_carry_the_same_messages(name: str) -> None:
    bare, kmsg, dmesg = (records(DATA / f"{name}.{suffix}") for suffix in ("bare", "kmsg", "dmesg"))
    assert len(bare) > 1
    assert [r.message for r in kmsg] == [r.message for r in bare] == [r.message for r in dmesg]
    assert [r.level for r in kmsg] == [r.level for r in bare]
    assert [r.ts_usec for r in kmsg] == [r.ts_usec for r in dmesg]
    assert [r.seq for r in kmsg] == list(range(kmsg[0].seq, kmsg[0].seq + len(kmsg)))
    assert all(r.seq == UNKNOWN and r.ts_usec == UNKNOWN for r in bare)


def test_samples_cover_dictionaries_escapes_and_callers() -> None:
    # The kmsg framing must exercise what the parser has to undo.
    text = "".join((DATA / f"{name}.kmsg").read_text() for name in SAMPLES)
    assert "\n SUBSYSTEM=" in text
    assert "\\x09" in text
    assert ",caller=T" in text


def test_garbage_never_raises() -> None:
    parsed = records(DATA / "garbage.bin")
    assert len(parsed) > 20
    assert any("\ufffd" in r.message for r in parsed)


def messages(data: str | bytes) -> list[str]:
    record = parse_kmsg_record(data)
    found = [parse_text_line(data).message] + ([] if record is None else [record.message])
    lines = data.split(b"\n") if isinstance(data, bytes) else data.split("\n")
    return found + [r.message for r in parse_lines(lines)]


@given(st.binary())
def test_random_bytes_never_raise(data: bytes) -> None:
    for message in messages(data):
        message.encode("utf-8")  # strict: a lone surrogate would raise


@given(st.text())
def test_random_text_never_raises(text: str) -> None:
    for message in [decode(text), *messages(text)]:
        message.encode("utf-8")
