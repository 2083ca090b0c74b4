"""pstoreprobe on pstore directories laid out as the kernel leaves them."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import DaemonHarness, command
from probe_support import ProbeConfig, block_with_a_directory, probe
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


SENT_NAME = "pstoreprobe.sent"
# Runs its arguments with `$0` bound read-only over itself, in a mount
# namespace of their own: the host's mounts are left alone.
READ_ONLY = 'mount --bind -o ro "$0" "$0" && exec "$@"'


class Undeletable:
    """A pstore directory the probe can read but not remove files from, made so a real way.

    `read-only`: bound read-only in the probe's own user and mount namespace
    (EROFS, as a pstore mounted read-only). `immutable`: `chattr +i` on the
    directory (EPERM, as a backend that refuses the erase); root may still
    not unlink from it.
    """

    def __init__(self, way: str, directory: Path) -> None:
        self.way = way
        self.directory = directory
        self.wrapper: list[str] = []
        if way == "read-only":
            unshare = shutil.which("unshare")
            if unshare is None:
                pytest.skip("needs unshare (Debian package util-linux)")
            self.wrapper = [unshare, "--user", "--map-root-user", "--mount"]
            self.wrapper += ["sh", "-c", READ_ONLY, str(directory)]
            tried = subprocess.run([*self.wrapper, "true"], capture_output=True, text=True)
            if tried.returncode != 0:
                pytest.skip(f"cannot bind a directory read-only here: {tried.stderr.strip()}")
        else:
            self._chattr("+i")

    def _chattr(self, flag: str) -> None:
        chattr = shutil.which("chattr")
        if chattr is None:
            pytest.skip("needs chattr (Debian package e2fsprogs)")
        tried = subprocess.run([chattr, flag, str(self.directory)], capture_output=True, text=True)
        if tried.returncode != 0:  # not root, or a filesystem without the flag
            pytest.skip(f"cannot make a directory immutable here: {tried.stderr.strip()}")

    def probe(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.wrapper, command("pstoreprobe"), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    @contextlib.contextmanager
    def changeable(self) -> Iterator[None]:
        """The directory as the test may change it (the read-only bind is the probe's only)."""
        if self.way == "immutable":
            self._chattr("-i")
        try:
            yield
        finally:
            if self.way == "immutable":
                self._chattr("+i")

    def release(self) -> None:
        if self.way == "immutable":
            self._chattr("-i")


@pytest.fixture(params=["read-only", "immutable"])
def undeletable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Undeletable]:
    pstore = make_pstore(tmp_path)
    way = Undeletable(request.param, pstore)
    yield way
    way.release()


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


def test_a_dump_that_cannot_be_removed_is_sent_once_across_three_runs(
    daemon: DaemonHarness, probe_config: ProbeConfig, undeletable: Undeletable
) -> None:
    before = sorted(os.listdir(undeletable.directory))
    config = str(probe_config())
    first = undeletable.probe("--dir", str(undeletable.directory), "-f", config)
    assert first.returncode == 0, first.stderr  # only the removal failed
    reason = (
        "Read-only file system" if undeletable.way == "read-only" else "Operation not permitted"
    )
    failed = [line for line in first.stderr.splitlines() if "cannot remove" in line]
    assert len(failed) == 3  # each dump once (the compressed one too), with its reason
    assert all(reason in line for line in failed)
    for _ in range(2):
        again = undeletable.probe("--dir", str(undeletable.directory), "-f", config)
        assert (again.returncode, again.stderr) == (0, "")
    assert len(daemon.records()) == 2
    assert sorted(os.listdir(undeletable.directory)) == before


def test_a_new_dump_beside_one_that_cannot_be_removed_is_sent(
    daemon: DaemonHarness, probe_config: ProbeConfig, undeletable: Undeletable
) -> None:
    config = str(probe_config())
    assert undeletable.probe("--dir", str(undeletable.directory), "-f", config).returncode == 0
    with undeletable.changeable():
        (undeletable.directory / "dmesg-ramoops-1").write_text(
            "Oops#2 Part1\n" + "".join(kernel_lines("bug_x86_nullderef"))
        )
    result = undeletable.probe("--dir", str(undeletable.directory), "-f", config)
    assert result.returncode == 0, result.stderr
    assert "Oops#2 (1 parts): ext4_readdir [ext4]: sent" in result.stderr
    assert len(daemon.records()) == 3


def test_the_state_forgets_dumps_whose_files_are_gone(
    daemon: DaemonHarness, probe_config: ProbeConfig, undeletable: Undeletable
) -> None:
    config = str(probe_config())
    sent = Path(daemon.state_dir) / SENT_NAME
    assert undeletable.probe("--dir", str(undeletable.directory), "-f", config).returncode == 0
    assert len(sent.read_text().split()) == 5  # the files of two dumps sent, one compressed
    with undeletable.changeable():
        (undeletable.directory / "dmesg-ramoops-0").unlink()
    assert undeletable.probe("--dir", str(undeletable.directory), "-f", config).returncode == 0
    assert len(sent.read_text().split()) == 4
    with undeletable.changeable():
        for path in undeletable.directory.iterdir():
            path.unlink()
    result = undeletable.probe("--dir", str(undeletable.directory), "-f", config)
    assert (result.returncode, result.stderr) == (0, "")
    assert sent.read_text() == ""
    assert len(daemon.records()) == 2


def test_an_unsavable_state_sends_nothing(
    daemon: DaemonHarness, probe_config: ProbeConfig, tmp_path: Path
) -> None:
    pstore = make_pstore(tmp_path)
    before = sorted(os.listdir(pstore))
    block_with_a_directory(Path(daemon.state_dir) / SENT_NAME)
    result = probe("pstoreprobe", "--dir", str(pstore), "-f", str(probe_config()))
    assert result.returncode == 73
    assert f"cannot save {daemon.state_dir}/{SENT_NAME}" in result.stderr
    assert "sending nothing" in result.stderr
    assert daemon.records() == []
    assert sorted(os.listdir(pstore)) == before


def test_the_state_directory_can_be_given_on_the_command_line(
    daemon: DaemonHarness, probe_config: ProbeConfig, tmp_path: Path
) -> None:
    state = tmp_path / "pstore-state"
    state.mkdir()
    config = str(probe_config(pstore_keep=True))
    pstore = make_pstore(tmp_path)
    for _ in range(2):
        result = probe("pstoreprobe", "--dir", str(pstore), "-S", str(state), "-f", config)
        assert result.returncode == 0, result.stderr
    assert len((state / SENT_NAME).read_text().split()) == 5  # the compressed dump too
    assert not (Path(daemon.state_dir) / SENT_NAME).exists()
    assert len(daemon.records()) == 2


def test_a_second_run_leaves_the_dumps_to_the_one_running(
    daemon: DaemonHarness, probe_config: ProbeConfig, tmp_path: Path
) -> None:
    pstore = make_pstore(tmp_path)
    before = sorted(os.listdir(pstore))
    lock = Path(daemon.state_dir) / f"{SENT_NAME}.lock"
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a run in progress holds it
        result = probe("pstoreprobe", "--dir", str(pstore), "-f", str(probe_config()))
    assert result.returncode == 0
    assert "another pstoreprobe is handling the dumps" in result.stderr
    assert daemon.records() == []
    assert sorted(os.listdir(pstore)) == before


def test_pstore_keep_keeps_the_files_and_sends_them_once(
    daemon: DaemonHarness, probe_config: ProbeConfig, tmp_path: Path
) -> None:
    pstore = make_pstore(tmp_path)
    before = sorted(os.listdir(pstore))
    config = probe_config(pstore_keep=True, pstore_dir=str(pstore))
    assert probe("pstoreprobe", "-f", str(config)).returncode == 0
    again = probe("pstoreprobe", "-f", str(config))
    assert (again.returncode, again.stderr) == (0, "")
    assert sorted(os.listdir(pstore)) == before
    assert len(daemon.records()) == 2


def test_without_a_daemon_the_files_stay_for_the_next_boot(
    harness: DaemonHarness, probe_config: ProbeConfig, tmp_path: Path
) -> None:
    pstore = make_pstore(tmp_path)
    harness.state_dir.mkdir()  # as tmpfiles.d makes it at boot, before telemd starts
    result = probe("pstoreprobe", "--dir", str(pstore), "-f", str(probe_config()))
    assert result.returncode == 1
    assert "not recorded: telemd is not running" in result.stderr
    assert len(os.listdir(pstore)) == 5  # only the compressed dump went
    harness.start()
    later = probe("pstoreprobe", "--dir", str(pstore), "-f", str(probe_config()))
    assert later.returncode == 0, later.stderr
    assert len(harness.records()) == 2


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
