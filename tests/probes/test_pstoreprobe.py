"""pstoreprobe on pstore directories laid out as the kernel leaves them."""

from __future__ import annotations

import os
from pathlib import Path

from daemon_harness import DaemonHarness
from probe_support import ProbeConfig, probe
from telemd_probes.pstore.dump import crash_event, group_dumps, read_part

KLOG = Path(__file__).resolve().parent.parent / "data" / "klog"
DUMP_TIME = 1_700_000_000


def efi_name(part: int, count: int, backend: str = "efi") -> str:
    # The kernel's generic id: (timestamp * 100 + part) * 1000 + count.
    return f"dmesg-{backend}-{(DUMP_TIME * 100 + part) * 1000 + count}"


def kernel_lines(sample: str) -> list[str]:
    """A sample's lines as kmsg_dump writes them: `<prio>[time] message`."""
    return [f"<4>{line}\n" for line in (KLOG / f"{sample}.dmesg").read_text().splitlines()]


def write_split_dump(directory: Path, sample: str, reason: str, count: int, parts: int) -> None:
    """Split a sample in `parts` files; Part1 holds the end of the log."""
    lines = kernel_lines(sample)
    size = -(-len(lines) // parts)
    for index in range(parts):
        number = parts - index
        chunk = lines[index * size : (index + 1) * size]
        path = directory / efi_name(number, count)
        path.write_text(f"{reason}#{count} Part{number}\n" + "".join(chunk))
        os.utime(path, (DUMP_TIME + index, DUMP_TIME + index))


def make_pstore(tmp_path: Path) -> Path:
    pstore = tmp_path / "pstore"
    pstore.mkdir()
    write_split_dump(pstore, "bug_x86_nullderef", "Oops", 1, 3)
    (pstore / "dmesg-ramoops-0").write_text("Panic#1 Part1\n" + "".join(kernel_lines("panic")))
    (pstore / "console-ramoops-0").write_text("the previous boot's console\n")
    (pstore / (efi_name(1, 7) + ".enc.z")).write_bytes(b"x\x9c\x03\x00")
    return pstore


def test_each_dump_is_sent_once_and_its_files_removed(
    daemon: DaemonHarness, probe_config: ProbeConfig, tmp_path: Path
) -> None:
    pstore = make_pstore(tmp_path)
    result = probe("pstoreprobe", "--dir", str(pstore), "-f", str(probe_config()))
    assert result.returncode == 0, result.stderr
    rows = daemon.records()
    assert [row["classification"] for row in rows] == [
        "org.clearlinux/kernel/bug",
        "org.clearlinux/kernel/panic",
    ]
    bug = rows[0]["payload"].splitlines()
    assert bug[1] == "Reason: BUG: kernel NULL pointer dereference, address: 0000000000000028"
    assert bug[bug.index("#0 ext4_readdir - [ext4]") :][6] == "#6 iterate_dir - [kernel]"
    assert "Oops#1 (3 parts): ext4_readdir [ext4]: sent" in result.stderr
    assert "compressed by the kernel and not unpacked; removed unsent" in result.stderr
    assert sorted(os.listdir(pstore)) == ["console-ramoops-0"]
    again = probe("pstoreprobe", "--dir", str(pstore), "-f", str(probe_config()))
    assert (again.returncode, again.stderr) == (0, "")
    assert len(daemon.records()) == 2


def test_pstore_keep_keeps_the_files(
    daemon: DaemonHarness, probe_config: ProbeConfig, tmp_path: Path
) -> None:
    pstore = make_pstore(tmp_path)
    before = sorted(os.listdir(pstore))
    config = probe_config(pstore_keep=True, pstore_dir=str(pstore))
    assert probe("pstoreprobe", "-f", str(config)).returncode == 0
    assert sorted(os.listdir(pstore)) == before
    assert len(daemon.records()) == 2


def test_without_a_daemon_the_files_stay_for_the_next_boot(
    harness: DaemonHarness, probe_config: ProbeConfig, tmp_path: Path
) -> None:
    pstore = make_pstore(tmp_path)
    result = probe("pstoreprobe", "--dir", str(pstore), "-f", str(probe_config()))
    assert result.returncode == 1
    assert "not recorded: telemd is not running" in result.stderr
    assert len(os.listdir(pstore)) == 5  # only the compressed dump went


def test_parts_of_two_boots_with_one_count_stay_apart() -> None:
    parts = [
        read_part(efi_name(part, 1), f"Panic#1 Part{part}\nboot {boot} part {part}\n", mtime)
        for boot, mtime in (("a", 100.0), ("b", 5000.0))
        for part in (2, 1)
    ]
    dumps = group_dumps([part for part in parts if part is not None])
    assert [dump.text for dump in dumps] == [
        "boot a part 2\nboot a part 1\n",
        "boot b part 2\nboot b part 1\n",
    ]


def test_a_dump_without_a_known_report_is_sent_with_its_tail() -> None:
    part = read_part("dmesg-ramoops-3", "Panic#2 Part1\n<0>[ 9.1] something odd\n", 1.0)
    assert part is not None
    [dump] = group_dumps([part])
    event = crash_event(dump)
    assert event.classification == "org.clearlinux/kernel/panic"
    assert event.reason == "Panic#2 saved by pstore (ramoops)"
    assert event.lines[-1] == "something odd"
