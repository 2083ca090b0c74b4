"""Permissions: private directories, no symlink followed, nothing planted obeyed.

Every test starts the real daemon against a directory prepared the way an
attacker or a careless administrator would leave it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from daemon_harness import DaemonHarness

from telemd.record import Record


def test_directories_and_files_are_created_private(harness: DaemonHarness) -> None:
    harness.start()
    with harness.client() as client:
        client.send(Record("a/b/c", 1, "x"))
    for path, mode in ((harness.spool_dir, 0o700), (harness.state_dir, 0o750)):
        info = os.lstat(path)
        assert stat.S_IMODE(info.st_mode) == mode
        assert info.st_uid == os.geteuid()
    for path in (harness.spool_dir / "spool.sqlite", harness.state_dir / "journal.sqlite"):
        assert stat.S_IMODE(os.stat(path).st_mode) & 0o007 == 0, path  # nothing for others


@pytest.mark.parametrize("which", ["spool_dir", "state_dir"])
def test_a_symlinked_directory_is_refused(
    harness: DaemonHarness, tmp_path: Path, which: str
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    link = harness.root / f"{which}-link"
    link.symlink_to(elsewhere)
    harness.write_config(**{which: str(link)})
    result = harness.run_to_exit()
    assert result.returncode == 1
    assert f"{link} is a symbolic link" in result.stderr
    assert list(elsewhere.iterdir()) == []  # nothing was written through the link


def test_a_directory_of_another_user_is_refused(harness: DaemonHarness) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give the spool directory to another uid")
    harness.spool_dir.mkdir(mode=0o700)
    os.chown(harness.spool_dir, 65534, 65534)
    result = harness.run_to_exit()
    assert result.returncode == 1
    assert "belongs to uid 65534, not to the daemon's uid 0" in result.stderr


@pytest.mark.parametrize("which", ["spool_dir", "state_dir"])
def test_a_world_writable_directory_is_refused(harness: DaemonHarness, which: str) -> None:
    directory = harness.root / which
    directory.mkdir()
    directory.chmod(0o777)
    harness.write_config(**{which: str(directory)})
    result = harness.run_to_exit()
    assert result.returncode == 1
    assert "writable by other users" in result.stderr


def test_a_symlink_at_the_socket_path_is_neither_followed_nor_removed(
    harness: DaemonHarness, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    Path(harness.socket).parent.mkdir(parents=True)
    Path(harness.socket).symlink_to(victim)
    result = harness.run_to_exit()
    assert result.returncode == 1
    assert "exists and is not a socket" in result.stderr
    assert victim.read_text() == "precious\n"
    assert Path(harness.socket).is_symlink()


def test_a_planted_link_for_the_machine_id_is_not_written_through(
    harness: DaemonHarness, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    harness.state_dir.mkdir(mode=0o750)
    (harness.state_dir / "machine_id.tmp").symlink_to(victim)
    harness.start()
    with harness.client() as client:
        record_id = client.send(Record("a/b/c", 1, "still recorded"))
    assert harness.wait_for_log("cannot save the machine id")
    assert victim.read_text() == "precious\n"
    [row] = harness.records()
    assert row["record_id"] == record_id and len(row["machine_id"]) == 32
